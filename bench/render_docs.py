"""Fill the generated figure blocks of README.md and docs/*.md from the committed JSON files in bench/results/.

A block is ``<!-- figures:NAME -->`` ... ``<!-- /figures -->``; an inline figure in prose is
``<!-- value:NAME -->TEXT<!-- /value -->``. ``geep_deploy.reporting.docs`` renders them (every block names its JSON
and the command that wrote it). ``--check`` rewrites nothing and exits 1 when any marker's text differs from what
its JSON renders (tests/test_docs_figures.py checks the same, so CI fails on drift). docs/results.md is written by
``bench/multi_dataset.py --page-only`` and is not touched here.

Usage:  python bench/render_docs.py [--check]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from geep_deploy.reporting.docs import run

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if any generated text differs from its JSON")
    a = ap.parse_args(argv)
    stale = run(a.check, ROOT)
    if a.check and stale:
        print("stale generated figures in: " + ", ".join(stale) + "; run `python bench/render_docs.py`")
        return 1
    print(("updated: " + ", ".join(stale)) if stale else "all generated figures match their JSON")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
