"""The results page's reading of `bench/all_depth_l_overhead.py`'s JSON (issue 23's all-depth-L check)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geep_deploy.errors import ConfigError
from geep_deploy.reporting.all_depth_l import (
    HEAD,
    load_checks,
    mean_interval,
    per_set_text,
    rows,
    summary_text,
    verdict,
)


def _check(speedups: list[float], noise: list[float]) -> dict:
    mean = sum(speedups) / len(speedups)
    return {"probe0_speedup": mean, "probe0_speedup_runs": speedups, "noise": max(noise), "noise_runs": noise,
            "within_noise": abs(mean - 1) <= max(noise)}


def _write(folder: Path, name: str, check: dict | None, graphs: float | None = 1.02,
           same_engines: dict | None = None) -> None:
    """A bench JSON; ``check`` None: one written before the bench timed `full` loaded again (only the old rule)."""
    d = {"config": {"mean_tokens": 20.0, "runs": 2, "repeats": 7}, "machine": {"cpu": "AMD EPYC"},
         "ratios": {"probe0_over_full": 1.0} | ({} if graphs is None else {"graphs_probe_over_graphs_full": graphs})}
    if check is None:
        d["check"] = _check([1.0, 1.0], [0.01, 0.01])
    else:
        d["check"] = check
        d["check_same_engines"] = same_engines or _check(check["probe0_speedup_runs"], [0.001, 0.001])
    (folder / name).write_text(json.dumps(d))


def test_checks_are_read_per_set_and_seed_and_old_files_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "all_depth_l_overhead"
    folder.mkdir()
    _write(folder, "sst2_seed43.json", _check([0.97, 0.95], [0.01, 0.02]))  # slower, outside
    _write(folder, "sst2_seed42.json", _check([1.01, 0.99], [0.02, 0.01]), graphs=None,  # within; --no-graphs
           same_engines=_check([1.01, 0.99], [0.003, 0.001]))  # within by the old rule too
    _write(folder, "sst2_seed44.json", None)  # written before the bench loaded `full` again: left out
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
    assert table[1][6:9] == ["OUTSIDE (slower)", "0.1% (0.1 / 0.1)", "OUTSIDE (slower)"]
    assert table[0][6:9] == ["within", "0.3% (0.3 / 0.1)", "within"]
    assert table[0][9] == "-" and table[1][9] == "1.020x" and table[0][10] == "AMD EPYC"
    assert len(table[0]) == len(HEAD)
    said = summary_text(checks)
    assert "below 1.00x on 1 (mean 1.010x, 95% interval over seeds [" in said
    assert "alone on 2 of 2 (mean 1.020x, 95% interval over seeds [1.020, 1.020])" in said
    assert ("Within the noise of `full` loaded again on 1 of 3 seeds, outside it and slower on 1, outside it and "
            "faster on 1") in said
    assert ("With the noise of the same engines timed twice (the rule before), within on 1 of 3; the noise of "
            "`full` loaded again is the larger of the two on 3 of 3.") in said
    assert "is not met." in said and summary_text({"sst2": {}}) == "Not measured yet."
    assert "the check (within the noise on every seed) is met." in summary_text({"sst2": {42: checks["sst2"][42]}})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.5, 1.5), min_size=1, max_size=20))
def test_the_interval_over_seeds_brackets_the_mean_within_the_values(values: list[float]) -> None:
    mean, lo, hi = mean_interval(values, resamples=200)
    assert mean == pytest.approx(sum(values) / len(values))
    assert min(values) - 1e-12 <= lo <= mean <= hi <= max(values) + 1e-12
    if max(values) - min(values) < 1e-12:
        assert hi - lo < 1e-9


def test_an_unreadable_check_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "all_depth_l_overhead"
    folder.mkdir()
    (folder / "sst2_seed42.json").write_text("{not json")
    with pytest.raises(ConfigError, match="sst2_seed42.json is not readable.*all_depth_l_overhead.py"):
        load_checks(tmp_path, ["sst2"])
