"""Can a probe after layer 1 find the rows that need more than depth 1 (issue 11's premise), on SST-2 dev?

For every dev row (rows the model did not train on) the consistency rule gives an exit depth; the target is
"needs more than depth 1". Candidate signals, each scored by ROC AUC:
- the token-level exit table (the paper's predictor; built from the train rows' exit labels): P(depth > 1) and
  the expected depth from the combined key histograms;
- row length;
- what layer 1 already knows: depth 1's normalised entropy, 1 - its top-two margin;
- a probe: logistic regression on all of the above, scored out of fold (5-fold cross-fitting on dev, so no row
  is scored by a probe that saw its label).
It also prints the two-level dispatch the probe allows (rows under a threshold answer from depth 1, the rest run
to depth L): accuracy against FLOPs speed-up, next to the students' entropy exit at the same speed-up.

    .venv/bin/python bench/probe_auc.py --checkpoint runs/demo/geep.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 2000, lr: float = 0.5) -> np.ndarray:
    """Weights (bias last) of an L2-regularised logistic regression by gradient descent on standardised ``x``."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-xb @ w))
        grad = xb.T @ (p - y) / len(y) + l2 * np.r_[w[:-1], 0.0]
        w -= lr * grad
    return w


def out_of_fold(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Probe scores where each row is scored by a probe fitted on the other folds."""
    order = np.random.default_rng(seed).permutation(len(y))
    scores = np.zeros(len(y))
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
        w = fit_logistic((x[train] - mu) / sd, y[train].astype(np.float64))
        scores[test] = np.hstack([(x[test] - mu) / sd, np.ones((len(test), 1))]) @ w
    return scores


def two_level_curve(score: np.ndarray, logits: np.ndarray, labels: np.ndarray, shape, lengths) -> list[dict]:
    """Accuracy and FLOPs speed-up when rows scoring below each quantile answer at depth 1, the rest at depth L."""
    from geep_deploy.flops import flops_speedup

    L, C = logits.shape[1], logits.shape[2]
    out = []
    for q in np.linspace(0.0, 0.9, 19):
        early = score < np.quantile(score, q) if q > 0 else np.zeros(len(score), dtype=bool)
        depths = np.where(early, 1, L)
        pred = np.where(early, logits[:, 0].argmax(-1), logits[:, -1].argmax(-1))
        out.append({"share_at_depth_1": float(early.mean()), "accuracy": float((pred == labels).mean()),
                    "flops_speedup": flops_speedup(shape, C, lengths, depths)})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "demo" / "geep.pt")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "probe_auc_sst2.json")
    a = p.parse_args()

    from export.calibration import batch_mass
    from geep_deploy.atomic import atomic_write_text
    from geep_deploy.checkpoint import load_checkpoint
    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.encoding import TextEncoder
    from geep_deploy.evaluate import collect_depth_logits
    from geep_deploy.exits import (
        consistency_exit_depths,
        entropy_exit_depths,
        exit_figures,
        normalized_entropy,
        softmax,
    )
    from geep_deploy.machine import machine_info
    from geep_deploy.suite.points import auc
    from runtime.predictor import build_predictor

    ck = load_checkpoint(a.checkpoint)
    L = ck.model.num_layers
    enc = TextEncoder(ck.tokenizer_json, ck.max_len)
    train, dev = load_split(bundled_data_dir(), "train"), load_split(bundled_data_dir(), "dev")
    tr, dv = enc.encode(train.texts_a, train.texts_b), enc.encode(dev.texts_a, dev.texts_b)
    tr_logits = collect_depth_logits(ck.model, tr, desc="train logits")
    dv_logits = collect_depth_logits(ck.model, dv, desc="dev logits")
    labels = np.asarray(dev.labels)
    hard = consistency_exit_depths(dv_logits) > 1

    predictor = build_predictor(tr.ids, consistency_exit_depths(tr_logits), L, sorted(enc.special_ids))
    mass = batch_mass(predictor, dv.ids)
    p1 = softmax(dv_logits[:, 0].astype(np.float64))
    top2 = np.sort(p1, axis=1)[:, -2:]
    signals = {
        "table: P(depth > 1)": 1.0 - mass[:, 0],
        "table: expected depth": (mass * np.arange(1, L + 1)).sum(axis=1),
        "row length": dv.lengths.astype(np.float64),
        "depth 1: normalised entropy": normalized_entropy(dv_logits[:, 0]),
        "depth 1: 1 - top-two margin": 1.0 - (top2[:, 1] - top2[:, 0]),
    }
    features = np.stack(list(signals.values()), axis=1)
    probe = out_of_fold(features, hard)
    aucs = {name: auc(s, hard) for name, s in signals.items()}
    aucs["probe: logistic on all of the above (out of fold)"] = auc(probe, hard)

    curve = two_level_curve(probe, dv_logits, labels, ck.shape, dv.lengths)
    entropy = []
    for s in np.round(np.arange(0.05, 0.96, 0.05), 2):
        d = entropy_exit_depths(dv_logits, float(s))
        entropy.append({"speed": float(s), **exit_figures(ck.shape, dv_logits, labels, dv.lengths, d, heads=d)})
    report = {
        "command": " ".join([".venv/bin/python", *sys.argv]), "machine": machine_info("cpu"),
        "checkpoint": str(a.checkpoint), "dev_rows": len(labels), "train_rows": len(train.labels),
        "share_needing_more_than_depth_1": float(hard.mean()), "auc": aucs,
        "probe_features": list(signals), "two_level_probe_curve": curve, "students_entropy_exit": entropy,
    }
    atomic_write_text(a.json, json.dumps(report, indent=1) + "\n")
    for name, v in aucs.items():
        print(f"{name:<55} AUC {v:.3f}")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
