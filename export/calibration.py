"""Calibration: label exit layers on calibration data, build the exit table, tune quantile and margin on dev.

Default rule: ``consistency`` (a sample's exit layer is the first depth from which every deeper classifier agrees
with depth L). It needs no threshold, it does not depend on how well the students' probabilities are calibrated,
and a sample run to its labelled depth gives exactly the full model's answer, so the labels encode "how deep
must this sample go to keep the full model's prediction" -- the quantity an accuracy budget is about. ``entropy``
(FastBERT's rule, first depth with normalised entropy below ``tau``; default ``tau = 0.3``) is offered for
comparison with FastBERT's exit. Labels on the training split are optimistic (the model fits it), which is why
``q`` and ``m`` are tuned on dev, not on the calibration data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from export.consistency import Guarantee, TooFewRows
from export.guarantee import KnobFamily, depth_l_answer, table_family
from export.options import (  # noqa: F401 - DEFAULT_* re-exported: callers import them from here
    DEFAULT_CONFIDENCE,
    DEFAULT_ENTROPY_TAU,
    DEFAULT_QUANTILES,
    DEFAULT_RULE,
    CalibrationOptions,
)
from geep_deploy.checkpoint import Checkpoint
from geep_deploy.data import TextDataset
from geep_deploy.encoding import TextEncoder
from geep_deploy.errors import ConfigError
from geep_deploy.evaluate import collect_depth_and_skip_logits, collect_depth_logits, exit_path_logits
from geep_deploy.exits import exit_depths, exit_figures, predictions_at
from geep_deploy.flops import flops_speedup
from geep_deploy.names import SKIP, STUDENT
from geep_deploy.options import build_options
from runtime.keys import pad_rows
from runtime.predictor import ExitPredictor, build_predictor, depths_from_mass

_MASS_CHUNK = 1024


@dataclass
class CalibrationResult:
    """The tuned predictor, the dev curve over every tried (quantile, margin), the chosen point and figures."""

    predictor: ExitPredictor
    curve: list[dict[str, float]]
    chosen: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)


def batch_mass(predictor: ExitPredictor, rows: list[np.ndarray]) -> np.ndarray:
    """(N, L) exit mass of unpadded rows, in chunks (each padded to its own longest row)."""
    parts = [predictor.exit_mass(*pad_rows(rows[i : i + _MASS_CHUNK])) for i in range(0, len(rows), _MASS_CHUNK)]
    return np.concatenate(parts, axis=0)


def dev_curve(
    mass: np.ndarray, logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray, ckpt: Checkpoint,
    quantiles: tuple[float, ...], margins: tuple[int, ...], answers: bool = False,
) -> list[dict[str, Any]]:
    """Accuracy, FLOPs speed-up (one head per sample) and mean depth for every (quantile, margin); ``answers``:
    also each row's predicted class (see ``exit_figures``)."""
    L = logits.shape[1]
    curve = []
    for m in margins:
        for q in quantiles:
            d = depths_from_mass(mass, q, m, L)
            curve.append({"quantile": float(q), "margin": int(m),
                          **exit_figures(ckpt.shape, logits, labels, lengths, d, heads=1, answers=answers)})
    return curve


def choose(curve: list[dict[str, float]], full_accuracy: float, max_drop: float,
           target_speedup: float | None) -> dict[str, Any]:
    """Fastest point within the accuracy budget, or the most accurate point reaching the target speed-up."""
    if target_speedup is not None:
        ok = [c for c in curve if c["flops_speedup"] >= target_speedup]
        if ok:
            best = max(ok, key=lambda c: (c["accuracy"], c["flops_speedup"]))
            return {**best, "target_met": True}
        return {**max(curve, key=lambda c: (c["flops_speedup"], c["accuracy"])), "target_met": False}
    ok = [c for c in curve if c["accuracy"] >= full_accuracy - max_drop / 100.0 - 1e-12]
    if not ok:  # cannot happen while q = 1.0 (always depth L) is on the grid, but never fail silently
        return {**max(curve, key=lambda c: (c["accuracy"], c["flops_speedup"])), "target_met": False}
    return {**max(ok, key=lambda c: (c["flops_speedup"], c["accuracy"])), "target_met": True}


def certified_point(curve: list[dict[str, Any]], guarantee: Guarantee) -> dict[str, Any]:
    """The curve point of the certified knob (``target_met``); when nothing certifies, the deepest point."""
    ok = guarantee.knob is not None
    point = (next(c for c in curve if all(c[k] == v for k, v in guarantee.knob.items())) if ok
             else max(curve, key=lambda c: (c["mean_depth"], c.get("accuracy", 0.0))))
    return {**point, "target_met": ok, "certified": ok}


def tuned_point(curve: list[dict[str, Any]], options: CalibrationOptions, full_accuracy: float,
                family: Callable[[], KnobFamily], exits: np.ndarray,
                reference: np.ndarray) -> tuple[dict[str, Any], Guarantee | None]:
    """The curve point ``options``' budget picks, one rule for every predictor (table, probe, entropy exit).

    With ``max_disagree``: the fastest knob of ``family()`` (`export.guarantee`) certified on the dev rows to
    disagree with depth L (``reference``: (N, L, C) logits whose depth L answers) on at most that share of rows at
    ``confidence``, answering from ``exits`` (`certified_point`); else `choose` (``max_drop`` or
    ``target_speedup``). Returns (point, the guarantee or None).
    """
    if options.max_disagree is None:
        return choose(curve, full_accuracy, options.max_drop, options.target_speedup), None
    g = family().certify(exits, depth_l_answer(reference), options.max_disagree, 1.0 - options.confidence,
                         "dev rows")
    return certified_point(curve, g), g


def calibrate_checkpoint(
    ckpt: Checkpoint,
    calib: TextDataset,
    dev: TextDataset,
    options: CalibrationOptions | None = None,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    **fields: Any,
) -> CalibrationResult:
    """Build and tune an exit predictor for ``ckpt``.

    Args:
        ckpt: a trained checkpoint whose every depth has a trained classifier (not ``full``).
        calib: calibration rows (their exit labels fill the table).
        dev: rows on which quantile and margin are tuned.
        options: rule, budget and grids (`export.options.CalibrationOptions`). Defaults to one from ``fields``.
        device: torch device for the per-depth pass. batch_size: rows per forward pass. progress: progress bars.
        **fields: any `CalibrationOptions` field (``rule``, ``tau``, ``max_drop``, ``target_speedup``,
            ``max_disagree``, ``confidence``, ``quantiles``, ``margins``, ``weighting``, ``orders``,
            ``load_factor``), replacing the one in ``options``.

    Returns:
        A ``CalibrationResult`` whose predictor carries the chosen q, m and the figures (with ``max_disagree``,
        ``figures["guarantee"]``).

    Raises:
        ConfigError: ``full`` checkpoint, unknown rule, bad budget, or mismatched labels.
        TooFewRows: with ``max_disagree``, too few dev rows to certify it (the message says how many).
    """
    opts = build_options(CalibrationOptions, options, fields, "calibrate_checkpoint()")
    check_calibration_inputs(ckpt, dev)
    c = collect_logits(ckpt, calib, dev, batch_size, device, progress)
    return calibrate_table(ckpt, c, opts)


def logits_and_table(ckpt: Checkpoint, calib: TextDataset, dev: TextDataset, options: CalibrationOptions, *,
                     device: str = "cpu", batch_size: int = 64,
                     progress: bool = True) -> tuple[CalibrationLogits, CalibrationResult]:
    """One pass of the model over both splits (`collect_logits`), and the exit table built and tuned from it:
    the first step of calibrating the probe or the entropy exit, whose exports keep the table as their fallback
    dispatch. When ``max_disagree`` cannot certify the table (it has more chains than the other predictor), the
    table is tuned by the accuracy budget instead and the other predictor is still certified."""
    check_calibration_inputs(ckpt, dev)
    c = collect_logits(ckpt, calib, dev, batch_size, device, progress, options.exit_mode)
    try:
        table = calibrate_table(ckpt, c, options)
    except TooFewRows:
        table = calibrate_table(ckpt, c, replace(options, max_disagree=None))
    return c, table


def check_calibration_inputs(ckpt: Checkpoint, dev: TextDataset) -> None:
    """Refuse what calibration cannot serve: a ``full`` checkpoint, or dev rows with another label set (the
    rule and budget were checked by `CalibrationOptions`)."""
    if ckpt.method == "full":
        raise ConfigError(
            "calibrate | this checkpoint was trained with method 'full': only depth L has a trained classifier, "
            "so there is no exit to predict. Train with --method geep (or fastbert/pabee) and calibrate that."
        )
    if len(dev.label_names) != len(ckpt.label_names):
        raise ConfigError(
            f"calibrate | dev data has {len(dev.label_names)} labels, the checkpoint {len(ckpt.label_names)}."
        )


@dataclass
class CalibrationLogits:
    """Tokenized calibration and dev rows with their (N, L, C) logits at every depth, and the special token ids."""

    calib_ids: list[np.ndarray]
    calib_logits: np.ndarray
    dev_ids: list[np.ndarray]
    dev_logits: np.ndarray
    dev_labels: np.ndarray
    special_ids: list[int]
    exit_mode: str = "student"
    calib_exits: np.ndarray | None = None  # (N, L, C) of the exits answering under ``exit_mode``; None: students'
    dev_exits: np.ndarray | None = None

    def exits(self, split: str) -> np.ndarray:
        """The logits a dispatch answers from on ``split`` ("calib" or "dev")."""
        own = self.calib_exits if split == "calib" else self.dev_exits
        return own if own is not None else (self.calib_logits if split == "calib" else self.dev_logits)


def collect_logits(ckpt: Checkpoint, calib: TextDataset, dev: TextDataset, batch_size: int, device: str,
                   progress: bool, exit_mode: str = STUDENT) -> CalibrationLogits:
    """One pass of the model over the calibration and the dev rows (every depth's logits; with
    ``exit_mode="skip"`` also the shared exit path's)."""
    encoder = TextEncoder(ckpt.tokenizer_json, ckpt.max_len)
    out: dict[str, Any] = {}
    for split, ds in (("calib", calib), ("dev", dev)):
        enc = encoder.encode(ds.texts_a, ds.texts_b)
        desc = ("calibration pass" if split == "calib" else "dev pass") if progress else None
        if exit_mode == SKIP:  # one pass gives both: the students' logits (features) and the path's (exits)
            logits, skip = collect_depth_and_skip_logits(ckpt.model, enc, batch_size, device, desc)
            out[split] = (enc.ids, logits, exit_path_logits(logits, skip))
        else:
            out[split] = (enc.ids, collect_depth_logits(ckpt.model, enc, batch_size, device, desc), None)
    return CalibrationLogits(out["calib"][0], out["calib"][1], out["dev"][0], out["dev"][1], np.asarray(dev.labels),
                             sorted(encoder.special_ids), exit_mode, out["calib"][2], out["dev"][2])


def calibrate_from_logits(
    ckpt: Checkpoint,
    calib_ids: list[np.ndarray],
    calib_logits: np.ndarray,
    dev_ids: list[np.ndarray],
    dev_logits: np.ndarray,
    dev_labels: np.ndarray,
    special_ids: list[int],
    **fields: Any,
) -> CalibrationResult:
    """``calibrate_table`` from arrays (reused by benchmarks and the suite).

    Args:
        ckpt: the checkpoint (its shape and label count give the FLOPs).
        calib_ids / calib_logits: calibration rows and their (N, L, C) logits.
        dev_ids / dev_logits / dev_labels: dev rows, logits and gold labels.
        special_ids: token ids that never form keys.
        **fields: `CalibrationOptions` fields (``options=`` an options object, which they replace).
    """
    options = fields.pop("options", None)
    opts = build_options(CalibrationOptions, options, fields, "calibrate_from_logits()")
    c = CalibrationLogits(calib_ids, calib_logits, dev_ids, dev_logits, np.asarray(dev_labels), special_ids)
    return calibrate_table(ckpt, c, opts)


def calibrate_table(ckpt: Checkpoint, c: CalibrationLogits, options: CalibrationOptions) -> CalibrationResult:
    """The model-free part of ``calibrate_checkpoint``: build the exit table from the calibration rows' exit
    labels and tune its (quantile, margin) on the dev rows under ``options``' budget."""
    o = options
    rule, tau, max_drop, target_speedup = o.rule, o.tau, o.max_drop, o.target_speedup
    max_disagree, weighting = o.max_disagree, o.weighting
    calib_ids, dev_ids, special_ids = c.calib_ids, c.dev_ids, c.special_ids
    L = ckpt.model.num_layers
    quantiles = DEFAULT_QUANTILES if o.quantiles is None else tuple(o.quantiles)
    if max_disagree is not None:  # every chain of the certification starts at depth L (q = 1.0)
        quantiles = tuple(sorted({*quantiles, 1.0}))
    margins = tuple(range(min(2, L - 1) + 1)) if o.margins is None else tuple(o.margins)

    logits_c, logits_d, labels = c.calib_logits, c.dev_logits, np.asarray(c.dev_labels)
    exits_c = exit_depths(logits_c, rule, tau)
    predictor = build_predictor(calib_ids, exits_c, L, special_ids, orders=o.orders, load_factor=o.load_factor,
                                weighting=weighting)
    lengths = np.fromiter((len(r) for r in dev_ids), dtype=np.int64, count=len(dev_ids))
    full_acc = float((logits_d[:, -1].argmax(-1) == labels).mean())
    mass = batch_mass(predictor, dev_ids)
    curve = dev_curve(mass, logits_d, labels, lengths, ckpt, quantiles, margins)
    chosen, guarantee = tuned_point(
        curve, o, full_acc, lambda: table_family(mass, lengths, ckpt.shape, logits_d.shape[2], quantiles, margins),
        logits_d, logits_d)

    exits_d = exit_depths(logits_d, rule, tau)
    pred_d = depths_from_mass(mass, chosen["quantile"], chosen["margin"], L)
    pred_q50 = depths_from_mass(mass, 0.5, 0, L)
    const = int(np.median(exits_c))
    C = logits_d.shape[2]
    figures = {
        "rule": rule, "tau": tau, "mode": o.budget_mode,
        "max_drop_points": max_drop, "target_speedup": target_speedup,
        "calib_rows": len(calib_ids), "dev_rows": len(dev_ids),
        "table_keys": predictor.table.size, "table_capacity": predictor.table.capacity,
        "table_load": round(predictor.table.load, 4), "orders": list(predictor.table.orders),
        "weighting": weighting,
        "full_accuracy": full_acc,
        "accuracy": chosen["accuracy"], "flops_speedup": chosen["flops_speedup"], "mean_depth": chosen["mean_depth"],
        "calib_exit_hist": np.bincount(exits_c, minlength=L + 1)[1:].tolist(),
        "dev_exit_hist": np.bincount(exits_d, minlength=L + 1)[1:].tolist(),
        "dev_predicted_hist": np.bincount(pred_d, minlength=L + 1)[1:].tolist(),
        "dev_mae_layers": float(np.abs(pred_d - exits_d).mean()),
        "dev_within_one_layer": float((np.abs(pred_d - exits_d) <= 1).mean()),
        "dev_mae_layers_q50_m0": float(np.abs(pred_q50 - exits_d).mean()),
        "dev_within_one_layer_q50_m0": float((np.abs(pred_q50 - exits_d) <= 1).mean()),
        "dev_mae_layers_constant_median": float(np.abs(const - exits_d).mean()),
        "oracle_accuracy": float((predictions_at(logits_d, exits_d) == labels).mean()),
        "oracle_flops_speedup": flops_speedup(ckpt.shape, C, lengths, exits_d, heads=1),
    }
    if guarantee is not None:
        figures["guarantee"] = guarantee.to_dict()
    tuned = predictor.with_params(chosen["quantile"], chosen["margin"])
    tuned.calibration = {**figures, "chosen": chosen, "curve": curve}
    return CalibrationResult(predictor=tuned, curve=curve, chosen=chosen, figures=figures)
