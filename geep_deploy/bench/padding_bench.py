"""Two costs the docs quote, measured on the full model with ONNX Runtime (CPU, fp32); ``bench/padding_bench.py``
is its command line.

1. Padding at batch 64: the full-depth graph over the dev split in dataset-order batches (each padded to its own
   longest row) against length-sorted batches (what every method of `geep-deploy bench` gets).
2. ORT's MatMul pre-packing at batch 1: the same graph with ``session.disable_prepacking`` on and off.

Noise: an identical contender (``length_sorted_again``, ``prepacking_again``) runs in the same interleaved repeats,
and the ratio between the identical pair is the noise figure written next to the ratios.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _time_pass(run: Callable[[], Any]) -> tuple[float, float]:
    """Wall-clock and process CPU time (all ORT threads) of one pass: CPU time is steadier on a loaded machine."""
    t0, c0 = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - t0, time.process_time() - c0


def feed_pass(engine: Any, feeds: list[dict[str, np.ndarray]]) -> Callable[[], None]:
    """One pass of ``engine`` over ``feeds`` (a contender of `interleaved`)."""
    def run() -> None:
        for f in feeds:
            engine.infer(f)
    return run


def interleaved(contenders: dict[str, Callable[[], Any]], repeats: int) -> dict[str, Any]:
    """Seconds per pass of each contender (a callable running one pass), repeats interleaved in a rotating order
    after one warm-up pass each."""
    names = list(contenders)
    for run in contenders.values():
        run()
    times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[: r % len(names)]:
            times[n].append(_time_pass(contenders[n]))
    return {n: {"seconds": [w for w, _ in t], "median_s": float(np.median([w for w, _ in t])),
                "cpu_seconds": [c for _, c in t], "median_cpu_s": float(np.median([c for _, c in t]))}
            for n, t in times.items()}


def ratios(stats: dict[str, Any], base: str, names: dict[str, str]) -> dict[str, float]:
    """``name -> config's median / base's median``, for wall-clock and (prefixed ``cpu_``) CPU time."""
    out = {name: stats[cfg]["median_s"] / stats[base]["median_s"] for name, cfg in names.items()}
    out |= {f"cpu_{name}": stats[cfg]["median_cpu_s"] / stats[base]["median_cpu_s"] for name, cfg in names.items()}
    return out


def run_padding_bench(export: str, data: str | None = None, split: str = "dev", batch_size: int = 64,
                      batch1_rows: int = 218, repeats: int = 5, threads: int | None = None,
                      command: str = "") -> dict[str, Any]:
    """Both comparisons on ``export``'s full-depth fp32 graph over ``split`` of ``data`` (default: the bundled
    SST-2 slice); the result JSON's record."""
    from engines.base import BaseEngine
    from engines.registry import open_engine
    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.encoding import TextEncoder, length_sorted_batches, pad_batch
    from geep_deploy.machine import machine_info
    from geep_deploy.names import ONNXRUNTIME
    from runtime.artifacts import load_export

    load_start = list(os.getloadavg())
    bundle = load_export(export)
    L = bundle.shape.num_hidden_layers
    graph = Path(bundle.find(kind="depth", depth=L, format="onnx", precision="fp32").path)
    ds = load_split(data or bundled_data_dir(), split)
    encoder = TextEncoder(bundle.tokenizer_json, bundle.max_len)
    enc = encoder.encode(ds.texts_a, ds.texts_b)
    n, b = len(enc), batch_size

    def engine(**kw: Any) -> BaseEngine:
        return open_engine(ONNXRUNTIME, graph, threads=threads, check_inputs=False, **kw)

    def batches_of(groups: list[np.ndarray]) -> tuple[list[dict[str, np.ndarray]], float]:
        feeds = [pad_batch(enc.take(g), encoder.pad_id) for g in groups]
        real = sum(int(f["attention_mask"].sum()) for f in feeds)
        return feeds, real / sum(f["attention_mask"].size for f in feeds)

    dataset_order = [np.arange(i, min(i + b, n)) for i in range(0, n, b)]
    feeds_ds, real_ds = batches_of(dataset_order)
    feeds_sorted, real_sorted = batches_of(length_sorted_batches(enc.lengths, b))
    engines = [engine() for _ in range(3)]
    padding = interleaved({"dataset_order": feed_pass(engines[0], feeds_ds),
                           "length_sorted": feed_pass(engines[1], feeds_sorted),
                           "length_sorted_again": feed_pass(engines[2], feeds_sorted)}, repeats)
    padding["real_token_fraction"] = {"dataset_order": real_ds, "length_sorted": real_sorted}
    padding["ratios"] = ratios(padding, "length_sorted", {"dataset_order_over_sorted": "dataset_order",
                                                          "noise_sorted_again_over_sorted": "length_sorted_again"})
    for e in engines:
        e.close()

    rows = np.unique(np.linspace(0, n - 1, min(batch1_rows, n)).round().astype(int))
    feeds_1 = [pad_batch(enc.take([i]), encoder.pad_id) for i in rows]
    engines = [engine(), engine(), engine(disable_prepacking=True)]
    prepack = interleaved({"prepacking": feed_pass(engines[0], feeds_1),
                           "prepacking_again": feed_pass(engines[1], feeds_1),
                           "prepacking_disabled": feed_pass(engines[2], feeds_1)}, repeats)
    prepack["ratios"] = ratios(prepack, "prepacking", {"disabled_over_prepacking": "prepacking_disabled",
                                                       "noise_again_over_prepacking": "prepacking_again"})
    prepack["rows"] = len(rows)
    for e in engines:
        e.close()

    return {
        "command": command,
        "machine": {**machine_info("cpu"), "load_average_at_start": load_start,
                    "load_average_at_end": list(os.getloadavg())},
        "config": {"export": export, "graph": graph.name, "depth": L, "precision": "fp32",
                   "backend": "onnxruntime", "device": "cpu", "threads": threads, "max_len": bundle.max_len,
                   "data": str(data or "geep_deploy/datasets/sst2_demo"), "split": split, "rows": n,
                   "repeats": repeats, "timing": "model time of one pass over the rows (wall-clock, and process "
                                                   "CPU time of all ORT threads), median of interleaved repeats"},
        "padding": {"batch_size": b, **padding},
        "prepacking": {"batch_size": 1, **prepack},
    }
