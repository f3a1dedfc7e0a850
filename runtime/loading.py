"""From an export directory to the parts of a `GeepEngine` (and the segment engines of the bench's baselines).

Kept apart from `runtime.engine` so that the engine itself knows nothing of manifests: it takes an encoder, a
predictor and engines, whoever built them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.base import BaseEngine
from engines.registry import backend_conflict, open_engine, resolve_backend
from geep_deploy.encoding import TextEncoder
from geep_deploy.errors import ArtifactError, BackendUnavailable, ConfigError, GeepError
from geep_deploy.limits import check_depths
from geep_deploy.names import (
    CONT,
    DEPTH,
    EMBED,
    ENTROPY,
    FORMAT_OF_BACKEND,
    LAYER,
    ONNX,
    ONNXRUNTIME,
    PLAN,
    PREFIX,
    PROBE,
    TABLE,
    TENSORRT,
    TORCH,
    first_continuation,
    weights_precision,
)
from geep_deploy.options import KEEP, Keep
from runtime.artifacts import load_export
from runtime.options import LoadOptions
from runtime.predictor import ExitPredictor, FixedDepth


@dataclass
class Parts:
    encoder: TextEncoder
    predictor: Any
    engines: dict[int, BaseEngine]
    label_names: list[str]
    info: dict[str, Any]
    bundle: Any
    owned: list[Any] = field(default_factory=list)
    model: Any = None  # the shared ExitBert (torch backend)
    shared: Any = None  # OrtWeightPool or TrtScratch, reused for segment engines
    ort_options: dict[str, Any] = field(default_factory=dict)
    probe: Any = None  # the ProbeDispatch, when the probe dispatches
    entropy: Any = None  # the EntropyExit, when the entropy exit dispatches
    segments: Any = None  # the embed/layer engines (EngineSegments), or a function that opens them when first needed


def make_engine(bundle: Any, parts: Parts, backend: str, device: str, precision: str, *, kind: str,
                depth: int | None, threads: int | None) -> BaseEngine:
    """One engine of ``kind`` (depth/embed/layer/prefix/cont) on ``backend``, sharing weights through ``parts``."""
    if backend == TORCH:
        return open_engine(TORCH, parts.model, kind=kind, depth=depth, exit_mode=bundle.exit_mode, device=device,
                           precision=precision, max_len=bundle.max_len, check_inputs=False,
                           max_batch=int((bundle.manifest.get("export") or {}).get("max_batch") or 128))
    art = bundle.find(kind=kind, depth=depth, format=FORMAT_OF_BACKEND[backend],
                      precision=weights_precision(precision))
    if backend == ONNXRUNTIME:
        return open_engine(ONNXRUNTIME, art.path, device=device, precision=precision, pool=parts.shared,
                           threads=threads, check_inputs=False, name=f"onnxruntime {kind} {depth or ''}".strip(),
                           **parts.ort_options)
    return open_engine(TENSORRT, art.path, precision=precision, scratch=parts.shared, check_inputs=False)


def build_parts(export_dir: Path, options: LoadOptions | None = None) -> Parts:
    """Load manifest, tokenizer, exit predictor (table and/or probe) and the engines of one export."""
    o = options or LoadOptions()
    device, precision, fixed_depth, predictor = o.device, o.precision, o.fixed_depth, o.predictor
    bundle = load_export(export_dir, verify=o.verify)
    arts = list(bundle.artifacts)
    wp = weights_precision(precision)
    backend = resolve_backend(o.backend, device, precision=precision,
                              has_plans=any(a.format == PLAN and a.precision == wp for a in arts),
                              has_onnx=any(a.format == ONNX and a.precision == wp for a in arts))
    conflict = backend_conflict(backend, device, precision)
    if conflict is not None:
        raise ConfigError(f"runtime | {conflict}")
    L = bundle.shape.num_hidden_layers
    want = _wanted_depths(bundle.depths, o.depths, fixed_depth)
    kind = _predictor_kind(bundle, predictor, fixed_depth)
    _check_probe_knobs(kind, o, bundle)
    if fixed_depth is not None:
        table = FixedDepth(fixed_depth, L)
    elif kind == TABLE and bundle.exit_table is None:
        raise ArtifactError(
            f"runtime | {export_dir} has no exit table, so exits cannot be predicted. Export with "
            "`--exit-table`, or load with fixed_depth=k to run one depth."
        )
    else:
        table = _load_predictor(bundle.exit_table, device) if bundle.exit_table is not None else None
        if table is not None:
            check_same_model(bundle, bundle.exit_table, getattr(table, "checkpoint", None))
    probe = load_probe(bundle, o.risk, o.escalate) if kind == PROBE else None
    parts = Parts(_encoder(bundle), table, {}, list(bundle.label_names),
                  {}, bundle, ort_options={"disable_prepacking": o.disable_prepacking})
    if backend == TORCH:
        parts.model = bundle.torch_model()
    elif backend == ONNXRUNTIME and o.share_weights:
        from engines.ort import OrtWeightPool

        parts.shared = OrtWeightPool(mmap=o.mmap_weights)
    elif backend == TENSORRT:
        from engines.trt import TrtScratch

        parts.shared = TrtScratch()
        parts.owned.append(parts.shared)
    for k in want:
        parts.engines[k] = _open_checked(bundle, parts, backend, device, precision, depth=k, threads=o.threads)
    if probe is not None:
        try:
            parts.probe = _probe_dispatch(parts, probe, backend, device, precision, want, o.threads)
        except ArtifactError as e:
            damaged = backend != TORCH and bundle.has(kind=PREFIX, format=FORMAT_OF_BACKEND[backend],
                                                      precision=weights_precision(precision))
            if predictor is not None or table is None or damaged:  # asked for by name, nothing else to dispatch
                raise  # by, or the graphs are there but damaged: never answer by another predictor silently
            warnings.warn(f"{e} Dispatching by the exit table instead.", RuntimeWarning, stacklevel=3)
        else:
            parts.owned[:0] = parts.probe.engines  # closed with the engine, before the shared scratch
    parts.segments = functools.partial(open_segments, parts, backend, device, precision, o.threads)
    if kind == ENTROPY:  # the walk runs the segment engines: open them now (and check them below)
        from runtime.layerwise import EntropyExit

        parts.entropy = EntropyExit(bundle.entropy["threshold"])
        parts.segments = parts.segments()
    _check_runs(parts)
    e = parts.engines[want[-1]]
    parts.info = {
        "export": str(export_dir), "backend": backend, "device": device, "precision": precision,
        "provider": getattr(e, "provider", None), "depths": want, "method": bundle.method,
        "exit_mode": bundle.exit_mode,
        "predictor": (ENTROPY if parts.entropy is not None else PROBE if parts.probe is not None
                      else None if fixed_depth is not None else TABLE),
        "num_layers": L,
    }
    if parts.probe is not None:
        parts.info["probe"] = parts.probe.describe()
    if parts.entropy is not None:
        parts.info["entropy"] = {"threshold": parts.entropy.threshold, "states_on_device": parts.segments.resident}
    return parts


def _predictor_kind(bundle: Any, predictor: str | None, fixed_depth: int | None) -> str | None:
    """``"probe"``, ``"table"``, ``"entropy"`` or None (fixed depth): what dispatches, from the caller's choice or
    the export's."""
    if fixed_depth is not None:  # LoadOptions refused fixed_depth with predictor='probe' or 'entropy'
        return None
    kind = predictor or bundle.predictor or TABLE
    if kind == PROBE and bundle.probe is None:
        raise ConfigError(f"runtime | {bundle.root} carries no probe. Fit one with `geep-deploy calibrate "
                          "--predictor probe` and export with --probe, or load with predictor='table'.")
    if kind == ENTROPY and bundle.entropy is None:
        raise ConfigError(f"runtime | {bundle.root} records no entropy-exit threshold. Choose one with "
                          "`geep-deploy calibrate --predictor entropy` and export with --entropy, or serve a "
                          "threshold of your own with engine.with_entropy(threshold).")
    return kind


def _check_probe_knobs(kind: str | None, o: LoadOptions, bundle: Any) -> None:
    """``risk``/``escalate`` (range-checked by `LoadOptions`) must apply: they tune the probe dispatch only, so
    with the exit table, a fixed depth or a table-only export they would be ignored; say so instead."""
    given = o.knobs_given
    if not given or kind == PROBE:
        return
    why = ("fixed_depth runs every row at one depth" if kind is None else
           "this load dispatches by the entropy exit" if kind == ENTROPY else
           "this load dispatches by the exit table" if bundle.probe is not None else
           f"{bundle.root} carries no probe (a table-only export)")
    raise ConfigError(f"runtime | {' and '.join(given)} tune the layer-1 probe dispatch, but {why}; "
                      f"{'they' if len(given) > 1 else 'it'} would be ignored. Drop {', '.join(given)}"
                      + (", or load with predictor='probe'." if bundle.probe is not None else
                         ", or export with --probe."))


def check_same_model(bundle: Any, path: Path, recorded: str | None) -> None:
    """The table or probe at ``path`` was calibrated on the weights the export was made from (both sides record
    the checkpoint's weights sha256; exports and files written before the field are not checked).

    Raises:
        ArtifactError: the identities differ (a file swapped in from another model, its checksum recomputed).
    """
    from runtime.probe import parse_identity

    try:
        exported = parse_identity((bundle.manifest.get("checkpoint") or {}).get("weights_sha256"))
    except (AttributeError, ValueError) as e:
        raise ArtifactError(f"export | {bundle.root / 'manifest.json'} has a malformed checkpoint identity "
                            f"({e}). Re-export with --force.") from None
    if recorded is not None and exported is not None and recorded != exported:
        raise ArtifactError(f"export | {path} was calibrated on another model (weights sha256 {recorded[:12]}...) "
                            f"than the one {bundle.root} was exported from ({exported[:12]}...). Re-export with "
                            "the table and probe `geep-deploy calibrate` wrote for this checkpoint.")


def load_probe(bundle: Any, risk: float | None = None, escalate: float | None | Keep = KEEP) -> Any:
    """The export's probe at the given knobs, checked against the export.

    Raises:
        TableError: the probe file is damaged or foreign. ConfigError: it was fitted for another layer count,
            reads table statistics the export lacks, or the export does not exit through the student heads.
    """
    from runtime.probe import ProbeModel, check_probe_fits

    probe = ProbeModel.load(bundle.probe).with_knobs(risk, escalate)
    check_same_model(bundle, bundle.probe, probe.checkpoint)
    check_probe_fits(probe, bundle.shape.num_hidden_layers, exit_mode=bundle.exit_mode,
                     has_table=bundle.exit_table is not None, where=f"runtime | the probe {bundle.probe}",
                     owner="the export")
    return probe


def _probe_dispatch(parts: Parts, probe: Any, backend: str, device: str, precision: str, want: list[int],
                    threads: int | None) -> Any:
    """The ``prefix`` and ``cont{d}`` engines (every wanted depth from ``first_continuation``) around ``probe``;
    nothing half-built stays open. Continuations are raised to the next loaded depth, as depth graphs are."""
    from runtime.probe_dispatch import ProbeDispatch

    bundle, opened = parts.bundle, []
    try:
        opened.append(_open_checked(bundle, parts, backend, device, precision, kind=PREFIX, depth=None,
                                    threads=threads))
        conts = {}
        for d in (k for k in want if k >= first_continuation(probe.exit_mode)):
            conts[d] = _open_checked(bundle, parts, backend, device, precision, kind=CONT, depth=d,
                                     threads=threads)
            opened.append(conts[d])
        host_table = getattr(parts.predictor, "pred", parts.predictor)  # the NumPy twin computes the features
        return ProbeDispatch(probe, opened[0], conts, num_labels=len(parts.label_names),
                             table=host_table if probe.uses_table else None, pad_id=parts.encoder.pad_id)
    except BaseException as e:
        for eng in opened:
            eng.close()
        if isinstance(e, ArtifactError):
            raise ArtifactError(f"runtime | the probe dispatch needs the prefix and cont{{d}} graphs: {e}") from None
        raise


def _wanted_depths(exported: list[int], depths: Sequence[int] | None, fixed_depth: int | None) -> list[int]:
    """The depth engines to open. With an exit predictor the deepest exported depth is required: a row predicted
    deeper than every loaded depth would otherwise run shallower than predicted (a silently worse answer)."""
    if fixed_depth is not None:
        fixed = check_depths("runtime | fixed_depth", [fixed_depth], exported)
        return sorted({*check_depths("runtime | depths", depths, exported), *fixed}) if depths is not None else fixed
    if depths is None:
        return sorted(exported)
    want = check_depths("runtime | depths", depths, exported)
    if want[-1] != max(exported):
        raise ConfigError(f"runtime | depths {want} leave out the deepest exported depth {max(exported)}: rows "
                          "predicted deeper than every loaded depth would run shallower than predicted. Include "
                          f"{max(exported)} (rows are raised to the next loaded depth), or pass fixed_depth=k.")
    return want


def _check_runs(parts: Parts) -> None:
    """Run one short row through every loaded engine (depth graphs, and the probe dispatch's prefix and
    continuations): a graph whose logits are not as wide as the label list (or not finite) fails here, at load,
    instead of answering with the wrong labels."""
    from geep_deploy.encoding import pad_batch
    from geep_deploy.exits import check_logits

    enc = parts.encoder.encode(["the movie"])
    feed = pad_batch(enc, pad_id=parts.encoder.pad_id)
    for k, engine in parts.engines.items():
        with _damaged_if_it_fails(parts, f"depth-{k}"):
            logits = engine.infer(feed, check_inputs=False)["logits"]
        check_logits(logits, 1, len(parts.label_names), f"depth {k} ({parts.bundle.root})")
    if parts.probe is not None:
        with _damaged_if_it_fails(parts, "prefix/cont"):
            parts.probe.check(enc)
    if parts.entropy is not None:
        from runtime.layerwise import LayerwiseDispatch

        with _damaged_if_it_fails(parts, "embed/layer"):
            LayerwiseDispatch(parts.segments, parts.entropy, num_layers=parts.bundle.shape.num_hidden_layers,
                              num_labels=len(parts.label_names), pad_id=parts.encoder.pad_id).check(enc)


@contextlib.contextmanager
def _damaged_if_it_fails(parts: Parts, what: str) -> Iterator[None]:
    """A graph that loads but cannot run is a damaged export: name it (our own errors pass through)."""
    try:
        yield
    except GeepError:
        raise
    except Exception as e:  # ORT Fail, shape errors, ...: all a damaged export
        raise ArtifactError(f"export | the {what} graph of {parts.bundle.root} fails on a one-row check run "
                            f"({type(e).__name__}: {str(e).strip()[:300]}). Re-export with --force.") from None


def _encoder(bundle: Any) -> TextEncoder:
    try:
        return TextEncoder(bundle.tokenizer_json, bundle.max_len)
    except GeepError as e:
        raise ArtifactError(f"export | {bundle.root / bundle.manifest['tokenizer']['file']}: {e}") from None
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise ArtifactError(f"export | {bundle.root / bundle.manifest['tokenizer']['file']} is not a valid "
                            f"tokenizer ({type(e).__name__}: {str(e)[:200]}). Re-export with --force.") from None


def _open_checked(bundle: Any, parts: Parts, backend: str, device: str, precision: str, *, depth: int | None,
                  threads: int | None, kind: str = DEPTH) -> BaseEngine:
    """``make_engine`` for a graph of any kind (depth, prefix, cont, embed, layer): the one loading path, so a
    graph or weights file that does not load is an ``ArtifactError`` naming its file whatever its kind."""
    try:
        return make_engine(bundle, parts, backend, device, precision, kind=kind, depth=depth, threads=threads)
    except (GeepError, ImportError):
        raise
    except Exception as e:  # onnx DecodeError, ORT Fail, truncated data: all a damaged export
        try:
            where = bundle.find(kind=kind, depth=depth, format=FORMAT_OF_BACKEND[backend],
                                precision=weights_precision(precision)).path
        except (GeepError, KeyError):
            where = bundle.root
        raise ArtifactError(f"export | {where} cannot be loaded by {backend} ({type(e).__name__}: "
                            f"{str(e).strip()[:300]}). The file is damaged or not from this export; re-export "
                            "with --force.") from None


def _load_predictor(path: Path, device: str) -> Any:
    pred = ExitPredictor.load(path)
    if device == "cuda" and importlib.util.find_spec("cupy") is not None:
        try:
            return DevicePredictor(pred)
        except BackendUnavailable as e:  # e.g. CuPy without NVRTC headers: the host predictor gives the same depths
            warnings.warn(f"{e} Predicting exits on the host instead.", RuntimeWarning, stacklevel=2)
    return pred


# Batches below this many rows are predicted on the host, where NumPy beats upload + ~7 launches + download.
# A first guess, to be replaced by the crossover `make gpu-check` measures ("predictor" section of its JSON).
DEVICE_PREDICTOR_MIN_BATCH = 64
MIN_BATCH_ENV = "GEEP_DEVICE_PREDICTOR_MIN_BATCH"


def device_predictor_min_batch(value: int | str | None = None) -> int:
    """The host/device crossover: ``value``, else ``$GEEP_DEVICE_PREDICTOR_MIN_BATCH``, else the default.

    Raises:
        ConfigError: not a non-negative integer.
    """
    raw = os.environ.get(MIN_BATCH_ENV) if value is None else value
    if raw is None or raw == "":
        return DEVICE_PREDICTOR_MIN_BATCH
    try:
        n = int(raw)
    except (TypeError, ValueError):
        n = -1
    if n < 0:
        raise ConfigError(f"runtime | {MIN_BATCH_ENV} must be a non-negative integer (0: always the GPU), "
                          f"got {raw!r}.")
    return n


class DevicePredictor:
    """The exit predictor on CUDA loads: host NumPy for small batches, the GPU lookup for large ones.

    Both give the same depths (fixed-point mass, see ``runtime.predictor``). The kernels are compiled and the
    table uploaded here, at load, so no request pays for NVRTC.
    """

    def __init__(self, pred: Any, min_batch: int | None = None) -> None:
        self.pred, self.num_layers = pred.to_device(), pred.num_layers
        self.checkpoint = getattr(pred, "checkpoint", None)
        self.quantile, self.margin = getattr(pred, "quantile", None), getattr(pred, "margin", None)
        self.min_batch = device_predictor_min_batch(min_batch)

    def with_params(self, quantile: float, margin: int) -> DevicePredictor:
        return DevicePredictor(self.pred.with_params(quantile, margin), self.min_batch)

    def predict(self, ids: list[Any]) -> Any:
        if len(ids) < max(self.min_batch, 1):
            return self.pred.predict(ids)
        import cupy as cp

        from runtime.keys import pad_rows

        padded, mask = pad_rows(ids)  # vectorised
        out = self.pred.predict_padded(cp.asarray(padded), cp.asarray(mask))
        return cp.asnumpy(out)


def segment_engines(parts: Parts, backend: str, device: str, precision: str,
                    threads: int | None = None) -> tuple[BaseEngine, list[BaseEngine]]:
    """The ``embed`` and ``layer1..L`` engines of the export (for FastBERT/PABEE layer by layer)."""
    L = parts.bundle.shape.num_hidden_layers
    opened: list[BaseEngine] = []
    try:
        for kind, depth in [(EMBED, None)] + [(LAYER, k) for k in range(1, L + 1)]:
            opened.append(_open_checked(parts.bundle, parts, backend, device, precision, kind=kind, depth=depth,
                                        threads=threads))
    except BaseException as e:
        for eng in opened:  # nothing half-built stays open
            eng.close()
        if not isinstance(e, (ArtifactError, KeyError, LookupError)):
            raise
        raise ArtifactError(
            f"runtime | the export has no segment graphs (embed, layer1..{L}) for {backend}/{precision}, "
            f"which the layer-by-layer baselines need: {e}. Re-export with segment graphs."
        ) from None
    return opened[0], opened[1:]


def open_segments(parts: Parts, backend: str, device: str, precision: str, threads: int | None = None) -> Any:
    """The export's ``embed`` and ``layer1..L`` engines as `runtime.layerwise.EngineSegments` (the entropy
    dispatch's), on the weights the depth engines already hold.

    Raises:
        ConfigError: the export has no segment graphs for this backend and precision (export made with
            ``--no-segments``, ``ExportOptions(segments=False)``, or from a ``full`` checkpoint).
        ArtifactError: a segment graph is there but damaged.
    """
    from runtime.layerwise import EngineSegments

    check_segments(parts.bundle, backend, precision)
    embed, layers = segment_engines(parts, backend, device, precision, threads)
    return EngineSegments(embed, layers)


def check_segments(bundle: Any, backend: str, precision: str) -> None:
    """Refuse, before opening anything, an export without the ``embed``/``layer{k}`` graphs the layer-by-layer
    walk runs (torch runs the export's weights and needs none)."""
    if backend == TORCH:
        return
    L = bundle.shape.num_hidden_layers
    fmt, wp = FORMAT_OF_BACKEND[backend], weights_precision(precision)
    missing = [f"{k}{d or ''}" for k, d in [(EMBED, None), *((LAYER, k) for k in range(1, L + 1))]
               if not bundle.has(kind=k, depth=d, format=fmt, precision=wp)]
    if missing:
        raise ConfigError(
            f"runtime | the entropy exit runs the export's segment graphs (embed, layer1..{L}) layer by layer, and "
            f"{bundle.root} has no {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} for "
            f"{backend}/{precision}. Re-export without --no-segments (ExportOptions(segments=True); the default "
            "for every method but 'full'), or serve this export with predictor='probe' or 'table'."
        )
