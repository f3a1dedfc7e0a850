"""Why do GEEP's shallow students learn less than FastBERT's? Loss terms, teacher entropy and gradients per step.

Trains each variant on a suite dataset's training slice (the rows ``bench/multi_dataset.py`` trains on) and, every
``--every`` steps, records on the current batch, before the optimiser step:
- the teacher's mean normalised entropy (how uniform the target the students are distilled towards is);
- every student's KL to the teacher and its cross-entropy against the gold labels;
- the gradient norm each GEEP loss term sends to the backbone, the students' heads and the teacher's head.
Per-depth accuracy (students and the shared exit path) is measured after every epoch on held-out rows of the
same split that neither the slice nor the suite's test rows contain, so the defaults it picks are not tuned on test.
The monitor saves and restores torch's RNG, so the trained weights are those of a run without it. The diagnostics
are ``geep_deploy.bench.train_diagnostics``.

Writes ``bench/results/train_diagnostics_<dataset>.json`` and a plot beside it.

example:
  .venv/bin/python bench/train_diagnostics.py --dataset thucnews_titles --data-root ../shared/data \\
      --variant reference=geep --variant student-ce=geep:student_ce_weight=1 --variant fastbert=fastbert
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from geep_deploy.bench.train_diagnostics import parse_variant, run_diagnostics
from geep_deploy.suite.datasets import DATASETS

ROOT = Path(__file__).resolve().parents[1]

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    ap.add_argument("--data-root", type=Path, required=True, help="the shared data folder (sst2/, ag_news/, ...)")
    ap.add_argument("--variant", action="append", required=True, help="name=geep|fastbert|pabee|full[:opt=value,...]")
    ap.add_argument("--val-rows", type=int, default=1000, help="held-out rows of the training split")
    ap.add_argument("--every", type=int, default=5, help="record the terms every this many steps")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    variants = [parse_variant(v) for v in args.variant]
    out = args.out or ROOT / "bench" / "results" / f"train_diagnostics_{DATASETS[args.dataset].name}.json"
    command = shlex.join([".venv/bin/python", "bench/train_diagnostics.py",
                          *(argv if argv is not None else sys.argv[1:])])
    run_diagnostics(args.dataset, args.data_root, variants, out, command, val_rows=args.val_rows, every=args.every)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
