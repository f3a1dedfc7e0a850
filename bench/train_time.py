"""Training wall-clock per method at the suite's budgets, measured interleaved on one machine.

The suite's checkpoints record their own training time, but those runs are sequential and share the CPU with
whatever else runs. This bench times short, interleaved runs of every method on the same rows (SST-2 training
slice, batch 32, 64 tokens), takes the median seconds per epoch of every stage, and scales them to the suite's
budget: `full`, GEEP and PABEE fine-tune for --budget epochs; FastBERT as published is `full` (its teacher) plus
``run.FASTBERT_DISTILL_EPOCHS`` distillation epochs, so each repeat times its distillation alone
(``train(..., teacher=<that repeat's full checkpoint>)``) and adds `full`'s seconds. ``full`` runs twice as two
identically configured methods: their spread is the noise of the measurement.

    .venv/bin/python bench/train_time.py --data-root ../shared/data

Writes ``bench/results/train_time.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

METHODS = ("full", "geep", "fastbert", "pabee", "full-again")  # `full` first: each repeat's FastBERT distils from it
TEACHER_STAGE = "full (teacher)"


def main(argv: list[str] | None = None) -> int:
    from geep_deploy.atomic import atomic_write_text
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.data import load_split
    from geep_deploy.machine import machine_info
    from geep_deploy.suite.datasets import DATASETS, sample
    from geep_deploy.trainer import TrainConfig, train

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: .venv/bin/python bench/train_time.py --data-root ../shared/data")
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=320, help="rows per timed epoch (default 320: 10 steps)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=int, default=4, help="epochs per method the figures are scaled to")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train_time.json")
    args = ap.parse_args(argv)
    spec = DATASETS["sst2"]
    rows = sample(load_split(args.data_root / "sst2", "train"), args.rows, 42)
    backbone = load_backbone_dir(None)
    per_epoch: dict[str, dict[str, list[float]]] = {m: {} for m in METHODS}
    for rep in range(args.repeats):
        teacher = None
        for m in METHODS:
            method = m.split("-")[0]
            ck = train(backbone, rows, None, TrainConfig(method=method, epochs=1, distill_epochs=1,
                                                         max_len=spec.max_len, seed=rep),
                       teacher=teacher if method == "fastbert" else None)
            teacher = ck if m == "full" else teacher
            for stage, secs in ck.metrics["stage_seconds"].items():
                per_epoch[m].setdefault(stage, []).append(secs)
            print(f"repeat {rep + 1}/{args.repeats} {m}: {ck.metrics['stage_seconds']}", flush=True)
    records = {m: budget_record(per_epoch, m, args.budget, -(-args.rows // 32)) for m in METHODS}
    a, b = records["full"]["seconds_at_budget"], records["full-again"]["seconds_at_budget"]
    result = {"command": shlex.join([".venv/bin/python", "bench/train_time.py",
                                     *(argv if argv is not None else sys.argv[1:])]),
              "machine": machine_info(), "rows": args.rows, "batch_size": 32, "max_len": spec.max_len,
              "repeats": args.repeats, "budget": args.budget, "records": records, "interleaved": True,
              "fastbert_teacher": "full",
              "noise": abs(a - b) / min(a, b),
              "geep_over_fastbert": records["geep"]["seconds_at_budget"] / records["fastbert"]["seconds_at_budget"],
              "geep_over_pabee": records["geep"]["seconds_at_budget"] / records["pabee"]["seconds_at_budget"]}
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("noise", "geep_over_fastbert", "geep_over_pabee")}))
    print(f"wrote {args.out}")
    return 0


def budget_record(per_epoch: dict[str, dict[str, list[float]]], method: str, budget: int,
                  steps: int) -> dict[str, Any]:
    """One method's median seconds per epoch of each stage, scaled to the suite's budget. FastBERT's stages are
    its teacher (`full`, ``budget`` epochs, the same repeats' `full` timings) and its distillation."""
    from geep_deploy.suite.run import stage_epochs

    epochs, distill = stage_epochs(method, budget)
    med = {stage: float(np.median(v)) for stage, v in per_epoch[method].items()}
    if distill is None:
        return {"seconds_per_epoch": med, "all_seconds": per_epoch[method], "budget_epochs": [epochs],
                "seconds_at_budget": sum(med.values()) * epochs, "steps_per_epoch": steps}
    teacher = float(np.median(per_epoch["full"]["full"]))
    return {"seconds_per_epoch": {TEACHER_STAGE: teacher, **med}, "all_seconds": per_epoch[method],
            "budget_epochs": [epochs, distill], "seconds_at_budget": teacher * epochs + sum(med.values()) * distill,
            "steps_per_epoch": steps}


if __name__ == "__main__":
    raise SystemExit(main())
