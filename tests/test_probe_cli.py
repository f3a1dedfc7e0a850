"""The probe through the CLI on a tiny checkpoint: calibrate --predictor probe, export --probe, predict, bench."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from models import sst2_slice, tiny_checkpoint

from geep_deploy.cli import main
from runtime.probe import ProbeModel


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """60 train / 24 dev rows of the bundled SST-2 slice."""
    return sst2_slice(tmp_path_factory.mktemp("data"), train=60, dev=24)


def test_calibrate_export_predict_bench(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, table = tmp_path / "t.pt", tmp_path / "table.npz"
    tiny_checkpoint(ckpt)
    assert main(["calibrate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(table),
                 "--predictor", "probe", "--escalation", "tune", "--max-drop", "5"]) == 0
    out = capsys.readouterr().out
    probe_file = tmp_path / "table.probe.json"
    assert "probe (60 calibration rows" in out and f"wrote {probe_file}" in out and table.is_file()
    probe = ProbeModel.load(probe_file)
    calib = json.loads(probe_file.read_text())["calibration"]
    # by default the probe reads depth 1 and the length (the table's features did not raise its AUC in the evaluation)
    assert probe.num_layers == 3 and not probe.uses_table and probe.risk == calib["chosen"]["risk"]
    assert calib["chosen"]["accuracy"] >= calib["full_accuracy"] - 0.05 - 1e-9
    with_table = tmp_path / "wt.npz"
    assert main(["calibrate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(with_table),
                 "--predictor", "probe", "--probe-with-table"]) == 0
    capsys.readouterr()
    assert ProbeModel.load(tmp_path / "wt.probe.json").uses_table

    export = tmp_path / "export"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(export), "--exit-table", str(table),
                 "--probe", str(probe_file), "--no-segments", "--quiet"]) == 0
    assert "the export dispatches by the probe" in capsys.readouterr().out

    assert main(["predict", "--export", str(export), "--text", "a fine film", "--text", "bad", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["engine"]["predictor"] == "probe" and "escalated" in res["timings"] and len(res["predictions"]) == 2
    assert main(["predict", "--export", str(export), "--text", "bad", "--predictor", "table", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine"]["predictor"] == "table"  # the kind, not the class

    bench = tmp_path / "bench.json"
    assert main(["bench", "--export", str(export), "--data", str(data), "--methods", "geep,probe:0.5,probe:0.5+esc0",
                 "--batch-sizes", "8", "--repeats", "1", "--threads", "1", "--no-progress",
                 "--json", str(bench)]) == 0
    records = {r["method"]: r for r in json.loads(bench.read_text())["records"]}
    assert set(records) == {"full", "geep", "probe:0.5", "probe:0.5+esc0"}
    esc = records["probe:0.5+esc0"]
    # threshold 0 escalates every row below L, so every answer is depth L's (the full model's)
    assert esc["mean_depth"] == 3 and esc["accuracy"] == records["full"]["accuracy"]
    assert esc["flops_speedup"] <= records["probe:0.5"]["flops_speedup"] and "escalated_share" in esc

    assert main(["calibrate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "x.npz"),
                 "--predictor", "table", "--escalation", "tune"]) == 1  # the probe is the default predictor
    assert "add --predictor probe" in capsys.readouterr().err


def test_probe_through_the_shared_exit_path(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """calibrate --exit-mode skip -> export --exit-mode skip -> bench it beside the student export with @NAME."""
    ckpt, table = tmp_path / "t.pt", tmp_path / "skip.npz"
    tiny_checkpoint(ckpt)
    assert main(["calibrate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(table),
                 "--predictor", "probe", "--exit-mode", "skip", "--max-drop", "5"]) == 0
    probe_file = tmp_path / "skip.probe.json"
    assert ProbeModel.load(probe_file).exit_mode == "skip"
    assert json.loads(probe_file.read_text())["calibration"]["exit_mode"] == "skip"
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "bad"), "--probe", str(probe_file),
                 "--no-segments", "--quiet"]) == 1
    assert "fitted for the 'skip' exits, but the export exits through 'student'" in capsys.readouterr().err
    skip, plain = tmp_path / "skip_export", tmp_path / "plain"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(skip), "--probe", str(probe_file),
                 "--exit-mode", "skip", "--no-segments", "--quiet"]) == 0
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(plain), "--no-segments", "--quiet"]) == 0
    bench = tmp_path / "bench.json"
    assert main(["bench", "--export", str(plain), "--data", str(data), "--methods",
                 "static:1,probe:0.5@skip,probe:0@skip", "--baseline-export", f"skip={skip}", "--batch-sizes", "8",
                 "--repeats", "1", "--threads", "1", "--no-progress", "--json", str(bench)]) == 0
    records = {r["method"]: r for r in json.loads(bench.read_text())["records"]}
    assert set(records) == {"full", "static:1", "probe:0.5@skip", "probe:0@skip"}
    assert records["probe:0.5@skip"]["heads_from"] == str(skip) and records["static:1"]["heads_from"] == "same-export"
    at_l = records["probe:0@skip"]  # risk 0: every row at depth L, the full model's answer
    assert at_l["mean_depth"] == 3 and at_l["accuracy"] == records["full"]["accuracy"]
    assert main(["bench", "--export", str(plain), "--data", str(data), "--methods", "probe@nowhere",
                 "--batch-sizes", "8", "--repeats", "1", "--no-progress"]) == 1
    assert "pass --baseline-export nowhere=DIR" in capsys.readouterr().err
