"""Side-by-side benchmark of GEEP and the baselines: accuracy, FLOPs and wall-clock, one run, same inputs.

For each precision and batch size, every method gets the same batches (dev rows sorted by length, then cut).
Repeats are interleaved (repeat r runs every method once, in a rotated order) so machine noise hits all methods
alike; times are medians over repeats. Speed-ups are against ``full`` with the same backend, precision and batch
size. ``model`` time covers the engines only (and, for GEEP, the dispatch); ``e2e`` adds tokenisation and exit
prediction.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.data import load_split
from geep_deploy.encoding import length_sorted_batches
from geep_deploy.errors import ArtifactError, ConfigError
from geep_deploy.flops import flops_speedup
from geep_deploy.machine import machine_info
from runtime.baselines import GEEP_FAMILIES, EngineSegments, MethodRunner, MethodSpec, TorchSegments
from runtime.dispatch import plan_groups
from runtime.engine import GeepEngine
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


def _segments(eng: GeepEngine, backend: str, device: str, precision: str, threads: int | None) -> Any:
    if eng.parts is None:
        raise ConfigError("bench | layer-by-layer baselines need an engine loaded with GeepEngine.load.")
    if eng.parts.model is not None:
        return TorchSegments(eng.parts.model, device, precision)
    from runtime.loading import segment_engines

    embed, layers = segment_engines(eng.parts, backend, device, precision, threads)
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
            e2e = tok + out.exit_s + out.model_s
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


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every (precision, batch size, method) and return ``{"machine", "config", "records"}``."""
    from tqdm.auto import tqdm

    ds = load_split(cfg.data, cfg.split).subset(cfg.max_rows)
    labels = np.asarray(ds.labels)
    records: list[dict[str, Any]] = []
    from runtime.artifacts import load_export
    from runtime.baselines import parse_methods

    bundle = load_export(cfg.export, verify=True)
    L = bundle.shape.num_hidden_layers
    specs = parse_methods(cfg.methods, L)
    if "full" not in [s.family for s in specs]:
        specs.insert(0, MethodSpec("full"))
    wants_geep = any(s.family in (*GEEP_FAMILIES, "probe") and s.source is None for s in specs)
    skipped: list[dict[str, Any]] = []
    for precision in cfg.precisions:
        main = GeepEngine.load(cfg.export, cfg.backend, cfg.device, precision, threads=cfg.threads,
                               depths=bundle.depths, fixed_depth=None if wants_geep else L, verify=False)
        engines: dict[str, GeepEngine] = {"same-export": main}
        segments: dict[str, Any] = {}
        try:
            backend = main.info["backend"]
            contenders: list[_Contender] = []
            for spec in specs:
                source = _source(cfg, spec)
                if source not in engines:  # an export named by @ dispatches; a baseline's runs fixed depths
                    engines[source] = GeepEngine.load(source, backend, cfg.device, precision,
                                                      fixed_depth=None if spec.source else L, threads=cfg.threads)
                eng = engines[source]
                if spec.layerwise and source not in segments:
                    try:
                        segments[source] = _segments(eng, backend, cfg.device, precision, cfg.threads)
                    except ArtifactError as e:
                        segments[source] = None
                        skipped.append({"precision": precision, "source": source, "reason": str(e)})
                        print(f"bench | skipping layer-by-layer methods on {source} at {precision}: {e}",
                              file=sys.stderr)
                if spec.layerwise and segments[source] is None:
                    continue
                contenders.append(_Contender(spec, MethodRunner(spec, eng, segments.get(source)), source))
            enc_all = main.encoder.encode(ds.texts_a, ds.texts_b)
            lengths = enc_all.lengths
            for bs in cfg.batch_sizes:
                batches = length_sorted_batches(lengths, bs)
                own = {id(c): _batches_for(c, enc_all, batches, bs) for c in contenders}
                for c in contenders:  # warm-up: first-run allocations and lazy init stay out of the timings
                    c.model_s, c.e2e_s, c.exit_s, c.batch_ms = [], [], [], []
                    c.run(ds.texts_a, ds.texts_b, own[id(c)][: cfg.warmup_batches], record=False, timed=False)
                bar = tqdm(total=cfg.repeats * len(contenders), disable=not cfg.progress,
                           desc=f"{backend} {precision} batch {bs}", unit="run")
                for r in range(cfg.repeats):
                    shift = r % len(contenders)
                    for c in contenders[shift:] + contenders[:shift]:
                        c.run(ds.texts_a, ds.texts_b, own[id(c)], record=(r == 0))
                        bar.update(1)
                bar.close()
                records += _summarise(contenders, labels, lengths, main, backend, cfg.device, precision, bs)
        finally:  # a failed run leaves no session or CUDA context behind
            for seg in segments.values():
                if seg is not None:
                    seg.close()
            for e in engines.values():
                e.close()
    return {"machine": machine_info(cfg.device), "config": _config_dict(cfg), "records": records,
            "skipped": skipped}


def _summarise(contenders: list[_Contender], labels: np.ndarray, lengths: np.ndarray, main: GeepEngine,
               backend: str, device: str, precision: str, bs: int) -> list[dict[str, Any]]:
    shape, C = main.parts.bundle.shape, len(main.label_names)
    L = shape.num_hidden_layers
    full = next(c for c in contenders if c.spec.family == "full")
    full_model, full_e2e = median(full.model_s), median(full.e2e_s)
    out = []
    for c in contenders:
        d = c.depths
        skip = c.runner.engine.parts is not None and c.runner.engine.parts.bundle.exit_mode == "skip"
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
            "wall_speedup": round(full_model / m_model, 3) if m_model else None,
            "wall_speedup_e2e": round(full_e2e / m_e2e, 3) if m_e2e else None,
            "model_s": round(m_model, 4), "e2e_s": round(m_e2e, 4), "exit_s": round(median(c.exit_s), 5),
            "samples_per_s": round(len(labels) / m_e2e, 1) if m_e2e else None,
            "batch_latency_ms": {k: round(v, 3) for k, v in percentiles(c.batch_ms).items()},
            "model_s_all": [round(x, 4) for x in c.model_s],
            **({"escalated_share": round(float(c.escalated.mean()), 4)} if c.spec.family == "probe" else {}),
        })
    return out


def _config_dict(cfg: BenchConfig) -> dict[str, Any]:
    d = dict(cfg.__dict__)
    d["export"], d["data"] = str(cfg.export), str(cfg.data)
    d["baseline_exports"] = {k: str(v) for k, v in cfg.baseline_exports.items()}
    d["precisions"], d["batch_sizes"] = list(cfg.precisions), list(cfg.batch_sizes)
    d["timing"] = ("model_s: engines (+ GEEP's grouping/padding) only; e2e_s: + tokenisation + exit prediction; "
                   "medians over interleaved repeats; speed-ups vs full, same backend/precision/batch size")
    return d


def format_table(records: list[dict[str, Any]]) -> str:
    """A fixed-width text table of the records (one line per combination)."""
    w = max([14, *(len(r["method"]) + 1 for r in records)])
    head = (f"{'method':<{w}}{'prec':<6}{'batch':>6}{'acc':>8}{'depth':>7}{'FLOPs x':>9}{'wall x':>8}"
            f"{'e2e x':>8}{'model s':>9}{'rows/s':>9}{'p50 ms':>9}{'p95 ms':>9}")
    lines = [head, "-" * len(head)]
    for r in records:
        lat = r["batch_latency_ms"]
        lines.append(
            f"{r['method']:<{w}}{r['precision']:<6}{r['batch_size']:>6}{r['accuracy']:>8.4f}{r['mean_depth']:>7.2f}"
            f"{r['flops_speedup']:>9.2f}{r['wall_speedup']:>8.2f}{r['wall_speedup_e2e']:>8.2f}{r['model_s']:>9.3f}"
            f"{r['samples_per_s']:>9.1f}{lat['p50']:>9.2f}{lat['p95']:>9.2f}"
        )
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], out: Path) -> Path:
    """Accuracy against wall-clock speed-up, one series per (method family, precision, batch size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    series: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        series.setdefault((r["family"], r["precision"], r["batch_size"]), []).append(r)
    markers = {"full": "*", "static": "s", "geep": "o", "geep-pool": "D", "probe": "P", "fastbert": "^", "pabee": "v"}
    for (fam, prec, bs), rs in sorted(series.items()):
        rs = sorted(rs, key=lambda r: r["wall_speedup"])
        ax.plot([r["wall_speedup"] for r in rs], [r["accuracy"] for r in rs], marker=markers.get(fam, "x"),
                label=f"{fam} {prec} b{bs}", linestyle="-" if len(rs) > 1 else "none")
    ax.set_xlabel("wall-clock speed-up vs full (model time)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
