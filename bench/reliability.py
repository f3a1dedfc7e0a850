"""The hostile-user pass of issues 15 and 25: bad input of every kind, counted by outcome.

On a tiny random-weight model (3 layers, hidden 32, real tokenizer) it runs categories of cases: bad CLI
arguments, bad API arguments, corrupted artifacts, malformed manifests, damaged checkpoints, bad texts, bad
encodings, output paths, and interrupted exports (SIGKILL/SIGTERM of a real export process). Each case ends as
one of:

- ``clean``: a ``GeepError`` (CLI: exit 1 with one ``error:`` line, or argparse's usage error, exit 2);
- ``correct``: it ran, and the answer equals the reference (for cases where running is right);
- ``traceback``: any other exception escaped;
- ``silent_wrong``: it ran but gave another answer than the reference, or succeeded where it must fail;
- ``data_lost``: a file the user had (or the previous export) is gone or changed;
- ``hang``: no answer within the case's time bound (``geep_deploy/bench/reliability_cases.py``, issue 25's cases).

The last four must be 0 (exit code 1 otherwise). Takes 3-6 minutes on two cores; ``FAST`` categories run in
``make test``. The harness is ``geep_deploy.bench.reliability``.

example:
  .venv/bin/python bench/reliability.py --json bench/results/reliability.json --doc docs/reliability.md
  .venv/bin/python bench/reliability.py --from-json bench/results/reliability.json --doc docs/reliability.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from geep_deploy.atomic import atomic_write_text
from geep_deploy.bench.reliability import BAD, run
from geep_deploy.reporting.reliability_page import render_doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None, help="write the per-category figures and cases here")
    ap.add_argument("--doc", type=Path, default=None, help="write the markdown page generated from the JSON")
    ap.add_argument("--from-json", type=Path, default=None, help="only render --doc from this JSON")
    ap.add_argument("--only", default="", help="comma list of categories (default: all)")
    args = ap.parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text(encoding="utf-8"))
    else:
        result = run(set(filter(None, args.only.split(","))) or None)
        if args.json:
            atomic_write_text(args.json, json.dumps(result, indent=1, ensure_ascii=False) + "\n")
            print(f"wrote {args.json}")
    if args.doc:
        atomic_write_text(args.doc, render_doc(result))
        print(f"wrote {args.doc}")
    t = result["total"]
    print(f"total: {t}")
    return 1 if any(t[k] for k in BAD) else 0


if __name__ == "__main__":
    raise SystemExit(main())
