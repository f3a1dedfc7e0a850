"""The bench isolates its failures: each (precision, backend, method, batch) cell in its own guard, impossible
precisions refused up front, and the JSON written whatever failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from models import sst2_slice, tiny_table_export

from geep_deploy.bench import baselines
from geep_deploy.bench.harness import BenchConfig, format_table, refusal, run_bench
from geep_deploy.cli import main
from runtime.artifacts import load_export


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return sst2_slice(tmp_path_factory.mktemp("data"), train=40, dev=24)


@pytest.fixture(scope="module")
def export(tmp_path_factory, data) -> Path:
    return tiny_table_export(tmp_path_factory.mktemp("export"), data, segments=False)


def _cfg(export: Path, data: Path, **kw) -> BenchConfig:
    base = dict(export=export, data=data, backend="onnxruntime", precisions=("fp32",), batch_sizes=(4, 8),
                methods="full,geep,static:1", repeats=1, threads=1, warmup_batches=1, progress=False)
    return BenchConfig(**{**base, **kw})


def test_refusals_name_the_reason(export) -> None:
    b = load_export(export)
    assert refusal(b, "onnxruntime", "cpu", "fp32") is None
    assert "runs on the torch backend only" in refusal(b, "onnxruntime", "cpu", "tf32")
    assert "no int8" in refusal(b, "torch", "cpu", "int8")
    assert "CUDA only" in refusal(b, "tensorrt", "cpu", "fp16")
    assert "no onnxruntime fp16 artifacts" in refusal(b, "onnxruntime", "cpu", "fp16")
    assert "no tensorrt fp16 artifacts" in refusal(b, "tensorrt", "cuda", "fp16")
    assert "prefix/cont" in refusal(b, "onnxruntime", "cpu", "fp32", "probe")  # no probe graphs in this export
    assert refusal(b, "torch", "cpu", "bf16") is None and refusal(b, "torch", "cpu", "tf32") is None


def test_impossible_precisions_are_refused_and_the_rest_runs(export, data) -> None:
    out = run_bench(_cfg(export, data, precisions=("tf32", "fp32", "int8"), methods="full,geep,probe"))
    assert {(e["precision"], e["method"], e["status"]) for e in out["errors"]} == {
        ("tf32", "*", "refused"), ("int8", "*", "refused"), ("fp32", "probe", "refused")}
    assert {(r["method"], r["batch_size"]) for r in out["records"]} == {
        (m, b) for m in ("full", "geep") for b in (4, 8)}


def test_a_failing_cell_is_an_error_row_and_the_others_run(export, data, monkeypatch) -> None:
    real = baselines.MethodRunner.run_batch

    def flaky(self, enc):
        if self.spec.name == "static:1" and len(enc) > 4:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self, enc)

    monkeypatch.setattr(baselines.MethodRunner, "run_batch", flaky)
    out = run_bench(_cfg(export, data))
    (err,) = out["errors"]
    assert err == {"precision": "fp32", "backend": "onnxruntime", "method": "static:1", "batch_size": 8,
                   "status": "error", "reason": "RuntimeError: CUDA out of memory (simulated)"}
    got = {(r["method"], r["batch_size"]) for r in out["records"]}
    assert got == {("full", 4), ("geep", 4), ("static:1", 4), ("full", 8), ("geep", 8)}
    assert "ERROR: static:1 onnxruntime fp32 batch 8" in format_table(out["records"], out["errors"])


def test_without_full_the_speedups_are_missing_not_wrong(export, data, monkeypatch) -> None:
    real = baselines.MethodRunner.run_batch

    def no_full(self, enc):
        if self.spec.family == "full":
            raise RuntimeError("boom")
        return real(self, enc)

    monkeypatch.setattr(baselines.MethodRunner, "run_batch", no_full)
    out = run_bench(_cfg(export, data, batch_sizes=(8,)))
    assert [r["method"] for r in out["records"]] == ["geep", "static:1"]
    assert all(r["wall_speedup"] is None for r in out["records"])
    assert " - " in format_table(out["records"])


def test_cli_writes_the_json_when_every_cell_fails(export, data, tmp_path, capsys) -> None:
    out = tmp_path / "b.json"
    rc = main(["bench", "--export", str(export), "--data", str(data), "--precision", "tf32,int8", "--methods", "full",
               "--batch-sizes", "4", "--repeats", "1", "--json", str(out), "--no-progress"])
    assert rc == 1
    result = json.loads(out.read_text())
    assert result["records"] == [] and [e["status"] for e in result["errors"]] == ["refused", "refused"]
    assert "REFUSED: * onnxruntime tf32" in capsys.readouterr().out


def test_full_on_a_second_load_is_timed_against_full_not_taken_for_it(export, data) -> None:
    """``full@NAME`` (the same export loaded again under another name) is a contender like any other: an identical
    path whose speed-up is read against the plain ``full``, which the bench adds when only ``full@NAME`` is named."""
    out = run_bench(_cfg(export, data, batch_sizes=(8,), methods="full@again,static:1", repeats=2,
                         baseline_exports={"again": export}))
    recs = {r["method"]: r for r in out["records"]}
    assert list(recs) == ["full", "full@again", "static:1"] and not out["errors"]
    assert recs["full"]["wall_speedup"] == 1.0 and recs["full@again"]["wall_speedup"] > 0
    assert recs["full@again"]["accuracy"] == recs["full"]["accuracy"] and recs["full@again"]["heads_from"] == str(export)
