"""The fair race of issue 23: GEEP against full, static truncation, FastBERT and PABEE on several datasets.

For each dataset: seeded train / held-out pool / test slices of ../shared/data (test rows whose text is in the train
slice or the pool are dropped), then per training seed (--seeds): `full`, GEEP and PABEE fine-tuned for the same
budget on the same rows, and FastBERT as published (its teacher is that seed's `full` checkpoint, then its students
self-distil with the backbone frozen); per-depth logits; GEEP's exit table and layer-1 probe fitted on the pool's
exit labels; every method's knob swept on tuning rows (the pool; SST-2: a seeded half of its test slice) and never
on the reported rows; accuracy at exactly 1.5x/2x/3x FLOPs interpolated on each method's tuning-chosen frontier,
and the area over [1x, 3x]; exports and a wall-clock bench on ONNX Runtime (CPU fp32, batch 1 and 64) of every
chosen point, every method on the same padding-aware cut path, in 2 separate runs of --repeats interleaved
repeats. One GEEP configuration is reported as GEEP (`run.HEADLINE`); the others are ablations. Finished steps are
reused (the run resumes where it stopped); per-seed JSON goes to --results/<set>/seed<S>.json with every knob's
per-row answers beside it (answers_seed<S>.npz, so the intervals can be recomputed from the committed files), the
summary across seeds (gaps with seed x row paired-bootstrap intervals) to --results/<set>/summary.json, the page
to docs/results.md.

Examples:
  .venv/bin/python bench/multi_dataset.py --datasets all --data-root ../shared/data --seeds 42,43,44 --train-only
  .venv/bin/python bench/multi_dataset.py --datasets all --data-root ../shared/data --seeds 42,43,44
  .venv/bin/python bench/multi_dataset.py --page-only   # re-aggregate every set's seeds, re-render the page

--train-only trains every checkpoint (every set's first seed first) and measures nothing, so a long run can start
early; the measuring run then reuses those checkpoints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from geep_deploy.errors import GeepError
    from geep_deploy.suite.datasets import DATASETS, parse_datasets
    from geep_deploy.suite.run import SuiteConfig, run_suite

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="all", help=f"'all' or a comma list of {', '.join(DATASETS)}")
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"),
                   help="folder holding sst2/, ag_news/, ... (default ../shared/data)")
    p.add_argument("--work", type=Path, default=Path("runs/multi_dataset"),
                   help="checkpoints, logits, exports and bench files (default runs/multi_dataset)")
    p.add_argument("--results", type=Path, default=Path("bench/results/multi_dataset"),
                   help="per-set seed<S>.json and summary.json folders (default bench/results/multi_dataset)")
    p.add_argument("--zh-vocab", type=Path, default=None,
                   help="vocab.txt for Chinese sets (default <data-root>/../models/vocab/bert-base-chinese)")
    p.add_argument("--zh-embed-lr", type=float, default=5e-4,
                   help="word-embedding learning rate on Chinese sets, whose vocabulary rows start random "
                        "(default 5e-4; 0 = the backbone's 5e-5)")
    p.add_argument("--epochs", type=int, default=4,
                   help="fine-tuning budget in epochs over the same rows (default 4): full, GEEP and PABEE; FastBERT "
                        "is `full` plus its own distillation epochs (run.FASTBERT_DISTILL_EPOCHS)")
    p.add_argument("--seed", type=int, default=42, help="seed of the train/pool/test slices (default 42)")
    p.add_argument("--seeds", default=None,
                   help="training seeds, a comma list (default 42); the slices stay fixed. With --page-only: the "
                        "seeds the page expects (default page.PLANNED_SEEDS), missing ones are named")
    p.add_argument("--train-only", action="store_true",
                   help="train every checkpoint (every dataset's first seed first) and measure nothing")
    p.add_argument("--repeats", type=int, default=5,
                   help="interleaved repeats in each of the 2 bench runs (default 5); medians reported")
    p.add_argument("--bench-rows", type=int, nargs=2, default=(300, 1024), metavar=("B1", "B64"),
                   help="test rows timed at batch 1 and at batch 64 (default 300 1024)")
    p.add_argument("--no-bench", action="store_true", help="skip export and the wall-clock bench")
    p.add_argument("--vocab-ablation", default="afqmc,thucnews_titles",
                   help="Chinese sets that also train `full` with MiniLM's own vocabulary ('none' to skip)")
    p.add_argument("--fresh", action="store_true", help="redo the listed datasets from scratch")
    p.add_argument("--page-only", action="store_true",
                   help="only re-aggregate every set's seed files (with their answers_seed<S>.npz) and re-render "
                        "the page")
    args = p.parse_args(argv)
    try:
        if args.page_only:
            return _page_only(args)
        if args.epochs < 1 or args.repeats < 1 or min(args.bench_rows) < 1:
            raise SystemExit("multi_dataset: --epochs, --repeats and --bench-rows must be >= 1")
        seeds = _seeds(args.seeds or "42")
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


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        seeds = ()
    if not seeds or len(set(seeds)) != len(seeds):
        raise SystemExit(f"multi_dataset: --seeds {text!r} must be distinct whole numbers, e.g. 42,43,44")
    return seeds


def _page_only(args: argparse.Namespace) -> int:
    """Aggregate every set's seed files into its summary.json, then write docs/results.md."""
    from geep_deploy.suite.page import PLANNED_SEEDS, refresh_summaries, write_page

    for warning in refresh_summaries(args.results, args.work):
        print(f"warning: {warning}", file=sys.stderr)
    planned = _seeds(args.seeds) if args.seeds else PLANNED_SEEDS
    print(f"wrote {write_page(args.results, planned=planned)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
