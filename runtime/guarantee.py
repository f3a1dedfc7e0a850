"""The consistency guarantee an export carries (``calibrate --max-disagree``), and whether the engine serves it.

``geep-deploy calibrate --max-disagree EPS --confidence 1-DELTA`` certifies one setting of the exit dispatch: with
probability at least 1 - DELTA over the calibration draw, its answers differ from depth L's on at most EPS of rows
drawn like the calibration rows (``export.consistency``). The export keeps that record in the manifest's
``probe``, ``exit_table`` or ``entropy`` entry under ``guarantee``. It holds only for the setting it was
certified for: an engine that dispatches by another predictor, other knobs or a fixed depth serves no guarantee.
Pure functions.
"""

from __future__ import annotations

from typing import Any

from geep_deploy.names import ENTROPY, PREDICTOR_KINDS, PROBE, TABLE

# the manifest entry that holds each predictor's record (and its guarantee)
ENTRY_OF_PREDICTOR = {TABLE: "exit_table", PROBE: "probe", ENTROPY: "entropy"}
# what a manifest's guarantee record must hold (more keys may follow)
REQUIRED = ("max_disagree", "confidence", "calibration_rows", "knob")


def guarantee_problems(where: str, g: Any) -> list[str]:
    """What is wrong with a manifest's guarantee record (empty: nothing); absent (None) is fine."""
    if g is None:
        return []
    if not isinstance(g, dict):
        return [f"{where} must be an object"]
    out = [f"{where}.{k} is missing" for k in REQUIRED if k not in g]
    for k in ("max_disagree", "confidence"):
        v = g.get(k)
        if k in g and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 < v < 1.0):
            out.append(f"{where}.{k} must be a number in (0, 1), got {v!r}")
    rows = g.get("calibration_rows")
    if "calibration_rows" in g and not (isinstance(rows, int) and not isinstance(rows, bool) and rows >= 1):
        out.append(f"{where}.calibration_rows must be a positive integer, got {rows!r}")
    if g.get("knob") is not None and not isinstance(g["knob"], dict):
        out.append(f"{where}.knob must be an object or null")
    return out


def served_guarantee(manifest: dict[str, Any], predictor: str | None, knobs: dict[str, Any]) -> dict[str, Any] | None:
    """The guarantee of the setting an engine serves, or None when it serves none.

    Args:
        manifest: the export's manifest.
        predictor: what dispatches: ``"probe"``, ``"table"``, ``"entropy"``, or None (fixed depth).
        knobs: the dispatch's knobs now: ``{"risk", "escalate"}`` for the probe, ``{"quantile", "margin"}`` for the
            table, ``{"tau"}`` (the threshold) for the entropy exit.

    Returns:
        The recorded guarantee with ``predictor`` added, when the export records one for ``predictor`` and its
        certified knobs are the ones served; else None.
    """
    if predictor not in PREDICTOR_KINDS:
        return None
    entry = manifest.get(ENTRY_OF_PREDICTOR[predictor])
    g = entry.get("guarantee") if isinstance(entry, dict) else None
    if not isinstance(g, dict) or not isinstance(g.get("knob"), dict):
        return None
    if any(not _same(knobs.get(k), v) for k, v in g["knob"].items()):
        return None
    return {**g, "predictor": predictor}


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    try:
        return abs(float(a) - float(b)) <= 1e-9
    except (TypeError, ValueError):
        return a == b
