"""The results page's reading of `bench/all_depth_l_overhead.py`'s JSON (issue 23's all-depth-L check)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geep_deploy.errors import ConfigError
from geep_deploy.reporting.all_depth_l import load_checks, per_set_text, rows, summary_text, verdict


def _check(speedups: list[float], noise: list[float]) -> dict:
    mean = sum(speedups) / len(speedups)
    return {"probe0_speedup": mean, "probe0_speedup_runs": speedups, "noise": max(noise), "noise_runs": noise,
            "within_noise": abs(mean - 1) <= max(noise)}


def _write(folder: Path, name: str, check: dict | None, graphs: float | None = 1.02) -> None:
    d = {"config": {"mean_tokens": 20.0, "runs": 2, "repeats": 7}, "machine": {"cpu": "AMD EPYC"},
         "ratios": {"probe0_over_full": 1.0} | ({} if graphs is None else {"graphs_probe_over_graphs_full": graphs})}
    if check is not None:
        d["check"] = check
    (folder / name).write_text(json.dumps(d))


def test_checks_are_read_per_set_and_seed_and_old_files_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "all_depth_l_overhead"
    folder.mkdir()
    _write(folder, "sst2_seed43.json", _check([0.97, 0.95], [0.01, 0.02]))  # slower, outside
    _write(folder, "sst2_seed42.json", _check([1.01, 0.99], [0.02, 0.01]), graphs=None)  # within; --no-graphs
    _write(folder, "sst2_seed44.json", None)  # written before the bench had runs: no check
    _write(folder, "sst2_seedx.json", _check([1.0], [0.0]))  # not a seed file
    _write(folder, "afqmc_seed42.json", _check([1.08, 1.06], [0.01, 0.03]))  # faster, outside
    checks = load_checks(tmp_path, ["sst2", "afqmc", "weibo"])
    assert list(checks["sst2"]) == [42, 43] and list(checks["afqmc"]) == [42] and checks["weibo"] == {}
    assert per_set_text(checks["sst2"]) == "1 of 2 seeds within noise" and per_set_text({}) == "not measured"
    assert [verdict(d["check"]) for d in checks["sst2"].values()] == ["within", "OUTSIDE (slower)"]
    assert verdict(checks["afqmc"][42]["check"]) == "OUTSIDE (faster)"
    table = rows(checks)
    assert [r[:2] for r in table] == [["sst2", "42"], ["sst2", "43"], ["afqmc", "42"]]
    assert table[1][4] == "0.960x (0.970 / 0.950)" and table[1][5] == "2.0% (1.0 / 2.0)"
    assert table[0][7] == "-" and table[1][7] == "1.020x" and table[0][8] == "AMD EPYC"
    said = summary_text(checks)
    assert "below 1.00x on 1 (mean 1.010x)" in said and "alone on 2 of 2 (mean 1.020x)" in said
    assert "Within the run's noise on 1 of 3 seeds, outside it and slower on 1, outside it and faster on 1" in said
    assert "is not met." in said and summary_text({"sst2": {}}) == "Not measured yet."
    assert summary_text({"sst2": {42: checks["sst2"][42]}}).endswith("the check (within the noise on every seed) is met.")


def test_an_unreadable_check_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "all_depth_l_overhead"
    folder.mkdir()
    (folder / "sst2_seed42.json").write_text("{not json")
    with pytest.raises(ConfigError, match="sst2_seed42.json is not readable.*all_depth_l_overhead.py"):
        load_checks(tmp_path, ["sst2"])
