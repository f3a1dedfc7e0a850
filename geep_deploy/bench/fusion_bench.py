"""ONNX Runtime's SkipLayerNormalization rewrite on the CPU: which graphs it matches and what it costs.

``bench/fusion_bench.py`` is its command line; `engines.ort.CPU_DISABLED_OPTIMIZERS` is the setting it checks.
On one export's fp32 graphs, at one batch size over length-sorted batches:

- ``full``: the depth-L graph (what `full` runs), the runtime's default sessions; ``full_again`` is an identical
  contender in its own session (the noise figure), ``full_fused`` the same graph with the rewrite allowed.
- ``layerwise``: ``embed`` then ``layer1..L`` (the graphs FastBERT's and PABEE's layer-wise walk and the entropy
  exit run, every layer on every row), default sessions; ``layerwise_fused`` the same chain with the rewrite on.

It also counts the fused nodes ORT builds in each graph kind with the rewrite on, so the JSON shows where it
matches. Repeats are interleaved (`padding_bench.interleaved`); ratios are against ``full``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.bench.padding_bench import feed_pass, interleaved, ratios

FUSED_OP = "SkipLayerNormalization"


def fused_nodes(graph: Path, disabled: tuple[str, ...]) -> int:
    """How many ``SkipLayerNormalization`` nodes ORT's CPU optimiser builds in ``graph`` with ``disabled`` off."""
    from engines.ort import optimized_op_types

    return sum(op == FUSED_OP for op in optimized_op_types(graph, disabled))


def _layerwise_pass(segments: Any, feeds: list[dict[str, np.ndarray]]) -> Callable[[], None]:
    """Every layer on every row: the embedding, then ``layer1..L`` (each with its exit head)."""
    def run() -> None:
        for f in feeds:
            state = segments.embed(f)
            for k in range(1, segments.num_layers + 1):
                segments.layer(k, state)
    return run


def run_fusion_bench(export: str, data: str | None = None, split: str = "dev", batch_size: int = 64,
                     repeats: int = 7, threads: int | None = None, command: str = "") -> dict[str, Any]:
    """Both settings on ``export``'s fp32 graphs over ``split`` of ``data`` (default: the bundled SST-2 slice);
    the result JSON's record."""
    from engines.ort import CPU_DISABLED_OPTIMIZERS
    from engines.registry import open_engine
    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.encoding import TextEncoder, length_sorted_batches, pad_batch
    from geep_deploy.machine import machine_info
    from geep_deploy.names import ONNXRUNTIME
    from runtime.artifacts import load_export
    from runtime.layerwise import EngineSegments

    load_start = list(os.getloadavg())
    bundle = load_export(export)
    L = bundle.shape.num_hidden_layers

    def graph(kind: str, depth: int | None = None) -> Path:
        return Path(bundle.find(kind=kind, depth=depth, format="onnx", precision="fp32").path)

    ds = load_split(data or bundled_data_dir(), split)
    encoder = TextEncoder(bundle.tokenizer_json, bundle.max_len)
    enc = encoder.encode(ds.texts_a, ds.texts_b)
    feeds = [pad_batch(enc.take(g), encoder.pad_id) for g in length_sorted_batches(enc.lengths, batch_size)]
    opened: list[Any] = []

    def engine(path: Path, fused: bool) -> Any:
        opened.append(open_engine(ONNXRUNTIME, path, threads=threads, check_inputs=False,
                                  disabled_optimizers=() if fused else None))
        return opened[-1]

    def chain(fused: bool) -> EngineSegments:
        return EngineSegments(engine(graph("embed"), fused), [engine(graph("layer", k), fused)
                                                               for k in range(1, L + 1)])

    try:
        stats = interleaved({
            "full": feed_pass(engine(graph("depth", L), False), feeds),
            "full_again": feed_pass(engine(graph("depth", L), False), feeds),
            "full_fused": feed_pass(engine(graph("depth", L), True), feeds),
            "layerwise": _layerwise_pass(chain(False), feeds),
            "layerwise_fused": _layerwise_pass(chain(True), feeds),
        }, repeats)
    finally:
        for e in opened:
            e.close()
    stats["ratios"] = ratios(stats, "full", {"noise_again_over_full": "full_again", "full_fused_over_full":
                                             "full_fused", "layerwise_over_full": "layerwise",
                                             "layerwise_fused_over_full": "layerwise_fused"})
    counts = {f"depth{L}": graph("depth", L), "layer1": graph("layer", 1)}
    return {
        "command": command,
        "machine": {**machine_info("cpu"), "load_average_at_start": load_start,
                    "load_average_at_end": list(os.getloadavg())},
        "config": {"export": export, "depth": L, "precision": "fp32", "backend": "onnxruntime", "device": "cpu",
                   "threads": threads, "max_len": bundle.max_len, "batch_size": batch_size,
                   "data": str(data or "geep_deploy/datasets/sst2_demo"), "split": split, "rows": len(enc),
                   "repeats": repeats, "default_disabled_optimizers": list(CPU_DISABLED_OPTIMIZERS),
                   "timing": "one pass over the rows in length-sorted batches (wall-clock, and process CPU time of "
                             "all ORT threads), median of interleaved repeats"},
        "fused_nodes_with_rewrite": {k: fused_nodes(p, ()) for k, p in counts.items()},
        "fused_nodes_default": {k: fused_nodes(p, CPU_DISABLED_OPTIMIZERS) for k, p in counts.items()},
        "passes": stats,
    }
