"""Evaluate GEEP against full, static truncation, FastBERT and PABEE on several datasets; write docs/results.md.

For each dataset: seeded train/test slices of ../shared/data, training of geep, fastbert and pabee on the same
backbone, data, epoch budget and seed (and full fine-tuning at that budget), per-depth logits on test, GEEP's exit table from
the training slice, every method's knob swept on test, operating points at 1.5x/2x/3x FLOPs, per-depth ONNX
exports, and a wall-clock bench of those points on ONNX Runtime (CPU fp32) at batch 1 and 64. Finished steps are
reused (the run resumes where it stopped); per-dataset JSON goes to --results, the page to docs/results.md.

Example (the committed run; about 1.5 h on 2 cores):
  .venv/bin/python bench/multi_dataset.py --datasets all --data-root ../shared/data
  .venv/bin/python bench/multi_dataset.py --page-only     # re-render docs/results.md from the JSON files
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from geep_deploy.errors import GeepError
    from geep_deploy.suite.datasets import DATASETS, parse_datasets
    from geep_deploy.suite.page import write_page
    from geep_deploy.suite.run import SuiteConfig, run_suite

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="all", help=f"'all' or a comma list of {', '.join(DATASETS)}")
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"),
                   help="folder holding sst2/, ag_news/, ... (default ../shared/data)")
    p.add_argument("--work", type=Path, default=Path("runs/multi_dataset"),
                   help="checkpoints, logits, exports and bench files (default runs/multi_dataset)")
    p.add_argument("--results", type=Path, default=Path("bench/results/multi_dataset"),
                   help="per-dataset summary JSON (default bench/results/multi_dataset)")
    p.add_argument("--zh-vocab", type=Path, default=None,
                   help="vocab.txt for Chinese sets (default <data-root>/../models/vocab/bert-base-chinese)")
    p.add_argument("--zh-embed-lr", type=float, default=5e-4,
                   help="word-embedding learning rate on Chinese sets, whose vocabulary rows start random "
                        "(default 5e-4; 0 = the backbone's 5e-5)")
    p.add_argument("--epochs", type=int, default=4,
                   help="training budget per method in epochs over the same rows (default 4: GEEP and PABEE 4, "
                        "FastBERT 2 teacher + 2 students)")
    p.add_argument("--seed", type=int, default=42, help="seed of the train/pool/test slices (default 42)")
    p.add_argument("--seeds", default="42", help="training seeds, a comma list (default 42); the slices stay fixed")
    p.add_argument("--train-only", action="store_true",
                   help="train every checkpoint (every dataset's first seed first) and measure nothing")
    p.add_argument("--repeats", type=int, default=3, help="interleaved bench repeats; medians reported")
    p.add_argument("--bench-rows", type=int, nargs=2, default=(300, 1024), metavar=("B1", "B64"),
                   help="test rows timed at batch 1 and at batch 64 (default 300 1024)")
    p.add_argument("--no-bench", action="store_true", help="skip export and the wall-clock bench")
    p.add_argument("--vocab-ablation", default="afqmc,thucnews_titles",
                   help="Chinese sets that also train `full` with MiniLM's own vocabulary ('none' to skip)")
    p.add_argument("--fresh", action="store_true", help="redo the listed datasets from scratch")
    p.add_argument("--page-only", action="store_true", help="only re-render the results page from --results")
    args = p.parse_args(argv)
    try:
        if args.page_only:
            print(f"wrote {write_page(args.results)}")
            return 0
        if args.epochs < 1 or args.repeats < 1 or min(args.bench_rows) < 1:
            raise SystemExit("multi_dataset: --epochs, --repeats and --bench-rows must be >= 1")
        seeds = tuple(int(t) for t in args.seeds.split(",") if t.strip())
        if not seeds:
            raise SystemExit("multi_dataset: --seeds needs at least one whole number, e.g. 42,43,44")
        cfg = SuiteConfig(datasets=parse_datasets(args.datasets), data_root=args.data_root, work=args.work,
                          results=args.results, zh_vocab=args.zh_vocab, epochs=args.epochs, seed=args.seed,
                          train_seeds=seeds, train_only=args.train_only,
                          bench_rows={1: args.bench_rows[0], 64: args.bench_rows[1]}, repeats=args.repeats,
                          bench=not args.no_bench, fresh=args.fresh, zh_embed_lr=args.zh_embed_lr or None,
                          vocab_ablation=tuple(n for n in args.vocab_ablation.split(",") if n and n != "none"))
        run_suite(cfg)
    except GeepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
