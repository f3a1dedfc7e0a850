"""Does calibrating GEEP's exit table on held-out rows (not trained on) find hard rows better than the train slice?

Reads a finished dataset of `bench/multi_dataset.py` (its GEEP checkpoint, slices and test logits), labels exits on
N rows of the original split that are in neither slice, builds one exit table from those and one from the train
slice, and prints, for each, the exit histogram and the ROC AUC of the predicted expected depth for the test rows
that need more than depth 1.

Example:
  .venv/bin/python bench/exit_table_heldout.py sst2 train 4000
"""

from __future__ import annotations

import sys

import numpy as np


def main(name: str, split: str, n: int, data_root: str = "../shared/data", work: str = "runs/multi_dataset") -> None:
    from export.calibration import batch_mass
    from geep_deploy.checkpoint import load_checkpoint
    from geep_deploy.data import load_split
    from geep_deploy.encoding import TextEncoder
    from geep_deploy.evaluate import collect_depth_logits
    from geep_deploy.exits import consistency_exit_depths
    from geep_deploy.suite.points import auc
    from runtime.predictor import build_predictor

    w = f"{work}/{name}/"
    ck = load_checkpoint(w + "ckpt/geep.pt")
    te, tr = load_split(w + "data", "test"), load_split(w + "data", "train")
    full = load_split(f"{data_root}/{name}", split)
    seen = set(tr.texts_a) | set(te.texts_a)
    idx = [i for i in np.random.default_rng(5).permutation(len(full)) if full.texts_a[i] not in seen][:n]
    enc = TextEncoder(ck.tokenizer_json, ck.max_len)
    held = enc.encode([full.texts_a[i] for i in idx], None if full.texts_b is None else [full.texts_b[i] for i in idx])
    logits = np.load(w + "logits.npz")
    L = ck.model.num_layers
    hard = consistency_exit_depths(logits["test_geep"]) > 1
    te_ids = enc.encode(te.texts_a, te.texts_b).ids
    sources = (("train slice", enc.encode(tr.texts_a, tr.texts_b).ids, logits["train_geep"]),
               ("held-out", held.ids, collect_depth_logits(ck.model, held)))
    for label, ids, lg in sources:
        exits = consistency_exit_depths(lg)
        mass = batch_mass(build_predictor(ids, exits, L, sorted(enc.special_ids)), te_ids)
        expected = (mass * np.arange(1, L + 1)).sum(axis=1)
        print(f"{name} {label}: {len(ids)} rows, exit histogram {np.bincount(exits, minlength=L + 1)[1:].tolist()}, "
              f"AUC for rows needing more than depth 1: {auc(expected, hard):.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
