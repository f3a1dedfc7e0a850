"""GEEP's depth L against `full` on every labelled test row, not only the suite's test slice.

The suite reports each set on a seeded slice (2,000 rows where the test split is larger), where a paired
difference of half a point is about one standard error. This bench takes the suite's own `geep` and `full`
checkpoints (``runs/multi_dataset/<set>/seed<S>/ckpt``, training seed ``--train-seed``) and scores both at depth L on the whole test split the suite
samples from, plus the rows of that split outside the suite's slice alone (an independent sample: neither
checkpoint trained on them, and no knob was chosen on them). It trains nothing and changes no suite figure.

    .venv/bin/python bench/depth_l_all_test.py --data-root ../shared/data

Writes ``bench/results/depth_l_all_test.json``; the per-set predictions are cached under ``--work``.
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


def depth_l_correct(ckpt_path: Path, texts_a: list[str], texts_b: list[str] | None, labels: np.ndarray,
                    cache: Path) -> np.ndarray:
    """(N,) bool: the checkpoint's depth-L answer is right; cached beside the suite's run (same rows, same file).

    A cache older than the checkpoint belongs to an earlier training and is recomputed."""
    from geep_deploy.checkpoint import load_checkpoint
    from geep_deploy.encoding import TextEncoder
    from geep_deploy.evaluate import collect_depth_logits

    if cache.is_file() and cache.stat().st_mtime >= ckpt_path.stat().st_mtime:
        got = np.load(cache)
        if got.shape == labels.shape:
            return got
    ckpt = load_checkpoint(ckpt_path)
    enc = TextEncoder(ckpt.tokenizer_json, ckpt.max_len).encode(texts_a, texts_b)
    correct = collect_depth_logits(ckpt.model, enc, 64, "cpu", desc=f"{ckpt_path.parent.parent.name} "
                                   f"{ckpt_path.stem}")[:, -1].argmax(-1) == labels
    np.save(cache.with_suffix(".tmp.npy"), correct)
    cache.with_suffix(".tmp.npy").replace(cache)
    return correct


def measure(name: str, data_root: Path, work: Path, seed: int, train_seed: int = 42) -> dict[str, Any] | None:
    """Depth L of `geep` and `full` on the set's whole test split, and on the rows outside the suite's slice."""
    from geep_deploy.data import load_split
    from geep_deploy.suite.datasets import DATASETS
    from geep_deploy.suite.points import paired_difference_ci

    spec = DATASETS[name]
    here = work / name / f"seed{train_seed}"
    ckpts = {m: here / "ckpt" / f"{m}.pt" for m in ("geep", "full")}
    if not all(p.is_file() for p in ckpts.values()):
        print(f"{name}: no suite checkpoints under {here / 'ckpt'}; run bench/multi_dataset.py first")
        return None
    ds = load_split(data_root / name, spec.test_split)
    labels = np.asarray(ds.labels)
    correct = {m: depth_l_correct(p, ds.texts_a, ds.texts_b, labels, here / f"all_test_{m}_correct.npy")
               for m, p in ckpts.items()}
    in_slice = np.zeros(len(ds), dtype=bool)  # the suite's slice: `write_slices` samples test rows with seed + 1
    in_slice[np.random.default_rng(seed + 1).permutation(len(ds))[: spec.test_rows]] = True

    def figures(rows: np.ndarray) -> dict[str, Any] | None:
        if not rows.any():
            return None
        d, lo, hi = paired_difference_ci(correct["geep"][rows], correct["full"][rows], seed=seed)
        return {"rows": int(rows.sum()), "geep_accuracy": float(correct["geep"][rows].mean()),
                "full_accuracy": float(correct["full"][rows].mean()), "depth_l_minus_full": d, "ci95": [lo, hi]}

    return {"test_split": spec.test_split, "suite_slice_rows": int(in_slice.sum()),
            "all_rows": figures(np.ones(len(ds), dtype=bool)), "outside_suite_slice": figures(~in_slice),
            "suite_slice": figures(in_slice)}


def main(argv: list[str] | None = None) -> int:
    from geep_deploy.machine import machine_info
    from geep_deploy.suite.datasets import DATASETS, parse_datasets

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="sst2,ag_news,thucnews_titles,chnsenticorp,weibo",
                   help=f"comma list of {', '.join(DATASETS)} (default: the sets that learn)")
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p.add_argument("--work", type=Path, default=Path("runs/multi_dataset"), help="the suite's --work")
    p.add_argument("--seed", type=int, default=42, help="the suite's --seed (it fixes the slice)")
    p.add_argument("--train-seed", type=int, default=42, help="which of the suite's training seeds to score")
    p.add_argument("--json", type=Path, default=ROOT / "bench/results/depth_l_all_test.json")
    args = p.parse_args(argv)
    from geep_deploy.atomic import atomic_write_text

    out = {"command": shlex.join([".venv/bin/python", "bench/depth_l_all_test.py", *(argv or sys.argv[1:])]),
           "machine": machine_info("cpu"), "seed": args.seed, "datasets": {}}
    from geep_deploy.errors import GeepError

    try:
        specs = parse_datasets(args.datasets)
        results = {spec.name: measure(spec.name, args.data_root, args.work, args.seed, args.train_seed)
                   for spec in specs}
    except (GeepError, OSError) as e:  # unknown set, missing data folder, damaged checkpoint: nothing is written
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, res in results.items():
        if res is not None:
            out["datasets"][name] = res
            a = res["all_rows"]
            print(f"{name}: {a['rows']} rows, depth L - full {100 * a['depth_l_minus_full']:+.2f} "
                  f"[{100 * a['ci95'][0]:+.2f}, {100 * a['ci95'][1]:+.2f}]")
    atomic_write_text(args.json, json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
