"""Calibrating the layer-1 probe (``geep-deploy calibrate --predictor probe``).

1. One pass of the model over the calibration and dev rows (every depth's logits), and the exit table built and
   tuned from them exactly as ``calibrate --predictor table`` does (the probe may read its statistics, and an
   export carrying the probe keeps the table as its fallback dispatch).
2. Exit labels of the calibration rows by the rule (``consistency`` by default), and their probe features: depth
   1's logits, the length and, when the probe reads the table, the table's exit mass. That mass comes from tables
   built on the *other* folds of the calibration rows, so no row's own exit label sits in the table it is scored
   with (the table of step 1 has seen every calibration row); dev rows are scored with the table of step 1, as
   the export will score requests.
3. ``fit_probe`` on the calibration rows; on dev, every (risk, escalation) point of ``probe_curve`` priced by the
   dispatch's FLOPs model; ``choose`` picks the fastest point within ``--max-drop`` (or the most accurate one
   reaching ``--target-speedup``). Risk 0 (every row at depth L) is on the grid, so the budget can always be met.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from export.calibration import (
    CalibrationLogits,
    CalibrationResult,
    batch_mass,
    logits_and_table,
    tuned_point,
)
from export.guarantee import probe_family
from export.options import PROBE_RISKS, CalibrationOptions  # noqa: F401 - PROBE_RISKS re-exported (the suite)
from export.probe_fit import ProbeSweep, fit_probe, probe_curve
from geep_deploy.checkpoint import Checkpoint
from geep_deploy.data import TextDataset
from geep_deploy.errors import ConfigError
from geep_deploy.exits import exit_depths
from geep_deploy.names import STUDENT
from geep_deploy.options import build_options
from runtime.predictor import build_predictor
from runtime.probe import ProbeModel, probe_features

TABLE_FOLDS = 5
MIN_ROWS = 20  # fit_probe's own floor


@dataclass
class ProbeCalibration:
    """The fitted probe at the chosen knobs, the dev curve, the chosen point, figures, and the table calibration."""

    probe: ProbeModel
    curve: list[dict[str, Any]]
    chosen: dict[str, Any]
    table: CalibrationResult
    figures: dict[str, Any] = field(default_factory=dict)


def calibrate_probe(
    ckpt: Checkpoint,
    calib: TextDataset,
    dev: TextDataset,
    options: CalibrationOptions | None = None,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    **fields: Any,
) -> ProbeCalibration:
    """Fit the layer-1 probe for ``ckpt`` and tune its knobs on dev (see the module docstring).

    Args:
        ckpt, calib, dev, device, batch_size, progress: as in ``export.calibration.calibrate_checkpoint``.
        options: rule, budget and grids (`export.options.CalibrationOptions`); the probe reads ``escalations``
            (thresholds to try, None = off; ``export.probe_fit.ESCALATE_GRID`` tries them all), ``uses_table``
            (the exit table's statistics as features; default False: in docs/results.md they left its AUC about
            where it was, and without them no table is needed), ``exit_mode`` (the exits the export answers
            from: ``"student"`` heads or ``"skip"``, GEEP's shared exit path; exit labels and the dev curve come
            from those exits, the features stay depth 1's student head) and ``risks``. With ``max_disagree``, the
            fastest (risk, escalation) certified at ``confidence`` on the dev rows (the table likewise).
        **fields: any `CalibrationOptions` field, replacing the one in ``options``.

    Raises:
        ConfigError: as ``calibrate_checkpoint``, or fewer than 20 calibration rows.
        TooFewRows: with ``max_disagree``, too few dev rows to certify it (the message says how many).
    """
    opts = build_options(CalibrationOptions, options, fields, "calibrate_probe()")
    c, table = logits_and_table(ckpt, calib, dev, opts, device=device, batch_size=batch_size, progress=progress)
    return calibrate_probe_from_logits(ckpt, c, table, opts)  # certified here when the table could not be


def calibrate_probe_from_logits(ckpt: Checkpoint, c: CalibrationLogits, table: CalibrationResult,
                                options: CalibrationOptions | None = None) -> ProbeCalibration:
    """The model-free part of ``calibrate_probe``, from per-depth logits and the calibrated table."""
    o = options or CalibrationOptions()
    rule, tau, max_drop, target_speedup = o.rule, o.tau, o.max_drop, o.target_speedup
    escalations, uses_table, risks = o.escalations, o.uses_table, o.risks
    max_disagree = o.max_disagree
    L = ckpt.model.num_layers
    if len(c.calib_ids) < MIN_ROWS:
        raise ConfigError(f"calibrate | {len(c.calib_ids)} calibration rows are too few to fit a probe; give at "
                          f"least {MIN_ROWS} (raise --max-calib, or use a larger --calib-split).")
    exits_c = exit_depths(c.exits("calib"), rule, tau)
    len_c, len_d = _lengths(c.calib_ids), _lengths(c.dev_ids)
    mass_c = out_of_fold_mass(c.calib_ids, exits_c, L, c.special_ids) if uses_table else None
    mass_d = batch_mass(table.predictor, c.dev_ids) if uses_table else None
    probe, feats_c = fit_layer1_probe(c.calib_logits[:, 0], len_c, exits_c, L, mass=mass_c, exit_mode=c.exit_mode)
    feats_d = probe_features(c.dev_logits[:, 0], len_d, mass_d)
    probs_d = probe.probabilities(feats_d)
    if max_disagree is not None:  # every chain of the certification starts at depth L (risk 0)
        risks = tuple(sorted({0.0, *(float(r) for r in risks)}))
    curve = probe_curve(probs_d, c.exits("dev"), c.dev_labels, len_d, ckpt.shape,
                        ProbeSweep(risks, escalations, c.exit_mode))
    full_acc = float((c.dev_logits[:, -1].argmax(-1) == c.dev_labels).mean())
    # the probe was fitted on the calibration rows, so dev rows test it fairly
    chosen, guarantee = tuned_point(
        curve, o, full_acc, lambda: probe_family(probs_d, c.exits("dev"), len_d, ckpt.shape, risks, escalations,
                                                 c.exit_mode),
        c.exits("dev"), c.dev_logits)
    tuned = probe.with_knobs(chosen["risk"], chosen["escalate"])
    exits_d = exit_depths(c.exits("dev"), rule, tau)
    planned = tuned.depths(feats_d)
    figures = {
        "rule": rule, "tau": tau, "mode": o.budget_mode,
        "max_drop_points": max_drop, "target_speedup": target_speedup, "uses_table": uses_table,
        "exit_mode": c.exit_mode,
        "table_folds": TABLE_FOLDS if uses_table else None, "calib_rows": len(c.calib_ids),
        "dev_rows": len(c.dev_ids), "full_accuracy": full_acc,
        "calib_exit_hist": np.bincount(exits_c, minlength=L + 1)[1:].tolist(),
        "dev_exit_hist": np.bincount(exits_d, minlength=L + 1)[1:].tolist(),
        "dev_planned_hist": np.bincount(planned, minlength=L + 1)[1:].tolist(),
    }
    if guarantee is not None:
        figures["guarantee"] = guarantee.to_dict()
    return ProbeCalibration(probe=tuned, curve=curve, chosen=chosen, table=table, figures=figures)


def fit_layer1_probe(depth1_logits: np.ndarray, lengths: np.ndarray, exits: np.ndarray, num_layers: int, *,
                     mass: np.ndarray | None = None, exit_mode: str = STUDENT) -> tuple[ProbeModel, np.ndarray]:
    """The probe fitted on rows' exit labels, and its features: depth 1's logits, the length and, with ``mass``,
    the table's exit mass (the probe then reads the table). One path for ``calibrate`` and the suite."""
    feats = probe_features(depth1_logits, lengths, mass)
    return fit_probe(feats, exits, num_layers, uses_table=mass is not None, exit_mode=exit_mode), feats


def out_of_fold_mass(rows: list[np.ndarray], exits: np.ndarray, num_layers: int, special_ids: list[int],
                     folds: int = TABLE_FOLDS, seed: int = 0) -> np.ndarray:
    """(N, L) exit mass of each row from a table built on the other folds' rows and labels.

    Masses of different folds are on different fixed-point scales; the probe's table features are ratios of one
    row's mass, so the scale cancels.
    """
    n = len(rows)
    order = np.random.default_rng(seed).permutation(n)
    out = np.zeros((n, num_layers), dtype=np.float64)
    for f in range(min(folds, n)):
        held, rest = order[f::folds], np.sort(np.setdiff1d(order, order[f::folds]))
        table = build_predictor([rows[i] for i in rest], exits[rest], num_layers, special_ids)
        out[held] = batch_mass(table, [rows[i] for i in held])
    return out


def _lengths(rows: list[np.ndarray]) -> np.ndarray:
    return np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))

