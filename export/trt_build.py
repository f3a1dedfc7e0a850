"""TensorRT plans per depth and precision: profiles over (batch, seq), one shared timing cache, TF32 off for fp32.

TensorRT 10 and 11 differ in how precision is chosen (GEEP.md, "Precision"): 10 builds a weakly typed network and
enables reduced-precision kernels with builder flags; 11 removed those flags and only builds strongly typed
networks, so the precision must already be in the ONNX (the fp16/bf16 cast graphs of ``precision.py`` and the Q/DQ
graph of ``quantize.py``). ``plan_for`` decides this as plain data (tested without TensorRT); ``tensorrt`` is
imported lazily and only here. Plans are built for every depth graph and, where the export has them, for the probe
dispatch's ``prefix``/``cont{d}`` graphs (not at int8: those have no Q/DQ graphs). Nothing in this module is exercised on a machine without TensorRT.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from export.spec import BaseLoader, BuildSpec, Profile, invoke_if_callable, profiles_from_flags
from geep_deploy.atomic import atomic_path
from geep_deploy.errors import BackendUnavailable, EngineBuildError
from geep_deploy.names import DEPTH, EXPORT_PRECISIONS, ONNX, QDQ, variant_dir
from geep_deploy.optional import INSTALL_HINTS, require

# Which ONNX graph each TensorRT precision is built from.
SOURCE_GRAPH = {p: variant_dir(p, QDQ if p == "int8" else "") for p in EXPORT_PRECISIONS}
_FLAGS_TRT10 = {"fp32": [], "fp16": ["FP16"], "bf16": ["BF16"], "int8": ["INT8"]}
INT8_MEANING = ("int8 = the Q/DQ graph's MatMuls in int8 (weights per tensor, symmetric, calibrated), every other op "
                "in fp32 as the graph types it; strongly typed on TensorRT 10 and 11 alike (10.x without "
                "STRONGLY_TYPED: INT8 flag only, no FP16), the same meaning as ONNX Runtime's int8 Q/DQ graph")
"""What "int8" means for a TensorRT plan, pinned across versions (recorded in the manifest and the bench JSON)."""


def require_tensorrt() -> Any:
    """Import ``tensorrt`` or raise ``BackendUnavailable`` naming the pip extra."""
    return require("tensorrt", "tensorrt", "for --format tensorrt")


@dataclass(frozen=True)
class BuildPlan:
    """What a build does for one precision on one TensorRT version (plain data)."""

    strongly_typed: bool
    set_flags: tuple[str, ...]
    clear_flags: tuple[str, ...]
    source_graph: str


def trt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        raise EngineBuildError(f"tensorrt | cannot read the TensorRT version {version!r}.") from None


def plan_for(precision: str, trt_version: str, *, has_strongly_typed: bool = True, has_tf32_flag: bool = True,
             tf32: bool = False, strongly_typed: bool | None = None) -> BuildPlan:
    """Precision -> network typing and builder flags for a TensorRT version.

    Args:
        precision: fp32, fp16, bf16 or int8.
        trt_version: ``tensorrt.__version__``.
        has_strongly_typed: whether ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` exists.
        has_tf32_flag: whether ``BuilderFlag.TF32`` exists.
        tf32: allow TF32 for fp32 (TensorRT's default; off here for a true fp32 build).
        strongly_typed: force typing on 10.x. Defaults to weak typing on 10.x, strong on 11+.

    Raises:
        EngineBuildError: a precision the version cannot build (e.g. strongly typed without the flag).
    """
    major = trt_major(trt_version)
    if precision == "int8" and strongly_typed is None:  # one meaning on 10 and 11 (INT8_MEANING)
        strongly_typed = has_strongly_typed or major >= 11
    if major < 10:
        raise EngineBuildError(f"tensorrt | version {trt_version} is too old; geep-deploy needs 10 or 11. "
                               f"Try: {INSTALL_HINTS['tensorrt']}.")
    strong = major >= 11 if strongly_typed is None else strongly_typed
    if strong and not has_strongly_typed and major < 11:
        raise EngineBuildError(f"tensorrt | {trt_version} has no STRONGLY_TYPED networks; drop strongly_typed.")
    clear = ("TF32",) if (precision == "fp32" and not tf32 and has_tf32_flag) else ()
    flags = () if strong else tuple(_FLAGS_TRT10[precision])
    return BuildPlan(strongly_typed=strong, set_flags=flags, clear_flags=clear, source_graph=SOURCE_GRAPH[precision])


class _Lock:
    """A lock file beside the timing cache, so concurrent builds merge into it one at a time."""

    def __init__(self, path: Path) -> None:
        from filelock import FileLock

        self._lock = FileLock(str(path) + ".lock", timeout=600)

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class EngineBytesFromOnnx(BaseLoader):
    """Stage: an ONNX file (external weights next to it) to serialized plan bytes, per ``BuildSpec``."""

    def __init__(self, onnx_path: Any, spec: Any, *, timing_cache: Path | None = None) -> None:
        self.onnx_path, self.spec, self.timing_cache = onnx_path, spec, timing_cache

    def call_impl(self) -> bytes:
        trt = require_tensorrt()
        path, _ = invoke_if_callable(self.onnx_path)
        spec: BuildSpec = invoke_if_callable(self.spec)[0]
        flags = trt.NetworkDefinitionCreationFlag
        plan = plan_for(spec.precision, trt.__version__, has_strongly_typed=hasattr(flags, "STRONGLY_TYPED"),
                        has_tf32_flag=hasattr(trt.BuilderFlag, "TF32"), tf32=spec.tf32)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network((1 << int(flags.STRONGLY_TYPED)) if plan.strongly_typed else 0)
        if network is None:
            raise EngineBuildError(f"tensorrt | could not create a network for {Path(path).name}; see TensorRT's "
                                   "log above.")
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(path)):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineBuildError(f"tensorrt | cannot parse {Path(path).name}: {errs[:500]}")
        config = builder.create_builder_config()
        if config is None:
            raise EngineBuildError("tensorrt | could not create a builder config (out of memory?).")
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mb << 20)
        if spec.builder_optimization_level is not None:
            config.builder_optimization_level = spec.builder_optimization_level
        for f in plan.set_flags:
            config.set_flag(getattr(trt.BuilderFlag, f))
        for f in plan.clear_flags:
            config.clear_flag(getattr(trt.BuilderFlag, f))
        for prof in spec.profiles:
            p = builder.create_optimization_profile()
            for name, r in prof.shapes.items():
                p.set_shape(name, r.min, r.opt, r.max)
            if config.add_optimization_profile(p) < 0:
                raise EngineBuildError(f"tensorrt | the optimisation profile for {Path(path).name} is invalid "
                                       f"({prof.to_dict()}); check --max-batch/--max-len.")
        cache_bytes = b""
        if self.timing_cache is not None and self.timing_cache.is_file():
            with _Lock(self.timing_cache):
                cache_bytes = self.timing_cache.read_bytes()
        cache = config.create_timing_cache(cache_bytes)
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            raise EngineBuildError(f"tensorrt | the timing cache {self.timing_cache} does not fit this TensorRT or "
                                   "GPU; delete it and rebuild.")
        blob = builder.build_serialized_network(network, config)
        if blob is None:
            raise EngineBuildError(f"tensorrt | building {Path(path).name} ({spec.precision}) failed; see the "
                                   "TensorRT log above. Try a larger workspace or a smaller --max-batch/--max-len.")
        if self.timing_cache is not None:
            with _Lock(self.timing_cache):
                if self.timing_cache.is_file():  # merge with what other builds added meanwhile
                    other = config.create_timing_cache(self.timing_cache.read_bytes())
                    if other is None or not cache.combine(other, ignore_mismatch=True):
                        warnings.warn(f"tensorrt | could not merge {self.timing_cache} (another TensorRT or GPU "
                                      "wrote it); it is replaced by this build's cache.", RuntimeWarning,
                                      stacklevel=2)
                data = config.get_timing_cache().serialize()
                if data is None:
                    raise EngineBuildError("tensorrt | serialising the timing cache failed; see TensorRT's log.")
                with atomic_path(self.timing_cache) as tmp:
                    Path(tmp).write_bytes(bytes(data))
        return bytes(blob)


class SaveEngine(BaseLoader):
    """Stage: write plan bytes to ``path`` and return the path."""

    def __init__(self, engine: Any, path: Path) -> None:
        self.engine, self.path = engine, path

    def call_impl(self) -> Path:
        data, _ = invoke_if_callable(self.engine)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:  # a killed build leaves no half-written plan
            Path(tmp).write_bytes(data)
        return self.path


def graph_profiles(kind: str, hidden: int, num_labels: int, max_batch: int, max_len: int) -> tuple[Profile, ...]:
    """The optimisation profile of one graph kind: every input over (batch, seq), hidden states with their width."""
    from geep_deploy.graphs import io_spec

    inputs, _ = io_spec(kind, hidden, num_labels)
    trailing = {n: list(spec["shape"][2:]) for n, spec in inputs.items()}
    return tuple(profiles_from_flags(list(inputs), max_batch, max_len, trailing=trailing))


def plan_graphs(graphs: Sequence[tuple[str, int | None]], precision: str) -> list[tuple[str, int | None]]:
    """Of an export's ONNX ``graphs``, those that get a plan at ``precision``: every depth graph; the probe
    dispatch's ``prefix``/``cont{d}`` too, except at int8, whose plans come from Q/DQ graphs of the depths only."""
    from geep_deploy.names import CONT, DEPTH, PREFIX

    kinds = (DEPTH,) if precision == "int8" else (DEPTH, PREFIX, CONT)
    return [(kind, k) for kind, k in graphs if kind in kinds]


def build_all(ctx: Any, root: Path) -> dict[str, Any]:
    """Build a plan per graph (``plan_graphs``) and precision of the export in ``root``; validate each through the
    TensorRT engine where it can run here (CUDA and CuPy), else record why not."""
    from export.manifest import file_entry
    from export.onnx_export import graph_name
    from export.validate import compare, judge, run_graph
    from geep_deploy.names import CONT, PLAN, PREFIX, TENSORRT

    trt = require_tensorrt()
    spec, model = ctx.spec, ctx.ckpt.model
    cache = root / PLAN / "timing.cache"
    cache.parent.mkdir(parents=True, exist_ok=True)
    profiles: dict[str, tuple[Profile, ...]] = {}
    builds, skipped = [], []
    for precision in spec.precisions:
        plan = plan_for(precision, trt.__version__,
                        has_strongly_typed=hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"),
                        has_tf32_flag=hasattr(trt.BuilderFlag, "TF32"))
        src_dir = root / ONNX / plan.source_graph
        graphs = plan_graphs(ctx.graphs, precision)
        if any(kind in (PREFIX, CONT) for kind, _ in ctx.graphs) and precision == "int8":
            skipped.append({"precision": precision, "kinds": [PREFIX, CONT],
                            "reason": "no Q/DQ continuation graphs; the probe dispatch runs fp32/fp16/bf16 plans"})
        for kind, k in graphs:
            name = graph_name(kind, k)
            if kind not in profiles:
                profiles[kind] = graph_profiles(kind, model.shape.hidden_size, model.num_labels, spec.max_batch,
                                                spec.max_len)
            bspec = BuildSpec(precision=precision, profiles=profiles[kind])
            plan_path = root / PLAN / precision / f"{name}.plan"
            SaveEngine(EngineBytesFromOnnx(src_dir / f"{name}.onnx", bspec, timing_cache=cache), plan_path)()
            validation = None
            refs, feeds = ctx.refs[(kind, k)]
            try:
                outs = run_graph(TENSORRT, plan_path, feeds, precision=precision)
            except BackendUnavailable as e:
                ctx.skip_validation(plan_path, f"the TensorRT engine cannot run here: {e}")
            else:
                what = f"tensorrt/{precision}/{plan_path.name}"
                cmp = compare(refs, outs, spec.atol * 10, what=what)
                if precision == "fp32":
                    judge(cmp, what, spec.allow_mismatch)
                validation = {**cmp.to_dict(), "runner": TENSORRT}
            ctx.record(plan_path, kind, k, PLAN, precision, validation)
            builds.append({"precision": precision, "kind": kind, "depth": k, **asdict(plan)})
            ctx.step(f"tensorrt {precision} {name}")
    return {"version": trt.__version__, "int8": INT8_MEANING, "profiles": [p.to_dict() for p in profiles[DEPTH]],
            "graph_profiles": {kind: [p.to_dict() for p in ps] for kind, ps in profiles.items()},
            "timing_cache": file_entry(root, cache), "builds": builds, "skipped": skipped}
