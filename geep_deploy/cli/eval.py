"""Evaluate a checkpoint: accuracy and FLOPs speed-up per depth, and per exit threshold.

For geep/fastbert checkpoints the table also sweeps FastBERT's entropy exit ("speed" threshold) and PABEE's
patience exit on the students; for pabee checkpoints the patience exit. For geep checkpoints it also reports the
shared exit path per depth (layers 1..k, then layer L and the teacher: what GEEP's shared exit loss trains).

Example:
  geep-deploy eval --checkpoint runs/demo/geep.pt --data geep_deploy/datasets/sst2_demo --split dev --json eval.json
"""

from __future__ import annotations

import argparse
import json

from geep_deploy.data import SPLITS
from geep_deploy.names import DEVICES


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="dataset directory (labels.txt, <split>.tsv)")
    p.add_argument("--split", default="dev", choices=SPLITS, help="default: dev")
    p.add_argument("--batch-size", type=int, default=64, help="rows per forward pass (default: 64)")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="default: cpu")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the figures as JSON")


def run(args: argparse.Namespace) -> int:
    from geep_deploy.atomic import atomic_write_text, check_output_file
    from geep_deploy.checkpoint import load_checkpoint
    from geep_deploy.data import load_split
    from geep_deploy.errors import DataError
    from geep_deploy.limits import check_count
    from geep_deploy.report import evaluate_checkpoint, format_per_depth, format_skip, format_sweeps

    check_count("eval | --batch-size", args.batch_size)
    if args.json:  # fail now, not after the evaluation ran
        check_output_file(args.json, "eval --json")
    ckpt = load_checkpoint(args.checkpoint)
    ds = load_split(args.data, args.split, known_labels=ckpt.label_names)  # no labels.txt: the checkpoint's
    if ds.label_names != ckpt.label_names:
        raise DataError(
            f"eval | {args.data} names labels {ds.label_names}, the checkpoint was trained on {ckpt.label_names}."
        )
    res = evaluate_checkpoint(ckpt, ds, args.batch_size, args.device)
    print(f"{ckpt.method} on {args.split} ({res['rows']} rows)")
    print(format_per_depth({ckpt.method: res}))
    if res["per_depth_skip"]:
        print("\nshared exit path (layers 1..k, then layer L and the teacher) against the student at depth k:")
        print(format_skip(res))
    if res["exit_sweeps"]:
        print()
        print(format_sweeps(res))
    if args.json:
        from geep_deploy.machine import machine_info

        res["command"] = (f"geep-deploy eval --checkpoint {args.checkpoint} --data {args.data} --split {args.split} "
                          f"--json {args.json}")
        res["machine"] = machine_info(args.device)
        atomic_write_text(args.json, json.dumps(res, indent=2))
        print(f"wrote {args.json}")
    return 0
