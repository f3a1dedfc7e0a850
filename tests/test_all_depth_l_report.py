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
    SET_HEAD,
    identical_check,
    load_checks,
    mean_interval,
    per_set_text,
    rows,
    set_check,
    set_rows,
    set_summary_text,
    summary_text,
    verdict,
)
from geep_deploy.suite.aggregate import rule_over_runs, rule_over_speedups, set_all_depth_l


def _check(speedups: list[float], noise: list[float], contender: str = "full_reloaded") -> dict:
    mean = sum(speedups) / len(speedups)
    return {"probe0_speedup": mean, "probe0_speedup_runs": speedups, "noise": max(noise), "noise_runs": noise,
            "noise_contender": contender, "within_noise": abs(mean - 1) <= max(noise)}


def _runs(check: dict, same_engines: dict) -> list[dict]:
    """Per-run medians that give ``check`` and ``same_engines`` (`full` 1 s; the identical contenders slower)."""
    return [{"median_s": {"full": 1.0, "probe0": 1 / p, "full_reloaded": 1 / (1 + n), "full_again": 1 / (1 + a)}}
            for p, n, a in zip(check["probe0_speedup_runs"], check["noise_runs"], same_engines["noise_runs"])]


def _write(folder: Path, name: str, check: dict | None, graphs: float | None = 1.02,
           same_engines: dict | None = None) -> None:
    """A bench JSON; ``check`` None: one written before the bench timed `full` loaded again (only the old rule)."""
    d = {"config": {"mean_tokens": 20.0, "runs": 2, "repeats": 7}, "machine": {"cpu": "AMD EPYC"},
         "ratios": {"probe0_over_full": 1.0} | ({} if graphs is None else {"graphs_probe_over_graphs_full": graphs})}
    if check is None:
        d["check"] = _check([1.0, 1.0], [0.01, 0.01])
    else:
        d["check"] = check
        d["check_same_engines"] = same_engines or _check(check["probe0_speedup_runs"], [0.001, 0.001], "full_again")
        d["runs"] = _runs(check, d["check_same_engines"])
    (folder / name).write_text(json.dumps(d))


def test_checks_are_read_per_set_and_seed_and_old_files_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "all_depth_l_overhead"
    folder.mkdir()
    _write(folder, "sst2_seed43.json", _check([0.97, 0.96], [0.01, 0.02]))  # slower, outside
    _write(folder, "sst2_seed42.json", _check([1.01, 0.99], [0.02, 0.01]), graphs=None,  # within; --no-graphs
           same_engines=_check([1.01, 0.99], [0.003, 0.001], "full_again"))  # within by the old rule too
    _write(folder, "sst2_seed44.json", None)  # written before the bench loaded `full` again: left out
    _write(folder, "sst2_seedx.json", _check([1.0], [0.0]))  # not a seed file
    _write(folder, "afqmc_seed42.json", _check([1.08, 1.06], [0.01, 0.03]))  # faster, outside
    checks = load_checks(tmp_path, ["sst2", "afqmc", "weibo"])
    assert list(checks["sst2"]) == [42, 43] and list(checks["afqmc"]) == [42] and checks["weibo"] == {}
    # per set: 1.01, 0.99, 0.97, 0.96 -> 0.9825x against the largest distance of `full` loaded again, 2%: within
    assert per_set_text(checks["sst2"]) == "within the noise (0.982x, noise 2.0%) over its 2 seeds (1 of 2 seeds one by one)"
    assert per_set_text(checks["afqmc"]) == "OUTSIDE the noise, faster (1.070x, noise 3.0%) over its 1 seeds (0 of 1 seeds one by one)"
    assert per_set_text({}) == "not measured"
    assert [verdict(d["check"]) for d in checks["sst2"].values()] == ["within", "OUTSIDE (slower)"]
    assert verdict(checks["afqmc"][42]["check"]) == "OUTSIDE (faster)"
    table = rows(checks)
    assert [r[:2] for r in table] == [["sst2", "42"], ["sst2", "43"], ["afqmc", "42"]]
    assert table[1][4] == "0.965x (0.970 / 0.960)" and table[1][5] == "2.0% (1.0 / 2.0)"
    assert table[1][6:9] == ["OUTSIDE (slower)", "0.1% (0.1 / 0.1)", "OUTSIDE (slower)"]
    assert table[0][6:9] == ["within", "0.3% (0.3 / 0.1)", "within"]
    assert table[0][9] == "-" and table[1][9] == "1.020x" and table[0][10] == "AMD EPYC"
    assert len(table[0]) == len(HEAD)
    said = summary_text(checks)
    assert "below 1.00x on 1 (mean 1.012x, 95% interval over seeds [" in said
    assert "alone on 2 of 2 (mean 1.020x, 95% interval over seeds [1.020, 1.020]; the split costs the engines time)" in said
    assert ("Within the noise of `full` loaded again on 1 of 3 seeds, outside it and slower on 1, outside it and "
            "faster on 1") in said
    assert ("With the noise of the same engines timed twice (the rule before), within on 1 of 3; the noise of "
            "`full` loaded again is the larger of the two on 3 of 3.") in said
    assert "is not met." in said and summary_text({"sst2": {}}) == "Not measured yet."
    one = summary_text({"sst2": {42: checks["sst2"][42]}})
    assert "the per-seed check (within the noise on every seed) is met." in one


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


def test_the_per_set_rule_pools_every_run_of_the_sets_seeds_and_checks_full_again_beside_it(tmp_path: Path) -> None:
    folder = tmp_path / "all_depth_l_overhead"
    folder.mkdir()
    # sst2: each seed outside on its own (2% slower, then 2% faster), within over both (mean 1.00x)
    _write(folder, "sst2_seed42.json", _check([0.98, 0.98], [0.01, 0.01]),
           same_engines=_check([0.98, 0.98], [0.04, 0.0], "full_again"))
    _write(folder, "sst2_seed43.json", _check([1.02, 1.02], [0.015, 0.0]),
           same_engines=_check([1.02, 1.02], [0.0, 0.0], "full_again"))
    _write(folder, "weibo_seed42.json", _check([0.95, 0.96], [0.01, 0.02]))  # outside, slower
    checks = load_checks(tmp_path, ["sst2", "weibo", "afqmc"])
    pooled = set_check(checks["sst2"])
    assert pooled["speedup"] == pytest.approx(1.0) and pooled["noise"] == pytest.approx(0.015)
    assert pooled["within_noise"] and len(pooled["speedup_runs"]) == 4 and set_check({}) is None
    assert [d["check"]["within_noise"] for d in checks["sst2"].values()] == [False, False]
    # `full` again: 1/(1+0.04) and 1.0 s on seed 42 -> speed-up 1.02, against its noise of 1%: outside
    again = identical_check(checks["sst2"][42])
    assert again["speedup"] == pytest.approx(1.02) and not again["within_noise"]
    table = set_rows(checks)
    assert [r[0] for r in table] == ["sst2", "weibo"] and all(len(r) == len(SET_HEAD) for r in table)
    assert table[0][1:6] == ["42, 43", "4", "1.000x", "1.5%", "within"]
    assert table[0][8] == "0 / 1 of 2" and table[1][5] == "OUTSIDE (slower)"
    said = set_summary_text(checks)
    assert "within the noise of `full` loaded again on 1 of 2 sets (outside: weibo, slower)" in said
    assert "is not met" in said and "`full` timed again is within on 2 of 3 seeds and `probe:0` on 0: " in said
    assert "fails a contender that cannot differ from `full` less often than it fails `probe:0`" in said
    assert set_summary_text({"sst2": {}}) == "Not measured yet."
    mixed = {42: checks["sst2"][42], 43: checks["weibo"][42] | {"check": checks["weibo"][42]["check"] | {
        "noise_contender": "full_again"}}}
    with pytest.raises(ConfigError, match="noise from"):
        set_check(mixed)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 2.0), st.floats(0.5, 2.0), st.floats(0.5, 2.0)), min_size=1, max_size=8))
def test_the_rule_over_runs_is_the_mean_speedup_against_the_largest_distance(runs: list[tuple]) -> None:
    medians = [{"full": 1.0, "x": x, "twin": t, "other": o} for x, t, o in runs]
    check = rule_over_runs(medians, "x", "twin")
    assert check["speedup"] == pytest.approx(sum(1 / x for x, _, _ in runs) / len(runs))
    assert check["noise"] == pytest.approx(max(abs(1 / t - 1) for _, t, _ in runs))
    assert check["within_noise"] == (abs(check["speedup"] - 1) <= check["noise"] + 1e-9)
    # an identical contender judged against itself is always within its own noise
    assert rule_over_runs([{"full": 1.0, "x": x} for x, _, _ in runs[:1]], "x", "x")["within_noise"]
    with pytest.raises(ConfigError, match="needs at least one run"):
        rule_over_runs([{"full": 1.0}], "x", "twin")


def _suite_check(runs: list[float], noise_runs: list[float]) -> dict:
    """One seed's all-depth-L check as the suite's aggregate writes it (noise from `static:6`)."""
    mean = sum(runs) / len(runs)
    return {"wall_speedup": mean, "runs": runs, "noise": max(noise_runs), "noise_runs": noise_runs,
            "noise_contender": "static:6", "within_noise": abs(mean - 1) <= max(noise_runs)}


def test_the_suites_own_check_pools_every_run_of_the_sets_seeds() -> None:
    # each seed outside on its own (3% slower, then 3% faster), within over both: mean 1.00x against 2%
    pooled = set_all_depth_l({"42": _suite_check([0.97, 0.97], [0.01, 0.02]),
                              "43": _suite_check([1.03, 1.03], [0.0, 0.005])})
    assert pooled["speedup"] == pytest.approx(1.0) and pooled["noise"] == pytest.approx(0.02)
    assert pooled["within_noise"] and pooled["seeds_within"] == 0 and pooled["seeds"] == 2
    assert pooled["noise_contender"] == "static:6" and len(pooled["speedup_runs"]) == 4
    # a seed not benched, or benched before the noise runs were kept: no per-set verdict rather than a partial one
    assert set_all_depth_l({"42": _suite_check([1.0], [0.01]), "43": None}) is None
    assert set_all_depth_l({"42": _suite_check([1.0], [0.01]) | {"noise_runs": None}}) is None
    assert set_all_depth_l({}) is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 2.0), st.floats(0.0, 0.5)), min_size=1, max_size=8))
def test_the_rule_over_speedups_is_the_mean_against_the_largest_noise(runs: list[tuple]) -> None:
    check = rule_over_speedups([s for s, _ in runs], [n for _, n in runs], "twin")
    assert check["speedup"] == pytest.approx(sum(s for s, _ in runs) / len(runs))
    assert check["noise"] == max(n for _, n in runs) and check["noise_contender"] == "twin"
    assert check["within_noise"] == (abs(check["speedup"] - 1) <= check["noise"] + 1e-9)
    # adding a run never narrows the noise: the rule is lenient as runs are pooled
    wider = rule_over_speedups([s for s, _ in runs] + [1.0], [n for _, n in runs] + [0.0], "twin")
    assert wider["noise"] == check["noise"]
    with pytest.raises(ConfigError, match="at least one run and one noise"):
        rule_over_speedups([], [0.1], "twin")
