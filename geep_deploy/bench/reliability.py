"""The hostile-user harness of issues 15 and 25 (``bench/reliability.py`` is its command line): every category of
bad input run on a tiny random-weight model, counted by outcome (docs/reliability.md is rendered from the
result by `geep_deploy.reporting.reliability_page`).

Categories: ``CATEGORIES``; the ``FAST`` ones run in ``make test``. Case builders: issue 15's in
`geep_deploy.bench.reliability_inputs`, issue 25's in `geep_deploy.bench.reliability_cases`; the workspace and the
runners in `geep_deploy.bench.reliability_base`.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from geep_deploy.bench import reliability_cases as r2
from geep_deploy.bench import reliability_inputs as r1
from geep_deploy.bench.reliability_base import BAD, OUTCOMES, build_workspace, reference, run_api, run_cli

__all__ = ["BAD", "CATEGORIES", "COMMAND", "FAST", "OUTCOMES", "build_workspace", "run", "run_all"]

COMMAND = "python bench/reliability.py --json bench/results/reliability.json --doc docs/reliability.md"

CATEGORIES: dict[str, str] = {
    "bad_cli_args": "bad CLI arguments and paths (limits, directories for files, empty lists)",
    "bad_api_args": "bad GeepEngine.load/predict arguments (batch_size, depths, threads, precision)",
    "output_paths": "outputs under a file, checked before the work",
    "bad_texts": "texts: surrogates, zero-width/NUL/control only, non-strings; valid odd text must work",
    "encodings": "BOM accepted; non-UTF-8 data, labels and --input named by file and line",
    "malformed_manifests": "manifest edits (checksum stale and recomputed), raw garbage manifests",
    "corrupted_artifacts": "flipped, truncated, emptied, deleted files and garbage with a matching checksum",
    "checkpoints": "0-byte, truncated, garbage, flipped, NaN, foreign checkpoints (API and eval)",
    "data_loss": "export --force aimed at user folders and the current directory",
    "interrupted_export": "SIGTERM/SIGKILL/SIGINT of a real export; a crash mid-swap",
    "numeric_flags": "NaN, infinity and just out of range, for every numeric flag of every command",
    "path_equality": "outputs that are an input (directly, via a symlink or ..), inside the data folder, or another output",
    "look_alike": "user folders named like the exporter's temp/backup folders, glob characters in --out, symlinks",
    "probe_json": "edited probe files (NaN, strings for numbers, shapes, booleans, identity), FIFO, nested",
    "nested_json": "deeply nested manifest.json/probe.json in load, predict, serve and export --force",
    "artifact_paths": "external data and listed files pointing at a FIFO, device, symlink or file outside the export",
    "api_knobs": "GeepEngine.load risk/escalate/max_group of wrong type or range, knobs that do not apply",
    "service_connections": "stalled HTTP clients beyond --max-connections; a good request must still be answered",
}
FAST = ("numeric_flags", "path_equality", "look_alike", "probe_json", "nested_json", "api_knobs")


def run_all(ws: dict[str, Path], tmp: Path, only: set[str] | None = None) -> dict[str, Any]:
    """Run every category of ``CATEGORIES`` (or ``only`` those) against the workspace ``ws``; counts per outcome,
    every case's detail (``tmp`` written as ``<tmp>``) and the totals."""
    ref = reference(ws["export"])
    builders = {
        "bad_cli_args": lambda: r1.cli_cases(ws, tmp), "bad_api_args": lambda: r1.api_cases(ws, ref),
        "output_paths": lambda: r1.output_path_cases(ws, tmp), "bad_texts": lambda: r1.text_cases(ws),
        "encodings": lambda: r1.encoding_cases(ws, tmp, ref),
        "malformed_manifests": lambda: r1.manifest_cases(ws, tmp, ref),
        "corrupted_artifacts": lambda: r1.artifact_cases(ws, tmp, ref),
        "checkpoints": lambda: r1.checkpoint_cases(ws, tmp), "data_loss": lambda: r1.data_loss_cases(ws, tmp),
        "interrupted_export": lambda: r1.interrupt_cases(ws, tmp, ref),
        "numeric_flags": lambda: r2.numeric_flag_cases(ws, tmp, run_cli),
        "path_equality": lambda: r2.path_equality_cases(ws, tmp, run_cli),
        "look_alike": lambda: r2.look_alike_cases(ws, tmp, run_cli),
        "probe_json": lambda: r2.probe_json_cases(ws, tmp, run_cli),
        "nested_json": lambda: r2.nested_json_cases(ws, tmp, run_cli, run_api),
        "artifact_paths": lambda: r2.artifact_path_cases(ws, tmp, run_api),
        "api_knobs": lambda: r2.api_knob_cases(ws, tmp, run_api),
        "service_connections": lambda: r2.service_cases(ws, tmp),
    }
    result: dict[str, Any] = {"categories": {}}
    for cat, build in builders.items():
        if only and cat not in only:
            continue
        t0 = time.perf_counter()
        counts = dict.fromkeys(OUTCOMES, 0)
        cases = []
        for name, case in build():
            outcome, detail = case()
            detail = detail.replace(str(tmp), "<tmp>")
            counts[outcome] += 1
            cases.append({"case": name, "outcome": outcome, "detail": detail})
        result["categories"][cat] = {"description": CATEGORIES[cat], "tried": len(cases), **counts,
                                     "seconds": round(time.perf_counter() - t0, 1), "cases": cases}
        bad = {k: counts[k] for k in BAD if counts[k]}
        print(f"{cat:22s} {len(cases):4d} cases  {counts}{'  <-- ' + str(bad) if bad else ''}", flush=True)
    cats = result["categories"].values()
    result["total"] = {k: sum(c[k] for c in cats) for k in ("tried", *OUTCOMES)}
    return result


def run(only: set[str] | None = None) -> dict[str, Any]:
    """Every category (or ``only`` those) on a fresh workspace in a temporary folder, with the run's seconds, the
    command that reproduces the committed JSON and the machine."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="geep-reliability-") as d:
        ws = build_workspace(Path(d))
        result = run_all(ws, Path(d), only)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["command"] = COMMAND
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    return result
