"""The hostile-user harness of issues 15 and 25 (``bench/reliability.py`` is its command line): every category of
bad input run on a tiny random-weight model, counted by outcome, and docs/reliability.md rendered from the result.

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

__all__ = ["BAD", "CATEGORIES", "COMMAND", "FAST", "OUTCOMES", "build_workspace", "render_doc", "run", "run_all"]

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


def render_doc(result: dict[str, Any]) -> str:
    """docs/reliability.md: the table from the JSON, plus every non-clean case's message as evidence."""
    lines = [
        "# Reliability",
        "",
        "<!-- generated by bench/reliability.py from bench/results/reliability.json; do not edit by hand -->",
        "",
        "A hostile-but-fair user pass (issues 15 and 25) as a script, run on a tiny random-weight model (3 layers, "
        "real tokenizer). Every case ends as: **clean** (a `GeepError` naming the file or argument and what to do; "
        "on the CLI one `error:` line and exit 1, or argparse's usage error), **correct** (it ran and the answer "
        "equals the intact export's), **traceback** (any other exception), **silent wrong** (it ran but the "
        "answer differs, or it succeeded where it must fail), **data lost** (a user file or the previous "
        "export is gone or changed) or **hang** (no answer within its time bound). The last four must be 0. "
        "The categories in `FAST` run in `make test` (`tests/test_reliability_harness.py`).",
        "",
        f"Run: `{result['command']}` ({result['seconds']} s, {result['machine']}).",
        "",
        "| category | what | cases | clean errors | correct | tracebacks | silent wrong | data lost | hangs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cat, c in result["categories"].items():
        lines.append(f"| {cat} | {c['description']} | {c['tried']} | {c['clean']} | {c['correct']} | "
                     f"{c['traceback']} | {c['silent_wrong']} | {c['data_lost']} | {c.get('hang', 0)} |")
    t = result["total"]
    lines.append(f"| **total** | | **{t['tried']}** | **{t['clean']}** | **{t['correct']}** | **{t['traceback']}** | "
                 f"**{t['silent_wrong']}** | **{t['data_lost']}** | **{t.get('hang', 0)}** |")
    lines += [
        "",
        "## What guards each outcome",
        "",
        "- `export --force` replaces only a folder holding a geep-deploy `manifest.json`, never the current "
        "directory or one above it; an empty folder is used as is.",
        "- The export is built in `.DIR.tmp-*` (with the exporting pid inside) and switched into place with one "
        "`renameat2(RENAME_EXCHANGE)` on Linux, so readers see the old or the new export, never none; elsewhere "
        "two renames, and a crash between them leaves `.DIR.old-*`, which the next export renames back. The next "
        "export of DIR removes temporary folders whose process is gone. SIGTERM is handled like Ctrl-C.",
        "- Export folders, checkpoints and tables get the permissions of the umask (not mkdtemp's 0700/0600).",
        "- `manifest.json` carries `manifest_sha256` over its canonical JSON (format 3) and is checked against "
        "a schema (types, label count vs the graphs' logits width, depths vs the backbone, graph file vs its "
        "depth); every malformed manifest is an `ArtifactError` naming it. Graphs and tokenizers that fail to "
        "load despite a matching checksum are `ArtifactError`s naming the file.",
        "- Checkpoints (format 2) store a sha256 over metadata and every tensor, verified on load; NaN/inf "
        "weights and non-finite logits are errors, never label 0.",
        "- `GeepEngine` never runs a row shallower than predicted: depths are raised to the next loaded one, the "
        "deepest exported depth is required with an exit predictor, and a row above every loaded depth is an "
        "error. Engine logits must be finite and as wide as the label list.",
        "- Counts and lengths are checked by `geep_deploy/limits.py` (integers only, `--max-len` 8..the "
        "position limit); output paths are checked before training, calibration, evaluation or a benchmark.",
        "- Texts: lone surrogates and texts the tokenizer reduces to nothing (zero-width, NUL, control only) are "
        "`DataError`s naming the row; a UTF-8 BOM is accepted; other non-UTF-8 bytes are named by file and line.",
        "- Legacy: format-1/2 exports and format-1 checkpoints still load; they predate the checksums, so an edit "
        "to them is caught only by the schema check.",
        "- Export clean-up (issue 25) touches only folders the exporter marked as its own (`.export-pid` in its "
        "`.DIR.tmp-*`, `.export-backup` in a `.DIR.old-*` it made), matches their names as plain strings (no glob), "
        "never follows a symlink, and runs only after every input is validated.",
        "- Every numeric flag of every command is range-checked (finite, in range) in one place, "
        "`geep_deploy/cli/checks.py`, which also refuses an output that resolves to an input, lies inside an input "
        "folder or equals another output, before any work.",
        "- Every file an export names (manifest entries, graphs' external data) is resolved inside the export, "
        "regular files only (no FIFO, device or symlink out), before anything opens it "
        "(`geep_deploy/safe_io.py`); manifest, probe and table-header JSON are bounded in size and nesting depth. "
        "Graphs of every kind load through one checked path.",
        "- The probe JSON is validated (finite coefficients, shapes, exit mode, features, real booleans); "
        "`risk`/`escalate` must be real numbers in [0, 1] and are refused where they do not apply.",
        "- `geep-deploy calibrate` records the checkpoint's weights sha256 in the exit table and the probe; export "
        "refuses a table or probe calibrated on another model and records the identity in the manifest; load "
        "refuses a swapped file. Tables and probes written before the field export with a warning (they cannot be "
        "checked), which is the chosen policy for old files.",
        "- `serve` bounds header and body read time (`--header-timeout`, `--body-timeout`) and open connections "
        "(`--max-connections`; the connection waiting longest for its request is closed first), and lets each "
        "repeated log line through 5 times per 10 s.",
        "",
        "## Limits",
        "",
        "- Forged artifacts: a file edited with every checksum recomputed (and, for a probe or table, its recorded "
        "checkpoint identity copied) is indistinguishable from a genuine export without a secret key. A manifest "
        "edit that stays consistent (reversing the label order, `max_len` 8) is tried with a stale checksum only; "
        "every other edit is tried both ways. Signing exports with a key (HMAC) is not offered yet: keep exports "
        "where only their owner can write.",
        "- Exports of formats 1 and 2 predate `manifest_sha256` and still load, so a hand edit that also sets "
        "`format_version` to 2 and drops the field is caught only by the schema check.",
        "- The load-time probe runs one short row through every loaded depth engine (a few milliseconds per depth "
        "on the CPU); it is what catches a consistent label-count forgery and NaN-producing weights at load.",
        "- `verify=False` skips hashing by design: a flipped bit inside `weights.bin` then changes answers "
        "silently, so bit flips are tried with `verify=True` only (truncation, emptying, garbage and deletion "
        "are tried both ways).",
        "- Interrupted exports were killed on Linux, where the swap is one `renameat2(RENAME_EXCHANGE)`; the "
        "two-rename fallback is exercised by restoring a `.DIR.old-*` folder, not by a kill inside it.",
        "",
        "## Every case that did not end clean or correct",
        "",
    ]
    bad = [(cat, c) for cat, cc in result["categories"].items() for c in cc["cases"] if c["outcome"] in BAD]
    lines += [f"- {cat}: {c['case']}: **{c['outcome']}**: {c['detail']}" for cat, c in bad] or ["None."]
    lines += ["", "## Sample messages", ""]
    for cat, cc in result["categories"].items():
        sample = [c for c in cc["cases"] if c["outcome"] == "clean"][:3]
        for c in sample:
            lines.append(f"- {cat}: {c['case']}: `{c['detail'][:200].replace('`', chr(39))}`")
    return "\n".join(lines) + "\n"
