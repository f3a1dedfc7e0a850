"""Exit-table and exit-prediction cost: a benchmark script (not a test); writes bench/results/exit_table_bench.json.

1. Table throughput: NumPy twin, tables of 2^14 .. 2^23 distinct random keys at load exactly 0.5 (L = 6; powers of
   two, because ``capacity_for`` rounds the capacity up to one): inserts/s (one
   bulk insert into an empty table) and lookups/s (all keys present, shuffled; and all absent). CuPy twin: the
   same where a GPU is visible, otherwise recorded as skipped.
2. Prediction overhead: exit prediction (hash + lookup + quantile) plus ``plan_groups`` as a share of the full
   model's batch time (``ExitBert`` with the packaged all-MiniLM-L6-v2, depth L, traced to ONNX and run by ONNX
   Runtime CPU fp32 through the engines' runner, as the CPU serves it; ``--model-backend torch`` for the eager
   module), on SST-2 dev rows of the bundled slice in length-sorted batches of 1, 32 and 128 (the fair baseline of
   GEEP.md). Timings of the two are interleaved batch by batch, so machine noise hits both; medians over repeats.
   The model runs one thread by default (``--threads``) so that both sides are single-threaded.

Every figure is given as wall-clock and as process CPU time: on a shared machine (the one these numbers come
from ran other jobs at a load average near 10 on 2 cores) CPU time is the better estimate of an idle core.

The benchmark is ``geep_deploy.bench.exit_table_bench``.

example:
  .venv/bin/python bench/exit_table_bench.py [--sizes 16384,131072,1048576,8388608] [--repeats 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geep_deploy.atomic import atomic_write_text
from geep_deploy.bench.exit_table_bench import run_exit_table_bench
from geep_deploy.names import ONNXRUNTIME, TORCH

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="16384,131072,1048576,8388608", help="distinct keys per table")
    ap.add_argument("--batch-sizes", default="1,32,128")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "exit_table_bench.json"))
    ap.add_argument("--skip-model", action="store_true", help="only the table throughput")
    ap.add_argument("--skip-table", action="store_true", help="only the prediction overhead")
    ap.add_argument("--threads", "--torch-threads", dest="threads", type=int, default=1,
                    help="CPU threads of the model's backend (default 1, like the predictor's one thread)")
    ap.add_argument("--model-backend", choices=(ONNXRUNTIME, TORCH), default=ONNXRUNTIME,
                    help=f"backend of the depth-L model the prediction is measured against (default {ONNXRUNTIME}, "
                         "the CPU's serving backend)")
    args = ap.parse_args()
    parts = tuple(p for p, skip in (("table", args.skip_table), ("model", args.skip_model)) if not skip)
    result = run_exit_table_bench([int(float(s)) for s in args.sizes.split(",")],
                                  [int(b) for b in args.batch_sizes.split(",")], args.repeats, args.threads,
                                  parts, command=" ".join([".venv/bin/python", *sys.argv]),
                                  model_backend=args.model_backend)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
