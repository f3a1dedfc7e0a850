"""Build the exit table from calibration data and tune the exit predictor.

Runs every depth of the checkpoint on the calibration split (train by default), labels each row's exit layer by
the rule, builds the exit table from the rows' token unigrams and bigrams, then tunes the predictor's quantile
and margin on the dev split: the fastest setting whose accuracy is at most --max-drop points below depth L's
(default 0.5), or the most accurate one reaching --target-speedup (FLOPs). Prints the dev curve and writes one
table file holding the table, the tuned parameters and the calibration figures.

Example:
  geep-deploy calibrate --checkpoint runs/geep.pt --data geep_deploy/datasets/sst2_demo --out runs/exit_table.npz
"""

from __future__ import annotations

import argparse

from geep_deploy.data import load_split
from geep_deploy.names import DEVICES


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint from `geep-deploy train`")
    p.add_argument("--data", required=True, help="dataset directory (labels.txt, <calib-split>.tsv, dev.tsv)")
    p.add_argument("--out", required=True, help="exit-table file to write (.npz, written atomically)")
    p.add_argument("--rule", choices=("entropy", "consistency"), default="consistency",
                   help="exit-label rule (default consistency: first depth from which all deeper ones agree)")
    p.add_argument("--tau", type=float, default=None, help="entropy threshold for --rule entropy (default 0.3)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--max-drop", type=float, default=0.5,
                        help="accuracy budget in points below depth L's dev accuracy (default 0.5)")
    budget.add_argument("--target-speedup", type=float, default=None, help="FLOPs speed-up to reach instead")
    p.add_argument("--device", choices=DEVICES, default="cpu")
    p.add_argument("--calib-split", default="train", help="split that fills the table (default train)")
    p.add_argument("--max-calib", type=int, default=None, help="use only the first N calibration rows")
    p.add_argument("--batch-size", type=int, default=64)


def format_curve(curve: list[dict], chosen: dict) -> str:
    lines = ["  q     m  accuracy  flops-speedup  mean-depth"]
    for c in curve:
        mark = " *" if (c["quantile"], c["margin"]) == (chosen["quantile"], chosen["margin"]) else ""
        lines.append(f"  {c['quantile']:.2f}  {c['margin']}  {100 * c['accuracy']:7.2f}%  {c['flops_speedup']:12.2f}x"
                     f"  {c['mean_depth']:10.2f}{mark}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from export.calibration import calibrate_checkpoint
    from geep_deploy.checkpoint import load_checkpoint
    from geep_deploy.errors import ConfigError

    if args.max_calib is not None and args.max_calib < 1:
        raise ConfigError(f"calibrate | --max-calib must be >= 1, got {args.max_calib}.")
    if args.batch_size < 1:
        raise ConfigError(f"calibrate | --batch-size must be >= 1, got {args.batch_size}.")
    ckpt = load_checkpoint(args.checkpoint)
    calib = load_split(args.data, args.calib_split).subset(args.max_calib)
    dev = load_split(args.data, "dev")
    res = calibrate_checkpoint(
        ckpt, calib, dev, rule=args.rule, tau=args.tau, max_drop=args.max_drop,
        target_speedup=args.target_speedup, device=args.device, batch_size=args.batch_size,
    )
    path = res.predictor.save(args.out)
    f, c = res.figures, res.chosen
    print(f"calibration: {f['calib_rows']} rows ({args.calib_split}), rule {f['rule']}"
          + (f" tau {f['tau']}" if f["rule"] == "entropy" else "")
          + f"; table {f['table_keys']} keys in {f['table_capacity']} slots (load {f['table_load']:.2f})")
    print(f"dev curve ({f['dev_rows']} rows; depth L accuracy {100 * f['full_accuracy']:.2f}%):")
    print(format_curve(res.curve, c))
    goal = (f"target FLOPs speed-up {f['target_speedup']}x" if f["mode"] == "target_speedup"
            else f"at most {f['max_drop_points']} points below depth L")
    print(f"chosen: quantile {c['quantile']:.2f} margin {c['margin']} -> accuracy {100 * c['accuracy']:.2f}%, "
          f"FLOPs speed-up {c['flops_speedup']:.2f}x, mean depth {c['mean_depth']:.2f} ({goal}"
          + ("" if c["target_met"] else "; NOT met, closest setting chosen") + ")")
    print(f"exit prediction on dev: MAE {f['dev_mae_layers']:.2f} layers, within one layer "
          f"{100 * f['dev_within_one_layer']:.1f}%")
    print(f"wrote {path}")
    return 0
