"""Build the exit table from calibration data and tune the exit predictor (the --device's default kind too).

Runs every depth of the checkpoint on the calibration split (train by default), labels each row's exit layer by
the rule, builds the exit table from the rows' token unigrams and bigrams, then tunes the predictor's quantile
and margin on the dev split: the fastest setting whose accuracy is at most --max-drop points below depth L's
(default 0.5), or the most accurate one reaching --target-speedup (FLOPs). Prints the dev curve and writes one
table file holding the table, the tuned parameters and the calibration figures. Without dev.tsv, the last 20% of
the calibration rows are held out for tuning (it says how many). It ends with one line saying which predictor to
export and why, and warns when --max-drop is smaller than one dev row.

With --max-disagree EPS the knobs are instead the fastest setting whose disagreement with depth L (the full
model's answer) is certified to be at most EPS of rows, at --confidence (default 0.9), on the dev rows: a
distribution-free guarantee (Learn then Test, export/consistency.py; docs/consistency.md says what it covers). It
needs no gold labels, and the dev rows must be rows the model, the table and the probe did not fit.

The default --predictor is the product's default for the --device (geep_deploy.names.DEFAULT_PREDICTOR, set from
the measurement in docs/results.md: entropy on cpu, probe on cuda). --predictor probe (exit mode student, no
escalation) also fits the layer-1 probe (features: depth 1's entropy, margin and top
probability, and the length; --probe-with-table adds the table's statistics) on the calibration rows' exit
labels, tunes its risk level (and with --escalation tune its escalation threshold) on dev for the same budget,
and writes it as JSON next to the table (--probe-out). --predictor table builds and tunes the token table only.
--predictor entropy chooses instead the threshold of FastBERT's entropy exit over the model's own heads (layer by
layer, a head check per layer, no dense groups; on the CPU it was often faster than the probe at equal accuracy,
docs/results.md) on dev for the same budget (--max-drop, --target-speedup, or --max-disagree), and writes it as
JSON next to the table (--entropy-out).
Export both with `geep-deploy export --exit-table TABLE --probe PROBE` (or `--entropy ENTROPY`). With --exit-mode skip the probe dispatches
to GEEP's shared exit path (layers 1..k, then layer L and the teacher: one layer more, often more accurate than
the students); export that probe with --exit-mode skip.

Example (runs/demo/geep.pt is written by `geep-deploy demo`, or by `geep-deploy train`):
  geep-deploy calibrate --checkpoint runs/demo/geep.pt --data geep_deploy/datasets/sst2_demo \\
      --out runs/exit_table.npz          # on the CPU also writes runs/exit_table.entropy.json
  geep-deploy calibrate --checkpoint runs/demo/geep.pt --data geep_deploy/datasets/sst2_demo \\
      --out runs/exit_table.npz --predictor probe   # also writes runs/exit_table.probe.json
  geep-deploy calibrate --checkpoint runs/demo/geep.pt --data geep_deploy/datasets/sst2_demo \\
      --out runs/exit_table.npz --predictor probe --escalation tune
  geep-deploy calibrate --checkpoint runs/demo/geep.pt --data geep_deploy/datasets/sst2_demo \\
      --out runs/exit_table.npz --max-disagree 0.02 --confidence 0.9   # certified: <= 2% of rows differ
  geep-deploy calibrate --checkpoint runs/demo/geep.pt --data geep_deploy/datasets/sst2_demo \\
      --out runs/skip_table.npz --predictor probe --exit-mode skip   # then: export ... --probe runs/skip_table.probe.json --exit-mode skip
  geep-deploy calibrate --checkpoint runs/demo/geep.pt --data geep_deploy/datasets/sst2_demo \\
      --out runs/exit_table.npz --predictor entropy   # then: export ... --entropy runs/exit_table.entropy.json
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from geep_deploy.data import load_split
from geep_deploy.names import DEFAULT_PREDICTOR, DEVICES, ENTROPY, EXIT_MODES, PREDICTOR_KINDS, PROBE

DEFAULT_MAX_DROP = 0.5
"""The accuracy budget in points below depth L (``--max-drop``), also the demo's."""
HOLDOUT_SHARE = 0.2
"""Without dev.tsv, this share of the calibration rows (the last ones) is held out to tune the knobs."""


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint from `geep-deploy train`")
    p.add_argument("--data", required=True,
                   help="dataset directory (labels.txt, <calib-split>.tsv, optionally dev.tsv: without it the last "
                        f"{100 * HOLDOUT_SHARE:.0f}%% of the calibration rows tune the knobs)")
    p.add_argument("--out", required=True, help="exit-table file to write (.npz, written atomically)")
    p.add_argument("--rule", choices=("entropy", "consistency"), default="consistency",
                   help="exit-label rule (default consistency: first depth from which all deeper ones agree)")
    p.add_argument("--tau", type=float, default=None, help="entropy threshold for --rule entropy (default 0.3)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP,
                        help=f"accuracy budget in points below depth L's dev accuracy (default {DEFAULT_MAX_DROP})")
    budget.add_argument("--target-speedup", type=float, default=None, help="FLOPs speed-up to reach instead")
    budget.add_argument("--max-disagree", type=float, default=None, metavar="EPS",
                        help="instead: the fastest setting whose disagreement with depth L is certified <= EPS "
                             "(e.g. 0.02 = 2%% of rows) at --confidence on the dev rows (no gold labels needed)")
    p.add_argument("--confidence", type=float, default=None,
                   help="confidence 1 - delta of the --max-disagree guarantee (default 0.9)")
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="torch device of the calibration pass, and the device whose default --predictor applies "
                        "(default cpu)")
    p.add_argument("--calib-split", default="train", help="split that fills the table (default train)")
    p.add_argument("--max-calib", type=int, default=None, help="use only the first N calibration rows")
    p.add_argument("--batch-size", type=int, default=64, help="rows per forward pass (default: 64)")
    probe = p.add_argument_group("probe (--predictor probe)")
    probe.add_argument("--predictor", choices=PREDICTOR_KINDS, default=None,
                       help="probe: the table and the layer-1 probe, which an export then dispatches by; table: the "
                            "token exit table only; entropy: the table and the entropy exit's threshold (FastBERT's "
                            "exit over the model's own heads). Default: the product's default for --device "
                            f"({', '.join(f'{d}: {k}' for d, k in DEFAULT_PREDICTOR.items())})")
    probe.add_argument("--entropy-out", default=None,
                       help="with --predictor entropy: the threshold's JSON to write (default: next to --out, e.g. "
                            "exit_table.entropy.json)")
    probe.add_argument("--probe-out", default=None,
                       help="probe JSON to write (default: next to --out, e.g. exit_table.probe.json)")
    probe.add_argument("--escalation", choices=("off", "tune"), default="off",
                       help="off: no escalation (default); tune: also try escalation thresholds on dev")
    probe.add_argument("--exit-mode", choices=EXIT_MODES, default="student",
                       help="exits the probe dispatches to: student heads (default), or skip, GEEP's shared exit "
                            "path (layers 1..k, then layer L and the teacher; export with --exit-mode skip)")
    probe.add_argument("--probe-with-table", action="store_true",
                       help="also give the probe the exit table's statistics as features (default: depth 1's logits "
                            "and the length only; in docs/results.md the table's features left its AUC about where it "
                            "was)")


def format_curve(curve: list[dict], chosen: dict) -> str:
    lines = ["  q     m  accuracy  flops-speedup  mean-depth"]
    for c in curve:
        mark = " *" if (c["quantile"], c["margin"]) == (chosen["quantile"], chosen["margin"]) else ""
        lines.append(f"  {c['quantile']:.2f}  {c['margin']}  {100 * c['accuracy']:7.2f}%  {c['flops_speedup']:12.2f}x"
                     f"  {c['mean_depth']:10.2f}{mark}")
    return "\n".join(lines)


def predictor_kind(args: argparse.Namespace) -> str:
    """``--predictor``, else the product's default for ``--device`` (`geep_deploy.names.DEFAULT_PREDICTOR`)."""
    return args.predictor or DEFAULT_PREDICTOR[args.device]


def probe_path(args: argparse.Namespace) -> Path:
    """Where the probe goes: ``--probe-out``, else next to the table (``exit_table.npz`` -> ``exit_table.probe.json``)."""
    return Path(args.probe_out) if args.probe_out else Path(args.out).with_suffix(".probe.json")


def entropy_path(args: argparse.Namespace) -> Path:
    """Where the entropy exit goes: ``--entropy-out``, else next to the table (``exit_table.entropy.json``)."""
    return Path(args.entropy_out) if args.entropy_out else Path(args.out).with_suffix(".entropy.json")


def derived_outputs(args: argparse.Namespace) -> dict[str, Path]:
    """Outputs no flag names (the default probe or entropy path), for the CLI's output-vs-input check."""
    kind = predictor_kind(args)
    if kind == PROBE and not args.probe_out:
        return {"--probe-out": probe_path(args)}
    return {"--entropy-out": entropy_path(args)} if kind == ENTROPY and not args.entropy_out else {}


def check_flags(args: argparse.Namespace) -> None:
    """The rules between calibrate's flags, before anything is read (`geep_deploy.cli.checks.check_args`).

    Raises:
        ConfigError: a flag that the chosen rule or predictor would ignore, named with the fix.
    """
    from geep_deploy.errors import ConfigError

    if args.max_calib is not None and args.max_calib < 1:
        raise ConfigError(f"calibrate | --max-calib must be >= 1, got {args.max_calib}.")
    if args.batch_size < 1:
        raise ConfigError(f"calibrate | --batch-size must be >= 1, got {args.batch_size}.")
    if args.tau is not None and args.rule != "entropy":
        raise ConfigError(f"calibrate | --tau sets the entropy threshold of --rule entropy; the {args.rule} rule "
                          "has no threshold, so it would be ignored. Drop --tau, or add --rule entropy.")
    check_guarantee_args(args)
    kind = predictor_kind(args)
    probe_flags = (args.probe_out is not None or args.escalation != "off" or args.probe_with_table
                   or args.exit_mode != "student")
    if probe_flags and kind != PROBE:
        raise ConfigError("calibrate | --probe-out, --escalation, --exit-mode and --probe-with-table set up the "
                          "probe; add --predictor probe, or drop them.")
    if args.entropy_out is not None and kind != ENTROPY:
        raise ConfigError("calibrate | --entropy-out names the entropy exit's file; add --predictor entropy, or drop "
                          "it.")


def run(args: argparse.Namespace) -> int:
    from geep_deploy.checkpoint import load_checkpoint

    check_flags(args)  # also run by the CLI's checks; here for callers of run() itself
    kind = predictor_kind(args)
    from geep_deploy.atomic import check_output_file

    check_output_file(args.out, "calibrate --out")
    if kind == PROBE:
        check_output_file(probe_path(args), "calibrate --probe-out")
    if kind == ENTROPY:
        check_output_file(entropy_path(args), "calibrate --entropy-out")
    ckpt = load_checkpoint(args.checkpoint)
    if args.calib_split == "train":
        import sys

        print("calibrate | note: exit labels come from the train split, which the model was trained on; they are "
              "optimistic (the model is surer on rows it saw). For labels without leakage pass --calib-split with "
              "held-out rows (no gold labels needed).", file=sys.stderr)
    calib, dev = calibration_rows(args, ckpt.label_names)
    warn_budget(args, len(dev))
    res, other = calibrate_predictor(args, ckpt, calib, dev)  # other: the probe's or the entropy exit's
    path = save_table(res, ckpt, args.out)
    f, c = res.figures, res.chosen
    print(f"calibration: {f['calib_rows']} rows ({args.calib_split}), rule {f['rule']}"
          + (f" tau {f['tau']}" if f["rule"] == "entropy" else "")
          + f"; table {f['table_keys']} keys in {f['table_capacity']} slots (load {f['table_load']:.2f})")
    print(f"dev curve ({f['dev_rows']} rows; depth L accuracy {100 * f['full_accuracy']:.2f}%):")
    print(format_curve(res.curve, c))
    goal = (f"target FLOPs speed-up {f['target_speedup']}x" if f["mode"] == "target_speedup"
            else f"at most {f['max_drop_points']} points below depth L" if f["mode"] == "max_drop"
            else f"disagreement with depth L certified <= {args.max_disagree:g} at confidence {confidence(args):g}")
    print(f"chosen: quantile {c['quantile']:.2f} margin {c['margin']} -> accuracy {100 * c['accuracy']:.2f}%, "
          f"FLOPs speed-up {c['flops_speedup']:.2f}x, mean depth {c['mean_depth']:.2f} ({goal}"
          + ("" if c["target_met"] else "; NOT met, closest setting chosen") + ")")
    if "guarantee" in f:
        print(format_guarantee(f["guarantee"], "table"))
    print(f"exit prediction on dev: MAE {f['dev_mae_layers']:.2f} layers, within one layer "
          f"{100 * f['dev_within_one_layer']:.1f}%")
    print(f"wrote {path}")
    if other is not None:
        print(format_probe(other, goal) if kind == PROBE else format_entropy(other, goal))
        if "guarantee" in other.figures:
            print(format_guarantee(other.figures["guarantee"], "probe" if kind == PROBE else "entropy exit"))
        print(f"wrote {save_predictor(args, other, ckpt)}")
    print(recommendation(args, c, None if other is None else other.chosen))
    return 0


def calibration_options(args: argparse.Namespace) -> Any:
    """The `export.options.CalibrationOptions` of calibrate's flags."""
    from export.options import CalibrationOptions
    from export.probe_fit import ESCALATE_GRID

    return CalibrationOptions(rule=args.rule, tau=args.tau, max_drop=args.max_drop,
                              target_speedup=args.target_speedup, max_disagree=args.max_disagree,
                              confidence=confidence(args),
                              escalations=ESCALATE_GRID if args.escalation == "tune" else (None,),
                              uses_table=args.probe_with_table, exit_mode=args.exit_mode)


def calibrate_predictor(args: argparse.Namespace, ckpt: Any, calib: Any, dev: Any,
                        progress: bool = True) -> tuple[Any, Any]:
    """What calibrate runs for its predictor kind (`predictor_kind`) on ``calib``/``dev`` rows: (the exit table's
    `export.calibration.CalibrationResult`, the probe's or the entropy exit's calibration, None for the table
    alone). The demo calls it too, with calibrate's default flags."""
    kind, opts = predictor_kind(args), calibration_options(args)
    run_opts: dict[str, Any] = dict(device=args.device, batch_size=args.batch_size, progress=progress)
    if kind == PROBE:
        from export.probe_calibration import calibrate_probe

        pres = calibrate_probe(ckpt, calib, dev, opts, **run_opts)
        return pres.table, pres
    if kind == ENTROPY:
        from export.entropy_exit import calibrate_entropy

        eres = calibrate_entropy(ckpt, calib, dev, opts, **run_opts)
        return eres.table, eres
    from export.calibration import calibrate_checkpoint

    return calibrate_checkpoint(ckpt, calib, dev, opts, **run_opts), None


def save_table(res: Any, ckpt: Any, path: str | Path) -> Path:
    """Write the exit table of ``res`` at ``path``, bound to ``ckpt``'s weights (export and load refuse it with
    another model's)."""
    res.predictor.checkpoint = ckpt.weights_sha256
    return Path(res.predictor.save(path))


def save_predictor(args: argparse.Namespace, other: Any, ckpt: Any) -> Path:
    """Write the probe (at `probe_path`) or the entropy exit (at `entropy_path`) that `calibrate_predictor`
    returned, bound to ``ckpt``'s weights; the file ``export --probe``/``--entropy`` reads."""
    if predictor_kind(args) == ENTROPY:
        from export.entropy_exit import save_entropy

        return save_entropy(entropy_path(args), other, ckpt.model.num_layers, ckpt.weights_sha256)
    probe = dataclasses.replace(other.probe, checkpoint=ckpt.weights_sha256)
    return Path(probe.save(probe_path(args), extra={"calibration": {**other.figures, "chosen": other.chosen}}))


def calibration_rows(args: argparse.Namespace, known_labels: list[str] | None = None) -> tuple[Any, Any]:
    """(calibration rows, tuning rows): dev.tsv tunes; without it the last HOLDOUT_SHARE of the calibration rows
    are held out for tuning, and the user is told how many. Without labels.txt the rows are read against
    ``known_labels`` (the checkpoint's)."""
    import sys

    from geep_deploy.data import TextDataset, available_splits
    from geep_deploy.errors import ConfigError

    calib = load_split(args.data, args.calib_split, known_labels).subset(args.max_calib)
    if "dev" in available_splits(args.data) and args.calib_split != "dev":
        return calib, load_split(args.data, "dev", known_labels)
    n_tune = max(1, int(round(HOLDOUT_SHARE * len(calib))))
    if len(calib) - n_tune < 2:
        raise ConfigError(f"calibrate | {args.data} has no dev.tsv and {len(calib)} {args.calib_split} rows are "
                          "too few to hold some out for tuning; add a dev.tsv (same format as train.tsv).")

    def rows(a: int, b: int | None) -> TextDataset:
        return TextDataset(calib.texts_a[a:b], None if calib.texts_b is None else calib.texts_b[a:b],
                           calib.labels[a:b], calib.label_names, calib.source)

    print(f"calibrate | no dev.tsv in {args.data}: holding out the last {n_tune} of {len(calib)} {args.calib_split} "
          f"rows ({HOLDOUT_SHARE:.0%}) to tune the knobs; the other {len(calib) - n_tune} calibrate.", file=sys.stderr)
    return rows(0, len(calib) - n_tune), rows(len(calib) - n_tune, None)


def warn_budget(args: argparse.Namespace, dev_rows: int) -> None:
    """Warn when the accuracy budget is finer than one tuning row: then only settings that lose no row qualify."""
    import sys

    if args.max_disagree is None and args.target_speedup is None and args.max_drop < 100.0 / dev_rows:
        print(f"calibrate | warning: --max-drop {args.max_drop:g} points is smaller than one of the {dev_rows} "
              f"tuning rows ({100.0 / dev_rows:.2f} points), so only settings that lose no tuning row qualify and "
              "the speed-up may be small. Give more dev rows, or a --max-drop of at least "
              f"{100.0 / dev_rows:.2f}.", file=sys.stderr)


def recommendation(args: argparse.Namespace, table: dict[str, Any], other: dict[str, Any] | None) -> str:
    """One line: which predictor to export, and why (the faster one at the same budget on the tuning rows).
    ``other``: the chosen point of the probe or the entropy exit (``--predictor``), None for the table alone."""
    t_cmd = f"geep-deploy export --checkpoint {args.checkpoint} --out DIR --exit-table {args.out}"
    if other is None:
        return (f"recommendation: export this table ({t_cmd}); --predictor probe also fits the layer-1 probe, which "
                "reads depth 1's confidence instead of tokens alone (docs/exit_prediction.md compares them).")
    if predictor_kind(args) == ENTROPY:
        name, o_cmd = "entropy exit", f"{t_cmd} --entropy {entropy_path(args)}"
    else:
        name = "probe"
        o_cmd = f"{t_cmd} --probe {probe_path(args)}" + ("" if args.exit_mode == "student" else " --exit-mode skip")
    pf, tf = other["flops_speedup"], table["flops_speedup"]
    if other["target_met"] and (pf >= tf or not table["target_met"]):
        return (f"recommendation: export the {name} ({o_cmd}): on the tuning rows it meets the budget at {pf:.2f}x "
                f"FLOPs against the table's {tf:.2f}x.")
    return (f"recommendation: export the table only ({t_cmd}): on these tuning rows it meets the budget at "
            f"{tf:.2f}x FLOPs against the {name}'s {pf:.2f}x.")


def format_probe(pres: Any, goal: str) -> str:
    """The probe's chosen point, one line per fact."""
    c, f = pres.chosen, pres.figures
    esc = "off" if c["escalate"] is None else f"above entropy {c['escalate']:g}"
    return (f"probe ({f['calib_rows']} calibration rows, {len(pres.curve)} dev points"
            f"{'' if f['uses_table'] else ', without table statistics'}): {c['knob']} -> risk {c['risk']:g}, "
            f"escalation {esc}; accuracy {100 * c['accuracy']:.2f}%, FLOPs speed-up {c['flops_speedup']:.2f}x, "
            f"mean depth {c['mean_depth']:.2f}, escalated {100 * c['escalated_share']:.1f}% ({goal}"
            + ("" if c["target_met"] else "; NOT met, closest setting chosen") + ")\n"
            f"dev depths planned by the probe (1..L): {f['dev_planned_hist']}")


def format_entropy(eres: Any, goal: str) -> str:
    """The entropy exit's chosen threshold, one line per fact."""
    c, f = eres.chosen, eres.figures
    return (f"entropy exit ({f['dev_rows']} dev rows, {len(eres.curve)} thresholds): threshold {c['tau']:g} -> "
            f"accuracy {100 * c['accuracy']:.2f}%, FLOPs speed-up {c['flops_speedup']:.2f}x (a head per layer "
            f"passed), mean depth {c['mean_depth']:.2f} ({goal}"
            + ("" if c["target_met"] else "; NOT met, closest setting chosen") + ")\n"
            f"dev depths under the entropy exit (1..L): {f['dev_depth_hist']}")


def confidence(args: argparse.Namespace) -> float:
    """The --max-disagree guarantee's confidence (default 0.9)."""
    from export.calibration import DEFAULT_CONFIDENCE

    return DEFAULT_CONFIDENCE if args.confidence is None else args.confidence


def check_guarantee_args(args: argparse.Namespace) -> None:
    """Refuse a --max-disagree / --confidence that cannot give a guarantee, before the model runs."""
    from export.consistency import check_budget
    from geep_deploy.errors import ConfigError

    if args.max_disagree is None:
        if args.confidence is not None:
            raise ConfigError("calibrate | --confidence sets the confidence of the --max-disagree guarantee; add "
                              "--max-disagree EPS, or drop --confidence.")
        return
    if not 0.0 < args.max_disagree < 1.0:
        raise ConfigError(f"calibrate | --max-disagree is a share of rows in (0, 1), got {args.max_disagree:g} "
                          "(0.02 allows 2% of rows to differ from depth L).")
    if not 0.0 < confidence(args) < 1.0:
        raise ConfigError(f"calibrate | --confidence must be in (0, 1), got {confidence(args):g} (e.g. 0.9).")
    check_budget(args.max_disagree, 1.0 - confidence(args))
    if args.calib_split == "dev":
        raise ConfigError("calibrate | --max-disagree certifies on the dev rows, so they must not also fit the table "
                          "and the probe: pass another --calib-split than dev.")


def format_guarantee(g: dict[str, Any], what: str) -> str:
    """The certified consistency of the chosen setting, in words."""
    head = f"guarantee ({what}, {g['calibration_rows']} dev rows): "
    if g["knob"] is None:
        return head + g["message"]
    return (head + f"disagreement with depth L <= {100 * g['max_disagree']:g}% of rows at confidence "
            f"{100 * g['confidence']:g}% on rows like these; observed {100 * g['calibration_disagreement']:.2f}%, "
            f"Clopper-Pearson bound {100 * g['certified_bound']:.2f}%; {g['knobs_certified']} of {g['knobs_tested']} "
            f"settings certified" + ("" if g["flops_speedup"] > 1.0 + 1e-9 else
                                     "; none is faster than depth L: raise --max-disagree, lower --confidence or "
                                     "give more dev rows"))
