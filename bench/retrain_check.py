"""Retrain one cached suite checkpoint by its recipe and say whether it reproduces, bit for bit.

The suite's per-row answers of an old seed can be regenerated only by retraining it; this measures whether that
works on the machine at hand. It reads the checkpoint the suite cached under --work (bench/multi_dataset.py must
have trained that seed), trains the same method again into a scratch folder (FastBERT from the cached `full`
teacher) and compares every tensor. The JSON names the machine; run it where the cached checkpoint was trained to
test the trainer's determinism.

example:
  .venv/bin/python bench/retrain_check.py --dataset weibo --seed 43 --method fastbert
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geep_deploy.atomic import atomic_write_text
from geep_deploy.errors import GeepError
from geep_deploy.machine import machine_info
from geep_deploy.suite.datasets import parse_datasets
from geep_deploy.suite.retrain_check import retrain_check
from geep_deploy.suite.run import TRAINED, SuiteConfig

RESULTS = Path(__file__).resolve().parent / "results" / "retrain_check"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, help="a suite dataset whose seed is cached under --work")
    ap.add_argument("--seed", type=int, required=True, help="the training seed to retrain")
    ap.add_argument("--method", required=True, choices=TRAINED)
    ap.add_argument("--data-root", default="../shared/data", help="as given to bench/multi_dataset.py")
    ap.add_argument("--work", default="runs/multi_dataset", help="the suite's work folder (cached checkpoints)")
    ap.add_argument("--scratch", default="runs/retrain_check", help="where the retrained checkpoint goes")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/retrain_check/<set>_seed<S>_"
                                                "<method>.json)")
    a = ap.parse_args(argv)
    try:
        spec = parse_datasets(a.dataset)[0]
        cfg = SuiteConfig(datasets=[spec], data_root=Path(a.data_root), work=Path(a.work))
        result = retrain_check(cfg, spec, a.seed, a.method, Path(a.scratch))
    except GeepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result.update(machine=machine_info(), command=" ".join([".venv/bin/python", "bench/retrain_check.py",
                                                               *(sys.argv[1:] if argv is None else argv)]))
    out = Path(a.out) if a.out else RESULTS / f"{spec.name}_seed{a.seed}_{a.method}.json"
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    verdict = "reproduced bit for bit" if result["identical"] else (
        f"{len(result['differ'])} of {result['tensors']} tensors differ (max |diff| {result['max_abs_diff']:.3g})")
    print(f"{spec.name} seed {a.seed} {a.method}: {verdict} on {result['machine']['cpu']}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
