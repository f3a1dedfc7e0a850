"""The layer-1 probe inside an export: checked against the checkpoint before the long work, then copied in.

The probe (``runtime.probe.ProbeModel``, fitted by ``geep-deploy calibrate --predictor probe``) is one JSON file;
the export keeps it as ``probe.json`` with its knobs in the manifest, next to the exit table whose statistics it
may read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from export.manifest import file_entry
from geep_deploy.errors import ConfigError
from runtime.probe import ProbeModel, check_probe_fits

PROBE_FILE = "probe.json"


def probe_params(probe: ProbeModel) -> dict[str, Any]:
    """The knobs a reader shows without opening the file (the file stays the source of truth)."""
    return {"num_layers": probe.num_layers, "risk": probe.risk, "escalate": probe.escalate,
            "uses_table": probe.uses_table, "exit_mode": probe.exit_mode}


def check_probe(probe: str | Path | ProbeModel, num_layers: int, *, has_table: bool, exit_mode: str,
                has_depths: bool) -> ProbeModel:
    """Load ``probe`` and check that it fits the checkpoint being exported.

    Args:
        probe: a probe JSON file, or a ``ProbeModel``.
        num_layers: the checkpoint's L.
        has_table: whether the export gets an exit table (a probe that reads table statistics needs one).
        exit_mode: the export's exit mode (the probe must have been fitted on that path's exit labels).
        has_depths: whether the export has depth graphs to continue to (not a ``full`` checkpoint).

    Raises:
        TableError: the file is missing, not JSON, not a probe, or damaged.
        ConfigError: built for another layer count, needs a table the export lacks, or a checkpoint it cannot
            serve.
    """
    model = probe if isinstance(probe, ProbeModel) else ProbeModel.load(probe)
    where = "the probe" if isinstance(probe, ProbeModel) else f"probe {probe}"
    if not has_depths:
        raise ConfigError("export | a 'full' checkpoint has no early exits, so no probe; drop --probe.")
    check_probe_fits(model, num_layers, exit_mode=exit_mode, has_table=has_table, where=f"export | {where}",
                     owner="the export")
    return model


def probe_stage(root: Path, probe: str | Path | ProbeModel, num_layers: int) -> dict[str, Any]:
    """Copy (or write) the probe into ``root`` and return its manifest entry (file, checksum, knobs)."""
    dst = root / PROBE_FILE
    if isinstance(probe, ProbeModel):
        model = probe
        model.save(dst)
    else:
        model = ProbeModel.load(probe)
        shutil.copyfile(probe, dst)
    # checked before the long work too; a file swapped meanwhile lands here
    check_probe_fits(model, num_layers, exit_mode=None, has_table=True, where=f"export | probe {probe}",
                     owner="the export")
    guarantee = recorded_guarantee(dst)
    return file_entry(root, dst, params=probe_params(model), **({"guarantee": guarantee} if guarantee else {}))


def recorded_guarantee(probe_file: Path) -> dict[str, Any] | None:
    """The consistency guarantee ``calibrate --max-disagree`` stored with the probe (``calibration.guarantee``)."""
    cal = json.loads(probe_file.read_text(encoding="utf-8")).get("calibration")
    g = cal.get("guarantee") if isinstance(cal, dict) else None
    return g if isinstance(g, dict) else None
