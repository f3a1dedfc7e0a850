"""Evaluation figures of a checkpoint on a split: per-depth accuracy and the exit-rule sweeps, with FLOPs speed-ups.

Everything is computed from one (N, L, C) logits array, so sweeping thresholds costs no extra model passes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geep_deploy.checkpoint import Checkpoint
from geep_deploy.data import TextDataset
from geep_deploy.encoding import TextEncoder
from geep_deploy.evaluate import collect_depth_and_skip_logits, collect_depth_logits
from geep_deploy.exits import (
    PATIENCE_GRID,
    SPEED_GRID,
    entropy_exit_depths,
    exit_figures,
    patience_exit_depths,
)
from geep_deploy.flops import flops_speedup

ENTROPY_SPEEDS, PATIENCES = SPEED_GRID, PATIENCE_GRID


def evaluate_checkpoint(
    ckpt: Checkpoint, ds: TextDataset, batch_size: int = 64, device: str = "cpu", progress: bool = True
) -> dict[str, Any]:
    """Accuracy and FLOPs speed-up per depth, and per exit threshold for methods that have students."""
    enc = TextEncoder(ckpt.tokenizer_json, ckpt.max_len).encode(ds.texts_a, ds.texts_b)
    desc = "eval" if progress else None
    skip = None
    if ckpt.method == "geep":  # only GEEP's shared exit loss trains the teacher on shallow states: one pass for both
        logits, skip = collect_depth_and_skip_logits(ckpt.model, enc, batch_size, device, desc)
    else:
        logits = collect_depth_logits(ckpt.model, enc, batch_size, device, desc)
    y = np.asarray(ds.labels)
    lengths = enc.lengths
    shape, C, L = ckpt.shape, ckpt.model.num_labels, ckpt.model.num_layers
    per_depth = [
        {"depth": k, "accuracy": float((logits[:, k - 1].argmax(-1) == y).mean()),
         "flops_speedup": flops_speedup(shape, C, lengths, np.full(len(y), k))}
        for k in ckpt.trained_depths
    ]
    per_depth_skip = []
    if skip is not None:
        per_depth_skip = [
            {"depth": k, "accuracy": float((skip[:, k - 1].argmax(-1) == y).mean()),
             "flops_speedup": flops_speedup(shape, C, lengths, np.full(len(y), k + 1))}
            for k in range(1, L)
        ]
    sweeps: list[dict[str, Any]] = []
    if ckpt.method in ("geep", "fastbert"):
        for s in ENTROPY_SPEEDS:
            d = entropy_exit_depths(logits, s)
            sweeps.append({"rule": "entropy", "threshold": s, **exit_figures(shape, logits, y, lengths, d, heads=d)})
    if ckpt.method in ("pabee", "geep", "fastbert"):
        for p in PATIENCES:
            if p < L:
                d = patience_exit_depths(logits, p)
                sweeps.append({"rule": "patience", "threshold": p, **exit_figures(shape, logits, y, lengths, d, heads=d)})
    return {
        "method": ckpt.method, "rows": len(y), "num_layers": L, "source": ds.source,
        "per_depth": per_depth, "per_depth_skip": per_depth_skip, "exit_sweeps": sweeps,
    }


def format_per_depth(results: dict[str, dict[str, Any]]) -> str:
    """Side-by-side per-depth accuracy table for several methods (keyed by a display name)."""
    names = list(results)
    L = max(r["num_layers"] for r in results.values())
    head = f"{'depth':>5} {'FLOPs x':>8} " + " ".join(f"{n:>12}" for n in names)
    lines = [head, "-" * len(head)]
    for k in range(1, L + 1):
        row, fx = [], ""
        for n in names:
            rec = next((r for r in results[n]["per_depth"] if r["depth"] == k), None)
            row.append(f"{rec['accuracy'] * 100:>11.2f}%" if rec else f"{'-':>12}")
            fx = fx or (f"{rec['flops_speedup']:.2f}" if rec else "")
        lines.append(f"{k:>5} {fx:>8} " + " ".join(row))
    return "\n".join(lines)


def format_skip(result: dict[str, Any]) -> str:
    """The shared exit path per depth next to the student at the same depth (it costs one layer more)."""
    students = {r["depth"]: r for r in result["per_depth"]}
    lines = [f"{'depth':>5} {'student %':>10} {'FLOPs x':>8} {'skip exit %':>12} {'FLOPs x':>8}"]
    for r in result.get("per_depth_skip", []):
        s = students.get(r["depth"])
        acc = f"{s['accuracy'] * 100:>10.2f} {s['flops_speedup']:>8.2f}" if s else f"{'-':>10} {'':>8}"
        lines.append(f"{r['depth']:>5} {acc} {r['accuracy'] * 100:>12.2f} {r['flops_speedup']:>8.2f}")
    return "\n".join(lines)


def format_sweeps(result: dict[str, Any]) -> str:
    lines = [f"{'rule':>9} {'thresh':>7} {'acc %':>7} {'FLOPs x':>8} {'mean depth':>10}"]
    for s in result["exit_sweeps"]:
        lines.append(f"{s['rule']:>9} {s['threshold']:>7} {s['accuracy'] * 100:>7.2f} {s['flops_speedup']:>8.2f} "
                     f"{s['mean_depth']:>10.2f}")
    return "\n".join(lines)
