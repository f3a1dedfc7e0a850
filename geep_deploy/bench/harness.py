"""Side-by-side benchmark of GEEP and the baselines: accuracy, FLOPs and wall-clock, one run, same inputs.

For each precision and batch size, every method gets the same batches (dev rows sorted by length, then cut).
Repeats are interleaved (repeat r runs every method once, in a rotated order) so machine noise hits all methods
alike; times are medians over repeats. Speed-ups are against ``full`` with the same backend, precision and batch
size. ``model`` time covers everything after tokenisation: the engines, the dispatch and every method's exit
decisions (GEEP's exit prediction included; ``exit`` reports that part alone); ``e2e`` adds tokenisation.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.bench.baselines import MethodRunner
from geep_deploy.bench.methods import DISPATCHED, GEEP_FAMILIES, MethodSpec, parse_methods
from geep_deploy.data import load_split
from geep_deploy.encoding import length_sorted_batches
from geep_deploy.errors import ArtifactError, ConfigError
from geep_deploy.flops import flops_speedup
from geep_deploy.machine import machine_info
from geep_deploy.names import ONNXRUNTIME
from runtime.dispatch import DISPATCH_REVISION, plan_groups
from runtime.engine import GeepEngine
from runtime.layerwise import EngineSegments
from runtime.loading import Parts, build_parts, segment_engines
from runtime.options import LoadOptions
from runtime.timing import median, percentiles


@dataclass
class BenchConfig:
    export: Path
    data: Path
    split: str = "dev"
    backend: str = "onnxruntime"
    device: str = "cpu"
    precisions: Sequence[str] = ("fp32",)
    batch_sizes: Sequence[int] = (1, 32, 128)
    methods: str = "full,geep,fastbert,pabee,static"
    baseline_exports: dict[str, Path] = field(default_factory=dict)
    repeats: int = 3
    threads: int | None = None
    max_rows: int | None = None
    warmup_batches: int = 2
    progress: bool = True


def _load(export: str | Path, backend: str, device: str, precision: str, **options: Any) -> tuple[GeepEngine, Parts]:
    """An engine over one export, and the parts it was built from (the segment engines share their weights)."""
    opts = LoadOptions(backend=backend, device=device, precision=precision, **options)
    parts = build_parts(Path(export), opts)
    return GeepEngine.from_parts(parts), parts


def _segments(parts: Parts, backend: str, device: str, precision: str, threads: int | None) -> EngineSegments:
    """The ``embed`` and ``layer{k}`` engines of an export, on the weights its depth engines already hold."""
    embed, layers = segment_engines(parts, backend, device, precision, threads)
    return EngineSegments(embed, layers)


class _Contender:
    """A method bound to the engine (and export) it runs on, with its accumulated measurements."""

    def __init__(self, spec: MethodSpec, runner: MethodRunner, source: str) -> None:
        self.spec, self.runner, self.source = spec, runner, source
        self.model_s: list[float] = []
        self.e2e_s: list[float] = []
        self.exit_s: list[float] = []  # exit prediction alone (GEEP's table, or the probe's features and model)
        self.batch_ms: list[float] = []
        self.logits: np.ndarray | None = None
        self.depths: np.ndarray | None = None
        self.heads: np.ndarray | None = None
        self.layers: np.ndarray | None = None
        self.escalated: np.ndarray | None = None
        self.own: list[np.ndarray] = []  # this batch size's batches (set by `_warm_up`)

    def run(self, texts_a: list[str], texts_b: list[str] | None, batches: list[np.ndarray], record: bool,
            timed: bool = True) -> None:
        enc_fn = self.runner.engine.encoder.encode
        model_t = e2e_t = exit_t = 0.0
        n = sum(len(b) for b in batches)
        if record:
            self.logits, self.depths, self.heads = None, np.zeros(n, np.int64), np.zeros(n, np.int64)
            self.layers, self.escalated = np.zeros(n, np.int64), np.zeros(n, bool)
        for b in batches:
            t0 = time.perf_counter()
            enc = enc_fn([texts_a[i] for i in b], None if texts_b is None else [texts_b[i] for i in b])
            tok = time.perf_counter() - t0
            out = self.runner.run_batch(enc)
            model_t += out.model_s
            exit_t += out.exit_s
            e2e = tok + out.model_s  # model_s includes the exit decisions (BatchOut)
            e2e_t += e2e
            if timed:
                self.batch_ms.append(1e3 * e2e)
            if record:
                if self.logits is None:
                    self.logits = np.zeros((n, out.logits.shape[1]), np.float32)
                self.logits[b], self.depths[b], self.heads[b] = out.logits, out.depths, out.heads
                self.layers[b] = out.depths if out.layers is None else out.layers
                if out.escalated is not None:
                    self.escalated[b] = out.escalated
        if timed:
            self.model_s.append(model_t)
            self.e2e_s.append(e2e_t)
            self.exit_s.append(exit_t)


def _source(cfg: BenchConfig, spec: MethodSpec) -> str:
    """The export a method runs on: the one ``@name`` names, else its family's baseline export, else the main one."""
    if spec.source is not None:
        if spec.source not in cfg.baseline_exports:
            raise ConfigError(f"bench | {spec.name} runs on an export named {spec.source!r}, but the bench has "
                              f"{sorted(cfg.baseline_exports) or 'none'}; pass --baseline-export "
                              f"{spec.source}=DIR.")
        return str(cfg.baseline_exports[spec.source])
    return str(cfg.baseline_exports[spec.family]) if spec.family in cfg.baseline_exports else "same-export"


def _batches_for(c: _Contender, enc_all: Any, batches: list[np.ndarray], bs: int) -> list[np.ndarray]:
    """Length-sorted batches for every method; ``geep-pool`` cuts its batches from rows sorted by (depth, length)."""
    if c.spec.family != "geep-pool":
        return batches
    return [g.indices for g in plan_groups(c.runner.engine.predict_depths(enc_all), enc_all.lengths, max_group=bs)]


def _cell(precision: str, backend: str, method: str = "*", batch_size: int | None = None) -> dict[str, Any]:
    """The coordinates of one bench cell (an error row carries them)."""
    return {"precision": precision, "backend": backend, "method": method, "batch_size": batch_size}


def _guarded(errors: list[dict[str, Any]], cell: dict[str, Any], fn: Callable[..., Any], *args: Any,
             **kwargs: Any) -> tuple[bool, Any]:
    """Run one cell's work, ``fn(*args, **kwargs)``; an exception becomes an error row with its reason and the
    bench goes on.

    Returns (ok, value). KeyboardInterrupt and SystemExit still stop the bench.
    """
    try:
        return True, fn(*args, **kwargs)
    except Exception as e:  # one failing cell must not lose the others (or the JSON)
        reason = f"{type(e).__name__}: {str(e).strip()[:600]}"
        errors.append({**cell, "status": "error", "reason": reason})
        where = " ".join(f"{k}={v}" for k, v in cell.items() if v not in (None, "*"))
        print(f"bench | {where}: failed, recorded as an error row ({reason[:200]})", file=sys.stderr)
        _release_device_memory()
        return False, None


def _release_device_memory() -> None:
    """After a failed cell on CUDA (often out of memory), give cached blocks back before the next cell."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        try:
            torch.cuda.empty_cache()
        except Exception:  # best effort; the next cell reports its own failure
            pass


def refusal(bundle: Any, backend: str, device: str, precision: str, family: str | None = None) -> str | None:
    """Why ``backend`` cannot run ``precision`` (or a method ``family`` at it) on this export, or None if it can.

    Checked before anything loads, so an impossible cell is an up-front "refused" row, not a crash mid-run.
    """
    from engines.registry import backend_conflict, resolve_backend
    from geep_deploy.names import AUTO, ENTROPY, FORMAT_OF_BACKEND, PLAN, TENSORRT, weights_precision
    from runtime.loading import check_segments
    from runtime.probe_dispatch import continuation_kinds

    if backend == AUTO:
        wp = weights_precision(precision)
        backend = resolve_backend(backend, device, precision=precision,
                                  has_plans=any(a.format == PLAN and a.precision == wp for a in bundle.artifacts),
                                  has_onnx=precision in bundle.precisions())
    conflict = backend_conflict(backend, device, precision)
    if conflict is not None:
        return conflict
    if backend in (ONNXRUNTIME, TENSORRT):
        fmt, wp = FORMAT_OF_BACKEND[backend], weights_precision(precision)
        have = bundle.precisions(fmt)
        if wp not in have:
            return (f"the export has no {backend} {wp} artifacts (it has {have or 'none'}); re-export with "
                    f"--precision {wp}{' --format tensorrt' if backend == TENSORRT else ''}.")
        if family == "probe" and not all(bundle.has(kind=k, depth=d, format=fmt, precision=wp)
                                         for k, d in continuation_kinds(bundle)):
            return (f"the export has no {backend} {wp} prefix/cont graphs, which the probe dispatch runs"
                    f"{' (int8 plans are built for the depth graphs only)' if wp == 'int8' else ''}.")
        if family == ENTROPY:  # the entropy dispatch walks the segment graphs, as FastBERT's baseline does
            try:
                check_segments(bundle, backend, precision)
            except ConfigError as e:
                return str(e).removeprefix("runtime | ")
    return None


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every (precision, batch size, method) and return ``{"machine", "config", "records", "errors"}``.

    Each cell runs in its own guard (`_guarded`): a precision that does not load, a method that does not build or
    a batch that fails becomes a row of ``errors`` with its reason, and every other cell still runs. Precisions
    (and methods) the backend cannot run on this export are refused before anything loads (``status``
    "refused"). A method that fails at one batch size is retried at the next.
    """
    from tqdm.auto import tqdm

    from runtime.artifacts import load_export

    bundle = load_export(cfg.export, verify=True)
    ds = load_split(cfg.data, cfg.split, known_labels=bundle.label_names).subset(cfg.max_rows)
    labels = np.asarray(ds.labels)
    records: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    L = bundle.shape.num_hidden_layers
    specs = parse_methods(cfg.methods, L)
    if MethodSpec("full") not in specs:  # the reference every speed-up is read against (``full@NAME`` is not it)
        specs.insert(0, MethodSpec("full"))
    skipped: list[dict[str, Any]] = []
    for precision in cfg.precisions:
        why = refusal(bundle, cfg.backend, cfg.device, precision)
        if why is not None:
            errors.append({**_cell(precision, cfg.backend), "status": "refused", "reason": why})
            print(f"bench | {cfg.backend} {precision}: refused ({why})", file=sys.stderr)
            continue
        run_specs = []
        for spec in specs:
            why = refusal(bundle, cfg.backend, cfg.device, precision, spec.family) if spec.source is None else None
            if why is not None:
                errors.append({**_cell(precision, cfg.backend, spec.name), "status": "refused", "reason": why})
            else:
                run_specs.append(spec)
        wants_geep = any(s.family in DISPATCHED and s.source is None for s in run_specs)
        engines: dict[str, tuple[GeepEngine, Parts]] = {}
        segments: dict[str, Any] = {}
        try:
            ok, loaded = _guarded(errors, _cell(precision, cfg.backend), _load, cfg.export, cfg.backend,
                                  cfg.device, precision, threads=cfg.threads, depths=bundle.depths,
                                  fixed_depth=None if wants_geep else L, verify=False)
            if not ok:
                continue
            engines["same-export"] = loaded
            main = loaded[0]
            backend = main.info["backend"]
            contenders: list[_Contender] = []
            for spec in run_specs:
                ok, c = _guarded(errors, _cell(precision, backend, spec.name), _contender, cfg, spec, precision,
                                 backend, L, engines, segments, skipped)
                if ok and c is not None:
                    contenders.append(c)
            enc_all = main.encoder.encode(ds.texts_a, ds.texts_b)
            lengths = enc_all.lengths
            for bs in cfg.batch_sizes:
                batches = length_sorted_batches(lengths, bs)
                live = [c for c in contenders
                        if _guarded(errors, _cell(precision, backend, c.spec.name, bs), _warm_up, c, cfg, ds,
                                    enc_all, batches, bs)[0]]
                bar = tqdm(total=cfg.repeats * len(live), disable=not cfg.progress,
                           desc=f"{backend} {precision} batch {bs}", unit="run")
                for r in range(cfg.repeats):
                    shift = r % max(len(live), 1)
                    for c in live[shift:] + live[:shift]:
                        ok, _ = _guarded(errors, _cell(precision, backend, c.spec.name, bs), c.run, ds.texts_a,
                                         ds.texts_b, c.own, record=(r == 0))
                        if not ok:
                            live = [x for x in live if x is not c]
                        bar.update(1)
                bar.close()
                if live:
                    records += _summarise(live, labels, lengths, bundle.shape, backend, cfg.device, precision,
                                          bs)
        finally:  # a failed run leaves no session or CUDA context behind
            for seg in segments.values():
                if seg is not None:
                    seg.close()
            for e, _ in engines.values():
                e.close()
    return {"machine": machine_info(cfg.device), "config": _config_dict(cfg), "records": records,
            "skipped": skipped, "errors": errors}


def _contender(cfg: BenchConfig, spec: MethodSpec, precision: str, backend: str, L: int,
               engines: dict[str, tuple[GeepEngine, Parts]], segments: dict[str, Any],
               skipped: list[dict[str, Any]]) -> _Contender | None:
    """A method bound to its engine (loaded once per export and precision); None when its graphs are missing."""
    source = _source(cfg, spec)
    if source not in engines:  # an export named by @ dispatches; a baseline's runs fixed depths
        engines[source] = _load(source, backend, cfg.device, precision, fixed_depth=None if spec.source else L,
                                threads=cfg.threads)
    eng, parts = engines[source]
    if spec.layerwise and source not in segments:
        try:
            segments[source] = _segments(parts, backend, cfg.device, precision, cfg.threads)
        except ArtifactError as e:
            segments[source] = None
            skipped.append({"precision": precision, "source": source, "reason": str(e)})
            print(f"bench | skipping layer-by-layer methods on {source} at {precision}: {e}", file=sys.stderr)
    if spec.layerwise and segments[source] is None:
        return None
    return _Contender(spec, MethodRunner(spec, eng, segments.get(source)), source)


def _warm_up(c: _Contender, cfg: BenchConfig, ds: Any, enc_all: Any, batches: list[np.ndarray], bs: int) -> None:
    """This batch size's batches for ``c``, then a warm-up: first-run allocations and lazy init stay out of the
    timings."""
    c.own = _batches_for(c, enc_all, batches, bs)
    c.model_s, c.e2e_s, c.exit_s, c.batch_ms = [], [], [], []
    c.run(ds.texts_a, ds.texts_b, c.own[: cfg.warmup_batches], record=False, timed=False)


def _summarise(contenders: list[_Contender], labels: np.ndarray, lengths: np.ndarray, shape: Any,
               backend: str, device: str, precision: str, bs: int) -> list[dict[str, Any]]:
    C, L = len(contenders[0].runner.engine.label_names), shape.num_hidden_layers
    full = next((c for c in contenders if c.spec == MethodSpec("full")), None)  # None: full failed at this cell
    full_model = median(full.model_s) if full is not None else None
    full_e2e = median(full.e2e_s) if full is not None else None
    out = []
    for c in contenders:
        d = c.depths
        skip = c.runner.engine.info.get("exit_mode") == "skip"
        layers = d + ((d < L) & skip) if c.spec.family in (*GEEP_FAMILIES, "static") else c.layers
        acc = float((c.logits.argmax(axis=1) == labels).mean())
        m_model, m_e2e = median(c.model_s), median(c.e2e_s)
        out.append({
            "method": c.spec.name, "family": c.spec.family, "param": c.spec.param, "heads_from": c.source,
            "backend": backend, "device": device, "precision": precision, "batch_size": bs,
            "rows": int(len(labels)), "repeats": len(c.model_s), "accuracy": round(acc, 4),
            "mean_depth": round(float(d.mean()), 3),
            "depth_histogram": np.bincount(d, minlength=L + 1)[1:].tolist(),
            "flops_speedup": round(flops_speedup(shape, C, lengths, layers, c.heads), 3),
            "wall_speedup": round(full_model / m_model, 3) if m_model and full_model else None,
            "wall_speedup_e2e": round(full_e2e / m_e2e, 3) if m_e2e and full_e2e else None,
            "model_s": round(m_model, 4), "e2e_s": round(m_e2e, 4), "exit_s": round(median(c.exit_s), 5),
            "samples_per_s": round(len(labels) / m_e2e, 1) if m_e2e else None,
            "batch_latency_ms": {k: round(v, 3) for k, v in percentiles(c.batch_ms, (50, 95, 99)).items()},
            "model_s_all": [round(x, 4) for x in c.model_s],
            **({"escalated_share": round(float(c.escalated.mean()), 4)} if c.spec.family == "probe" else {}),
        })
    return out


def _config_dict(cfg: BenchConfig) -> dict[str, Any]:
    d = dict(cfg.__dict__)
    d["export"], d["data"] = str(cfg.export), str(cfg.data)
    d["baseline_exports"] = {k: str(v) for k, v in cfg.baseline_exports.items()}
    d["precisions"], d["batch_sizes"] = list(cfg.precisions), list(cfg.batch_sizes)
    from export.trt_build import INT8_MEANING

    d["precision_notes"] = {"int8": INT8_MEANING, "tf32": "fp32 weights, TF32 matmuls (torch backend only)"}
    d["engine_settings"] = engine_settings(cfg.backend, cfg.device)
    d["timing"] = ("model_s: engines, dispatch and exit decisions (GEEP's exit prediction included, exit_s is that "
                   "part); e2e_s: + tokenisation; "
                   "medians over interleaved repeats; speed-ups vs full, same backend/precision/batch size")
    return d


def engine_settings(backend: str, device: str) -> dict[str, Any]:
    """The runtime settings that change a timing without changing a graph (a cached bench is stale without them):
    the dispatch path's revision and, on ONNX Runtime, the session's disabled rewrites."""
    settings: dict[str, Any] = {"dispatch_revision": DISPATCH_REVISION}
    if backend == ONNXRUNTIME:
        from engines.ort import default_disabled_optimizers

        settings["ort_disabled_optimizers"] = list(default_disabled_optimizers(device))
    return settings


def _num(x: Any, spec: str) -> str:
    """``x`` formatted by ``spec``, or a right-aligned "-" where a figure is missing (no ``full`` to compare)."""
    width = spec.split(".")[0].lstrip(">")
    return format(x, spec) if x is not None else format("-", f">{width}")


def format_table(records: list[dict[str, Any]], errors: Sequence[dict[str, Any]] = ()) -> str:
    """A fixed-width text table of the records (one line per combination), then one line per error row."""
    w = max([14, *(len(r["method"]) + 1 for r in records)])
    head = (f"{'method':<{w}}{'prec':<6}{'batch':>6}{'acc':>8}{'depth':>7}{'FLOPs x':>9}{'wall x':>8}"
            f"{'e2e x':>8}{'model s':>9}{'rows/s':>9}{'p50 ms':>9}{'p95 ms':>9}")
    lines = [head, "-" * len(head)]
    for r in records:
        lat = r["batch_latency_ms"]
        lines.append(
            f"{r['method']:<{w}}{r['precision']:<6}{r['batch_size']:>6}{r['accuracy']:>8.4f}{r['mean_depth']:>7.2f}"
            f"{r['flops_speedup']:>9.2f}{_num(r['wall_speedup'], '>8.2f')}{_num(r['wall_speedup_e2e'], '>8.2f')}"
            f"{r['model_s']:>9.3f}{_num(r['samples_per_s'], '>9.1f')}{lat['p50']:>9.2f}{lat['p95']:>9.2f}"
        )
    for e in errors:
        bs = "" if e.get("batch_size") is None else f" batch {e['batch_size']}"
        lines.append(f"{e['status'].upper()}: {e['method']} {e['backend']} {e['precision']}{bs}: {e['reason']}")
    return "\n".join(lines)
