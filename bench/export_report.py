"""Export report for all-MiniLM-L6-v2: export time, size against one model, validation errors per depth, and
agreement/accuracy of every precision variant on the bundled SST-2 dev slice (ONNX Runtime, CPU).

Uses ``runs/geep.pt`` when it exists (a trained checkpoint); otherwise an ``ExitBert`` with the pretrained MiniLM
encoder and exit heads fitted as linear probes on frozen states. The report is ``geep_deploy.bench.export_report``.

example:
  .venv/bin/python bench/export_report.py --out bench/results/export_minilm.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geep_deploy.atomic import atomic_write_text
from geep_deploy.bench.export_report import run_export_report

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "runs" / "geep.pt")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export_minilm.json")
    ap.add_argument("--precision", default="fp32,fp16,bf16,int8")
    ap.add_argument("--eval-depths", default="all")
    ap.add_argument("--dev-rows", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="also keep the export here")
    args = ap.parse_args()
    report = run_export_report(args.checkpoint, args.out.parent, tuple(args.precision.split(",")), args.eval_depths,
                               args.dev_rows, args.threads, args.keep, command=" ".join([".venv/bin/python", *sys.argv]))
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("export_seconds", "sizes")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
