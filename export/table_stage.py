"""The exit table and tuned predictor inside an export: copied from a file, or built from calibration data.

The predictor is the runtime's (``runtime.predictor``); calibration (``export.calibration``) needs torch and runs
only when ``--calib-data`` asks for it.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from export.manifest import file_entry
from geep_deploy.errors import ExportError, GeepError
from runtime.predictor import ExitPredictor

TABLE_STEM = "exit_table"


def jsonable(obj: Any) -> Any:
    """Calibration figures as plain JSON (numpy scalars/arrays and dataclasses included; NaN -> None)."""
    if hasattr(obj, "tolist"):
        obj = obj.tolist()
    if hasattr(obj, "__dataclass_fields__"):
        from dataclasses import asdict

        obj = asdict(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        return str(obj)


def _entry(root: Path, path: Path, predictor: Any, calibration: Any) -> dict[str, Any]:
    params = {"num_layers": int(predictor.num_layers), "quantile": float(predictor.quantile),
              "margin": int(predictor.margin)}
    for extra in ("weighting",):
        if hasattr(predictor, extra):
            params[extra] = getattr(predictor, extra)
    cal = jsonable(calibration or {})
    # the consistency guarantee of ``calibrate --max-disagree``: in the table's figures, or under "figures"
    guarantee = cal.get("guarantee") or (cal.get("figures") or {}).get("guarantee")
    return {**file_entry(root, path), "predictor": params, "calibration": cal,
            **({"guarantee": guarantee} if isinstance(guarantee, dict) else {})}


def check_table_file(table: str | Path, num_layers: int) -> Any:
    """Load ``table`` and check it was built for ``num_layers`` layers; returns the predictor.

    Raises:
        ExportError: if it is missing, does not load, or its ``num_layers`` differs from the model's.
    """
    src = Path(table)
    if not src.is_file():
        raise ExportError(f"export | exit table {src} does not exist. Build one with `geep-deploy calibrate`.")
    try:
        predictor = ExitPredictor.load(src)
    except GeepError as e:
        raise ExportError(f"export | exit table {src} cannot be loaded: {e}") from None
    if predictor.num_layers != num_layers:
        raise ExportError(
            f"export | exit table {src} was built for {predictor.num_layers} layers; the checkpoint has "
            f"{num_layers}. Re-run `geep-deploy calibrate` on this checkpoint."
        )
    return predictor


def table_from_file(root: Path, table: str | Path, num_layers: int) -> dict[str, Any]:
    """Copy ``table`` into the export after ``check_table_file``."""
    src = Path(table)
    predictor = check_table_file(src, num_layers)
    dst = root / f"{TABLE_STEM}{''.join(src.suffixes) or '.npz'}"
    shutil.copyfile(src, dst)
    return _entry(root, dst, predictor, getattr(predictor, "calibration", {}))


def table_from_calibration(root: Path, ckpt: Any, data_dir: str | Path, progress: bool) -> dict[str, Any]:
    """Build the table with ``calibrate_checkpoint``: DIR/train.tsv calibrates, DIR/dev.tsv tunes q and m."""
    from export.calibration import calibrate_checkpoint
    from geep_deploy.data import load_split

    calib, dev = load_split(data_dir, "train"), load_split(data_dir, "dev")
    result = calibrate_checkpoint(ckpt, calib, dev, device="cpu", progress=progress)
    dst = result.predictor.save(root / f"{TABLE_STEM}.npz")
    figures = {"chosen": jsonable(getattr(result, "chosen", None)), "curve": jsonable(getattr(result, "curve", None)),
               "figures": jsonable(getattr(result, "figures", None)), "data": str(Path(data_dir))}
    return _entry(root, Path(dst), result.predictor, figures)
