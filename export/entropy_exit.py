"""FastBERT's entropy exit over the export's own heads as a product predictor: its threshold, its file, its entry.

1. ``calibrate --predictor entropy`` (`calibrate_entropy`): one pass of the model over the calibration and the dev
   rows and the exit table built and tuned from them, as for the probe (`export.calibration.logits_and_table`: an
   export keeps the table as its fallback dispatch); then every threshold of the grid (``CalibrationOptions.taus``,
   0 = every row at depth L) on the dev rows, priced with a head per layer passed, and the threshold the budget
   picks by the rule every predictor uses (`export.calibration.tuned_point`: the fastest within ``--max-drop``,
   the most accurate reaching ``--target-speedup``, or with ``--max-disagree`` the fastest certified one,
   `export.guarantee.entropy_family`).
2. The file (`save_entropy`, `load_entropy`): one small JSON, ``{"format": "geep-deploy-entropy-exit",
   "format_version": 1, "num_layers", "threshold", "checkpoint", "calibration": {...}}``.
3. The manifest entry (`entropy_entry`): ``{"threshold", "num_layers", "calibration": {the chosen point},
   "guarantee"}`` inline (no file: the manifest's own checksum covers it), and ``"predictor": "entropy"``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.calibration import CalibrationLogits, CalibrationResult, logits_and_table, tuned_point
from export.guarantee import entropy_family
from export.options import CalibrationOptions
from geep_deploy.checkpoint import Checkpoint
from geep_deploy.config import BertShape
from geep_deploy.data import TextDataset
from geep_deploy.errors import ConfigError, TableError
from geep_deploy.exits import entropy_exit_depths, exit_figures
from geep_deploy.names import STUDENT
from geep_deploy.options import build_options
from runtime.layerwise import EntropyExit

FORMAT = "geep-deploy-entropy-exit"
FORMAT_VERSION = 1
MAX_BYTES = 1 << 20


@dataclass
class EntropyCalibration:
    """The chosen threshold (as the rule), the dev curve over every threshold, the chosen point, figures, and the
    table calibration."""

    rule: EntropyExit
    curve: list[dict[str, Any]]
    chosen: dict[str, Any]
    table: CalibrationResult
    figures: dict[str, Any] = field(default_factory=dict)


def entropy_knob(threshold: float) -> str:
    """The knob string of a threshold: ``entropy:0.3`` (the bench runs the same exit as ``fastbert:0.3``)."""
    return f"entropy:{threshold:g}"


def entropy_curve(logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray, shape: BertShape,
                  taus: Sequence[float]) -> list[dict[str, Any]]:
    """Every threshold, ascending: accuracy, FLOPs speed-up (a head for every layer a row passed) and mean depth,
    as the entropy exit answers on (N, L, C) ``logits``."""
    out = []
    for t in sorted({float(x) for x in taus}):
        d = entropy_exit_depths(logits, t)
        out.append({"knob": entropy_knob(t), "tau": t, **exit_figures(shape, logits, labels, lengths, d, heads=d)})
    return out


def calibrate_entropy(ckpt: Checkpoint, calib: TextDataset, dev: TextDataset, options: CalibrationOptions | None = None,
                      *, device: str = "cpu", batch_size: int = 64, progress: bool = True,
                      **fields: Any) -> EntropyCalibration:
    """Choose the entropy exit's threshold for ``ckpt`` on the dev rows (see the module docstring). Arguments as
    ``export.calibration.calibrate_checkpoint``'s; of ``options`` (or ``fields``, `CalibrationOptions` fields that
    replace its own) the entropy exit reads ``taus``, ``max_drop``, ``target_speedup``, ``max_disagree`` and
    ``confidence`` (``rule`` and the table's grids build the fallback table).

    Raises:
        ConfigError: as ``calibrate_checkpoint``, or an exit mode other than the student heads.
        TooFewRows: with ``max_disagree``, too few dev rows to certify it (the message says how many).
    """
    opts = build_options(CalibrationOptions, options, fields, "calibrate_entropy()")
    if opts.exit_mode != STUDENT:
        raise ConfigError("calibrate | the entropy exit answers from the student heads (the export's layer{k} "
                          "graphs); drop --exit-mode, which sets up the probe.")
    c, table = logits_and_table(ckpt, calib, dev, opts, device=device, batch_size=batch_size, progress=progress)
    return calibrate_entropy_from_logits(ckpt, c, table, opts)


def calibrate_entropy_from_logits(ckpt: Checkpoint, c: CalibrationLogits, table: CalibrationResult,
                                  options: CalibrationOptions | None = None) -> EntropyCalibration:
    """The model-free part of ``calibrate_entropy``, from per-depth logits and the calibrated table."""
    o = options or CalibrationOptions()
    logits, labels = c.dev_logits, np.asarray(c.dev_labels)
    lengths = np.fromiter((len(r) for r in c.dev_ids), dtype=np.int64, count=len(c.dev_ids))
    taus = tuple(sorted({0.0, *o.taus}))  # 0 (depth L) is on the grid: the budget can always be met
    curve = entropy_curve(logits, labels, lengths, ckpt.shape, taus)
    full_acc = float((logits[:, -1].argmax(-1) == labels).mean())
    chosen, guarantee = tuned_point(curve, o, full_acc, lambda: entropy_family(logits, lengths, ckpt.shape, taus),
                                    logits, logits)
    L = ckpt.model.num_layers
    depths = entropy_exit_depths(logits, chosen["tau"])
    figures = {
        "mode": o.budget_mode, "max_drop_points": o.max_drop, "target_speedup": o.target_speedup,
        "calib_rows": len(c.calib_ids), "dev_rows": len(c.dev_ids), "full_accuracy": full_acc,
        "threshold": chosen["tau"], "accuracy": chosen["accuracy"], "flops_speedup": chosen["flops_speedup"],
        "mean_depth": chosen["mean_depth"], "dev_depth_hist": np.bincount(depths, minlength=L + 1)[1:].tolist(),
    }
    if guarantee is not None:
        figures["guarantee"] = guarantee.to_dict()
    return EntropyCalibration(EntropyExit(chosen["tau"]), curve, chosen, table, figures)


def save_entropy(path: str | Path, result: EntropyCalibration, num_layers: int,
                 checkpoint: str | None = None) -> Path:
    """Write the chosen threshold and its calibration as JSON, atomically (``checkpoint``: the weights sha256 of
    the checkpoint it was chosen for; `export_checkpoint` refuses it for another model)."""
    from export.table_stage import jsonable
    from geep_deploy.atomic import atomic_write_text

    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "num_layers": int(num_layers),
           "threshold": result.rule.threshold, "checkpoint": checkpoint,
           "calibration": jsonable({**result.figures, "chosen": result.chosen, "curve": result.curve})}
    atomic_write_text(Path(path), json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return Path(path)


def load_entropy(path: str | Path) -> dict[str, Any]:
    """The entropy exit's record from a file `save_entropy` wrote, checked.

    Raises:
        TableError: the file is missing, not JSON, not ours, too new, or holds a threshold out of [0, 1].
    """
    from geep_deploy.safe_io import check_format, read_json

    p = Path(path)
    try:
        doc = read_json(p, max_bytes=MAX_BYTES)
    except FileNotFoundError:
        raise TableError(f"entropy exit | {p} does not exist. Write one with `geep-deploy calibrate "
                         "--predictor entropy`.") from None
    except (OSError, ValueError) as e:
        raise TableError(f"entropy exit | {p} is not JSON an entropy exit can be read from: {e}.") from None
    check_format(doc, FORMAT, FORMAT_VERSION, what="geep-deploy entropy exit", where=f"entropy exit | {p}",
                 error=TableError)
    t, n = doc.get("threshold"), doc.get("num_layers")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
        raise TableError(f"entropy exit | {p}: threshold must be a number in [0, 1], got {t!r}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise TableError(f"entropy exit | {p}: num_layers must be a positive integer, got {n!r}.")
    cal = doc.get("calibration")
    return {"threshold": float(t), "num_layers": n, "checkpoint": doc.get("checkpoint"),
            "calibration": cal if isinstance(cal, dict) else {}}


def entropy_record(entropy: str | Path | EntropyExit | dict[str, Any], num_layers: int) -> dict[str, Any]:
    """The record of ``ExportOptions.entropy`` (a file, an `EntropyExit` or a loaded record), checked against the
    checkpoint's layer count.

    Raises:
        TableError: a damaged file. ConfigError: it was chosen for another layer count.
    """
    if isinstance(entropy, EntropyExit):
        rec = {"threshold": entropy.threshold, "num_layers": num_layers, "checkpoint": None, "calibration": {}}
    elif isinstance(entropy, dict):
        rec = entropy
    else:
        rec = load_entropy(entropy)
    if rec["num_layers"] != num_layers:
        raise ConfigError(f"export | the entropy exit {entropy} was chosen for {rec['num_layers']} layers; the "
                          f"checkpoint has {num_layers}. Re-run `geep-deploy calibrate --predictor entropy` on it.")
    return rec


def entropy_entry(record: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``entropy`` entry: the threshold, the layer count, the chosen point's figures and (from
    ``calibrate --max-disagree``) the guarantee."""
    cal = record.get("calibration") or {}
    keep = ("mode", "max_drop_points", "target_speedup", "dev_rows", "full_accuracy", "accuracy", "flops_speedup",
            "mean_depth")
    entry: dict[str, Any] = {"threshold": float(record["threshold"]), "num_layers": int(record["num_layers"]),
                             "calibration": {k: cal[k] for k in keep if k in cal}}
    if isinstance(cal.get("guarantee"), dict):
        entry["guarantee"] = cal["guarantee"]
    return entry
