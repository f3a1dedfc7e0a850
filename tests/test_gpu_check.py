"""``make gpu-check``'s CPU dry run, so the GPU check script cannot rot between GPU windows."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_failing_section_is_recorded_and_the_next_still_runs() -> None:
    gc = _module()
    report: dict = {}
    gc.section(report, "boom", lambda: 1 / 0)
    gc.section(report, "skip", lambda: (_ for _ in ()).throw(gc.Skip("no GPU")))
    gc.section(report, "fine", lambda: {"x": 1})
    assert report["boom"]["status"] == "error" and "ZeroDivisionError" in report["boom"]["error"]
    assert report["skip"] == {"status": "skipped", "reason": "no GPU", "seconds": report["skip"]["seconds"]}
    assert report["fine"]["result"] == {"x": 1}


def test_cpu_dry_run_writes_one_json_to_the_given_dir(tmp_path: Path) -> None:
    env = {**os.environ, "DEVICE": "cpu", "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    before = set((ROOT / "bench" / "results").glob("gpu_check_*.json"))
    p = subprocess.run([sys.executable, str(SCRIPT), "--out-dir", str(tmp_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (out,) = tmp_path.glob("gpu_check_*.json")
    assert set((ROOT / "bench" / "results").glob("gpu_check_*.json")) == before  # a dry run never writes there
    r = json.loads(out.read_text())
    sections = ("machine", "pytest", "export", "e2e", "graphs", "ort_cuda_memory", "table", "predictor", "bench")
    assert {k: r[k]["status"] for k in sections} == {
        "machine": "ok", "pytest": "ok", "export": "ok", "e2e": "ok", "graphs": "skipped",
        "ort_cuda_memory": "skipped", "table": "ok", "predictor": "ok", "bench": "ok"}
    assert r["machine"]["result"]["device"] == "cpu"
    assert r["pytest"]["result"]["counts"].get("failed", 0) == 0
    assert r["e2e"]["result"]["fp32_ok"] and r["e2e"]["result"]["runs"]["torch/fp32"]["depths_identical"]
    methods = {rec["method"] for rec in r["bench"]["result"]["records"]}
    assert {"full", "static:3", "geep", "fastbert:0.3", "pabee:2"} <= methods
    assert all(rec["wall_speedup"] is not None for rec in r["bench"]["result"]["records"])
    assert r["table"]["result"]["numpy_lookups_per_s"] > 0 and "skipped" in r["table"]["result"]["cupy"]
