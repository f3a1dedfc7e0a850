"""Equal-accuracy wall-clock comparisons of the suite: mixing two benched points (`points.fastest_mix_at`) and the
per-point verdicts built on it (`aggregate.mixed_wall_pairs`)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from geep_deploy.suite.aggregate import mixed_wall_pairs
from geep_deploy.suite.points import fastest_mix_at

_points = st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.5, 5.0)), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(_points, st.floats(0.0, 1.0))
def test_a_mix_is_at_least_as_fast_as_any_accurate_point_and_no_faster_than_the_fastest(pts, acc) -> None:
    got = fastest_mix_at(pts, acc)
    accurate = [s for a, s in pts if a >= acc]
    if not accurate:
        assert got is None
        return
    assert got >= max(accurate) - 1e-9
    assert got <= max(s for _, s in pts) + 1e-9


@settings(max_examples=200, deadline=None)
@given(_points, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_asking_for_more_accuracy_never_makes_it_faster(pts, a, b) -> None:
    lo, hi = sorted((a, b))
    fast, slow = fastest_mix_at(pts, lo), fastest_mix_at(pts, hi)
    if slow is not None:
        assert fast is not None and fast >= slow - 1e-9


def test_the_mix_is_harmonic_in_speed_up() -> None:
    # 3/4 of the rows at the accurate point (speed-up 1), 1/4 at the fast one (speed-up 4): time 3/4 + 1/16.
    assert abs(fastest_mix_at([(0.9, 1.0), (0.5, 4.0)], 0.8) - 1 / (0.75 + 0.0625)) < 1e-12
    assert fastest_mix_at([(0.9, 1.0), (0.5, 4.0)], 0.95) is None


def _summary(points: dict[str, list[tuple[str, float, list[float]]]], noise: float = 0.02) -> dict[str, Any]:
    recs, pts = {}, {}
    for method, rows in points.items():
        pts[method] = []
        for knob, acc, runs in rows:
            recs[knob] = {"wall_speedup": sum(runs) / len(runs), "wall_speedup_runs": runs}
            pts[method].append({"knob": knob, "accuracy": acc, "held_out": {"accuracy": acc, "flops_speedup": 1.0}})
    return {"points": pts, "bench": {"64": {"records": recs, "noise": noise}}}


def test_mixed_wall_pairs_say_ahead_only_outside_the_noise_and_the_run_spread() -> None:
    s = _summary({"a": [("a1", 0.90, [1.5, 1.5]), ("a2", 0.80, [3.0, 3.0])],
                  "b": [("b1", 0.85, [1.5, 1.5]), ("b2", 0.95, [1.0, 1.0])],
                  "c": [("c1", 0.85, [1.9, 2.1])]})
    by_ref = {r["reference"]: r for r in mixed_wall_pairs(s, contender="a", reference="b")}
    assert by_ref["b1"]["verdict"] == "ahead" and abs(by_ref["b1"]["contender_wall"] - 2.0) < 1e-9
    assert by_ref["b2"]["verdict"] == "-" and by_ref["b2"]["contender_wall"] is None
    # 2.0 against c1's 2.0 mean: level; c1's own runs spread by 0.2, so even 2.15 would be level.
    (row,) = mixed_wall_pairs(s, contender="a", reference="c")
    assert row["verdict"] == "level" and row["spread"] >= 0.2 - 1e-9
    assert mixed_wall_pairs({"points": {}, "bench": {}}, "a", "b") == []
    # every contender point more accurate than b3 and slower: its sweep was not benched that far
    s["points"]["b"].append({"knob": "b3", "accuracy": 0.7, "held_out": {"accuracy": 0.7, "flops_speedup": 1.0}})
    s["bench"]["64"]["records"]["b3"] = {"wall_speedup": 4.0, "wall_speedup_runs": [4.0, 4.0]}
    by_ref = {r["reference"]: r for r in mixed_wall_pairs(s, contender="a", reference="b")}
    assert by_ref["b3"]["verdict"] == "out of range"


def test_the_dispatch_faster_in_more_comparisons_wins_the_set() -> None:
    from geep_deploy.reporting.suite_results import SetResults
    from geep_deploy.reporting.suite_tables import dispatch_rows, dispatch_winner

    fast_entropy = _summary({"geep_entropy": [("e1", 0.90, [2.0, 2.0]), ("e2", 0.80, [3.0, 3.0])],
                             "probe": [("p1", 0.90, [1.5, 1.5]), ("p2", 0.80, [2.0, 2.0])]})
    same = _summary({"geep_entropy": [("e1", 0.90, [2.0, 2.0])], "probe": [("p1", 0.90, [2.0, 2.0])]})
    sets = [SetResults("a", "A", {1: fast_entropy}, None), SetResults("b", "B", {1: same}, None)]
    tally, per_set = dispatch_winner(sets)
    assert per_set == {"a": "entropy exit", "b": "level"}
    assert tally == {"entropy exit": 1, "probe": 0, "level": 1}
    rows = dispatch_rows(sets)
    assert len(rows) == 6 and {r[-1] for r in rows if r[0] == "a"} == {"ahead", "behind"}


def test_out_of_range_pairs_say_nothing_unless_counted_as_losses() -> None:
    from geep_deploy.reporting.suite_results import SetResults
    from geep_deploy.reporting.suite_tables import dispatch_winner

    s = _summary({"geep_entropy": [("e1", 0.90, [2.0, 2.0])],
                  "probe": [("p1", 0.90, [1.9, 1.9]), ("p2", 0.80, [3.0, 3.0]), ("p3", 0.70, [4.0, 4.0])]})
    sets = [SetResults("a", "A", {1: s}, None)]
    assert dispatch_winner(sets)[1] == {"a": "entropy exit"}  # ahead at p1, and the probe behind at e1
    assert dispatch_winner(sets, out_of_range_loses=True)[1] == {"a": "level"}  # p2, p3: entropy not benched there
