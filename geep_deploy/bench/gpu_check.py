"""Every GPU path checked in one prepared call (``bench/gpu_check.py`` is its command line, ``make gpu-check``).

Made for a lent GPU machine: a bare ``python3`` with torch (CUDA), CuPy, onnx and CPU onnxruntime, nothing
installed, no network, none of the shared model folders; only the output folder comes back. So:

- every section runs in its own subprocess with its own timeout (clipped to what is left of the budget), so a hang
  or a crash costs one section, not the run;
- ``gpu_check.json`` is rewritten (write, then rename) after every section, so a run killed from outside still
  leaves every finished section;
- each section reports named checks; the top-level ``verdicts`` say ``pass``, ``fail``, ``skip`` (with the reason:
  what this machine cannot run) or ``not_run`` (out of budget); a section that crashes or times out is a ``fail``,
  never ``ok``.

The sections themselves are in `geep_deploy.bench.gpu_sections`. Only the standard library is imported here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from geep_deploy.bench.gpu_sections import DEFAULT_BACKBONE, ROOT, Ctx, Skip, section, write_json

__all__ = ["DEFAULT_BACKBONE", "MIN_SECTION_S", "SECTIONS", "plan_sections", "run_checks", "run_child",
           "run_section", "verdicts"]

# (name, timeout on cuda, timeout on the cpu dry run), in the order they run
SECTIONS: tuple[tuple[str, float, float], ...] = (
    ("environment", 60, 40), ("table", 100, 40), ("export", 170, 90), ("engines", 80, 60), ("graphs", 120, 30),
    ("e2e", 120, 60), ("bench_fp32", 90, 90), ("bench_fp16", 70, 0), ("bench_bf16", 50, 0), ("bench_tf32", 50, 0),
)
MIN_SECTION_S = 8.0  # a section that would get less than this is not started (``not_run``)
# what a section's child process runs: the repository is on its PYTHONPATH (set by run_section)
CHILD = "import sys; from geep_deploy.bench.gpu_check import run_child; sys.exit(run_child(*sys.argv[1:]))"


# -- the parent: one subprocess per section, the JSON after each ----------------------------------------------
def verdicts(sections: dict[str, Any]) -> dict[str, str]:
    """``section.check`` -> pass/fail, and ``section`` -> fail/skip/not_run where it has no checks to judge.

    A section that errored or timed out fails even if some of its checks had passed; a finished section with no
    checks fails too (nothing was verified).
    """
    out: dict[str, str] = {}
    for name, sec in sections.items():
        status = sec.get("status")
        if status in ("skipped", "not_run"):
            out[name] = "skip" if status == "skipped" else "not_run"
            continue
        checks = sec.get("checks") or {}
        for check, c in checks.items():
            out[f"{name}.{check}"] = "pass" if c.get("ok") is True else "fail"
        if status != "ok" or not checks:
            out[name] = "fail"
    return out


def plan_sections(device: str, only: list[str] | None = None,
                  timeouts: list[str] | None = None) -> tuple[list[str], dict[str, float]]:
    """The sections to run on ``device`` (``only`` those, in their order) and every section's timeout, with
    ``SECTION=S`` overrides.

    Raises:
        ValueError: an unknown section, in ``only`` or in an override.
    """
    names = [s[0] for s in SECTIONS if (s[1] if device == "cuda" else s[2]) > 0]
    if only is not None:
        unknown = sorted(set(only) - {s[0] for s in SECTIONS})
        if unknown:
            raise ValueError(f"unknown sections {unknown}; known: {[s[0] for s in SECTIONS]}")
        names = [n for n in names if n in only]
    out = {n: (cu if device == "cuda" else cp) for n, cu, cp in SECTIONS}
    for item in timeouts or []:
        n, _, v = item.partition("=")
        if n not in out:
            raise ValueError(f"--timeout {item!r}: unknown section {n!r}")
        out[n] = float(v)
    return names, out


def run_section(name: str, timeout: float, device: str, backbone: Path | None, work: Path) -> dict[str, Any]:
    """Run one section in a child process (own session, killed with its children on timeout)."""
    result = work / f"{name}.result.json"
    log = work / f"{name}.log"
    cmd = [sys.executable, "-c", CHILD, name, device, str(work), str(result)] + ([str(backbone)] if backbone else [])
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            rc = None
    secs = round(time.perf_counter() - t0, 1)
    tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
    if rc is None:
        sec = {"status": "timeout", "error": f"no result within {timeout:.0f} s (killed)", "log_tail": tail}
        if result.is_file():  # partial checks the section wrote before it hung
            sec["partial"] = json.loads(result.read_text())
    elif result.is_file():
        sec = json.loads(result.read_text())
        if rc != 0 and sec.get("status") == "ok":
            sec = {**sec, "status": "error", "error": f"exit code {rc} after writing its result"}
    else:
        sec = {"status": "error", "error": f"exit code {rc} and no result", "log_tail": tail}
    if sec.get("status") == "error" and "log_tail" not in sec:
        sec["log_tail"] = tail
    return {**sec, "seconds": secs, "timeout_s": round(timeout, 1)}


def run_checks(device: str, backbone: Path | None, out_dir: Path, budget_s: float, names: list[str],
               timeouts: dict[str, float]) -> dict[str, Any]:
    """Run ``names`` in order, each under its timeout clipped to what is left of ``budget_s``; ``out_dir /
    gpu_check.json`` is rewritten after each. The report's ``failed`` lists every ``fail`` and ``not_run``."""
    t_start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "gpu_check.json"
    report: dict[str, Any] = {
        "format": "geep-gpu-check", "version": 2, "device": device, "budget_s": budget_s,
        "backbone": str(backbone) if backbone else "tiny random model (no --backbone)",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sections": {}, "verdicts": {},
        "ok": False, "unverified": "figures are from this run only; nothing here was produced without a GPU "
                                   "unless device is cpu (the dry run)"}
    with tempfile.TemporaryDirectory(prefix="geep-gpu-check-") as tmp:
        work = Path(tmp)
        for name in names:
            left = budget_s - (time.perf_counter() - t_start)
            if left < MIN_SECTION_S:
                report["sections"][name] = {"status": "not_run", "reason": f"budget spent ({left:.0f} s left)"}
            else:
                print(f"gpu-check | {name} (timeout {min(timeouts[name], left):.0f} s) ...", flush=True)
                report["sections"][name] = run_section(name, min(timeouts[name], left), device, backbone, work)
                print(f"gpu-check | {name}: {report['sections'][name]['status']} "
                      f"({report['sections'][name]['seconds']} s)", flush=True)
            report["verdicts"] = verdicts(report["sections"])
            report["total_s"] = round(time.perf_counter() - t_start, 1)
            write_json(path, report)
    v = report["verdicts"]
    bad = sorted(k for k, x in v.items() if x in ("fail", "not_run"))
    report["ok"] = not bad
    report["failed"] = bad
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    write_json(path, report)
    print(f"gpu-check | wrote {path} in {report['total_s']} s: "
          f"{sum(x == 'pass' for x in v.values())} pass, {len(bad)} fail/not run, "
          f"{sum(x == 'skip' for x in v.values())} skipped{': ' + ', '.join(bad) if bad else ''}")
    return report


# -- the child: one section ------------------------------------------------------------------------------------
def run_child(name: str, device: str, work: str, result: str, backbone: str | None = None) -> int:
    """Run section ``name`` in this process and write its result file (what ``run_section``'s child runs)."""
    ctx = Ctx(device, Path(work), Path(backbone) if backbone else None, Path(result))
    try:
        out = section(name)(ctx)
        sec = {"status": "ok", **out}
    except Skip as e:
        sec = {"status": "skipped", "reason": str(e)}
    except Exception as e:  # recorded; the parent judges the section failed
        sec = {"status": "error", "error": f"{type(e).__name__}: {str(e)[:1000]}",
               "traceback": traceback.format_exc()[-4000:], "checks": ctx.checks}
    write_json(ctx.result, sec)
    return 0
