"""Exit-prediction quality on SST-2 dev (bundled slice); writes bench/results/exit_prediction_sst2.json.

- GEEP checkpoint: exit labels by the consistency rule on the 2,000 training rows, table built from them, q/m
  tuned on the 872 dev rows (``calibrate_from_logits``, the code path of ``geep-deploy calibrate``). Reports the
  MAE between predicted and labelled (dev) exit layer, the share within one layer, and the dev curve.
- FastBERT checkpoint: its own entropy exit (speed threshold 0..1), FLOPs with one head per layer run.
- Side by side: best accuracy of each at FLOPs speed-ups >= 1.25x .. 3x. Also GEEP's model with the entropy
  exit (dynamic, not predicted), to separate the cost of predicting exits from the model itself.

Usage:  .venv/bin/python bench/exit_prediction_sst2.py [--geep runs/geep.pt] [--fastbert runs/fastbert.pt]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from export.calibration import calibrate_from_logits
from geep_deploy.atomic import atomic_write_text
from geep_deploy.bench.machine import cpu_bench_machine_info
from geep_deploy.checkpoint import Checkpoint, load_checkpoint
from geep_deploy.data import bundled_data_dir, load_split
from geep_deploy.encoding import TextEncoder
from geep_deploy.evaluate import collect_depth_logits
from geep_deploy.exits import entropy_exit_depths, predictions_at
from geep_deploy.flops import flops_speedup

TARGETS = (1.05, 1.1, 1.15, 1.2, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
TAUS = tuple(round(t, 2) for t in np.arange(0.0, 1.0001, 0.05))


def load_with_pooling(path: str) -> Checkpoint:
    """Load a checkpoint; one written before exit heads had a ``pooling`` field was trained on [CLS].

    ``load_checkpoint`` defaults a missing field to ``mean`` (the current default), which would evaluate such a
    checkpoint with heads fed inputs they were never trained on.
    """
    import torch

    ckpt = load_checkpoint(path)
    if "pooling" not in torch.load(path, map_location="cpu", weights_only=True):
        ckpt.model.pooling = "cls"
    return ckpt


def logits_for(ckpt: Checkpoint, texts: list[str], desc: str) -> tuple[list[np.ndarray], np.ndarray]:
    enc = TextEncoder(ckpt.tokenizer_json, ckpt.max_len).encode(texts)
    return enc.ids, collect_depth_logits(ckpt.model, enc, 64, "cpu", desc)


def entropy_curve(ckpt: Checkpoint, logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray) -> list[dict]:
    """FastBERT-style dynamic exit: every head up to the exit depth runs (heads = depth)."""
    out = []
    for tau in TAUS:
        d = entropy_exit_depths(logits, tau)
        out.append({"tau": tau, "accuracy": float((predictions_at(logits, d) == labels).mean()),
                    "flops_speedup": flops_speedup(ckpt.shape, logits.shape[2], lengths, d, heads=d),
                    "mean_depth": float(d.mean())})
    return out


def best_at(curve: list[dict], target: float) -> dict[str, Any] | None:
    ok = [c for c in curve if c["flops_speedup"] >= target]
    return max(ok, key=lambda c: (c["accuracy"], c["flops_speedup"])) if ok else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--geep", default="runs/geep.pt")
    ap.add_argument("--fastbert", default="runs/fastbert.pt")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "exit_prediction_sst2.json"))
    ap.add_argument("--max-calib", type=int, default=None, help="first N training rows only")
    args = ap.parse_args()
    data = bundled_data_dir()
    train, dev = load_split(data, "train").subset(args.max_calib), load_split(data, "dev")
    labels = np.asarray(dev.labels)
    result: dict[str, Any] = {"machine": cpu_bench_machine_info(), "data": str(data.name), "calib_rows": len(train),
                              "dev_rows": len(dev), "command": "python " + " ".join(sys.argv)}

    geep = load_with_pooling(args.geep)
    calib_ids, calib_logits = logits_for(geep, train.texts_a, "geep train pass")
    dev_ids, dev_logits = logits_for(geep, dev.texts_a, "geep dev pass")
    lengths = np.fromiter((len(r) for r in dev_ids), dtype=np.int64, count=len(dev_ids))
    specials = sorted(TextEncoder(geep.tokenizer_json, geep.max_len).special_ids)
    result["geep_checkpoint"] = {"path": args.geep, "pooling": geep.model.pooling, "metrics": geep.metrics,
                                 "hparams": geep.hparams}
    result["geep_dev_accuracy_per_depth"] = [float((dev_logits[:, k].argmax(-1) == labels).mean())
                                             for k in range(dev_logits.shape[1])]
    runs = {}
    for weighting in ("log", "count", "uniform"):
        res = calibrate_from_logits(geep, calib_ids, calib_logits, dev_ids, dev_logits, labels, specials,
                                    weighting=weighting)
        runs[weighting] = {"figures": res.figures, "chosen": res.chosen, "curve": res.curve}
        f = res.figures
        print(f"geep predictor ({weighting}): MAE {f['dev_mae_layers']:.2f} (q.5: {f['dev_mae_layers_q50_m0']:.2f}, "
              f"constant: {f['dev_mae_layers_constant_median']:.2f}), within one {100 * f['dev_within_one_layer']:.1f}%"
              f"; chosen acc {100 * f['accuracy']:.2f}% at {f['flops_speedup']:.2f}x (full {100 * f['full_accuracy']:.2f}%)")
    result["geep_predicted"] = runs
    result["geep_entropy_dynamic"] = entropy_curve(geep, dev_logits, labels, lengths)

    fb_path = Path(args.fastbert)
    if fb_path.is_file():
        fast = load_with_pooling(str(fb_path))
        _, fb_logits = logits_for(fast, dev.texts_a, "fastbert dev pass")
        result["fastbert_checkpoint"] = {"path": str(fb_path), "pooling": fast.model.pooling, "metrics": fast.metrics}
        result["fastbert_dev_accuracy_per_depth"] = [float((fb_logits[:, k].argmax(-1) == labels).mean())
                                                     for k in range(fb_logits.shape[1])]
        result["fastbert_entropy"] = entropy_curve(fast, fb_logits, labels, lengths)
    else:
        result["fastbert_entropy"] = None
        result["fastbert_missing"] = f"{fb_path} not found (trainer not finished in time)"
    table = []
    for t in TARGETS:
        row: dict[str, Any] = {"target_flops_speedup": t}
        for name, curve in (("geep_predicted", runs["log"]["curve"]),
                            ("geep_predicted_uniform_weighting", runs["uniform"]["curve"]),
                            ("geep_entropy_dynamic", result["geep_entropy_dynamic"]),
                            ("fastbert_entropy", result["fastbert_entropy"] or [])):
            b = best_at(curve, t)
            row[name] = None if b is None else {k: b[k] for k in b if k != "target_met"}
        table.append(row)
        print(t, {k: (None if v is None else round(100 * v["accuracy"], 2)) for k, v in row.items()
                  if k != "target_flops_speedup"})
    result["at_same_flops_speedup"] = table
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
