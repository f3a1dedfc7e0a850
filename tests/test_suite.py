"""The multi-dataset evaluation: slices, vocabulary transplant, curves and operating points, and one tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from models import TINY_SHAPE, tiny_backbone_dir, write_toy_dataset

from geep_deploy.data import TextDataset, load_split
from geep_deploy.errors import ConfigError
from geep_deploy.suite.datasets import DatasetSpec, parse_datasets, sample, write_tsv
from geep_deploy.suite.points import (
    TARGET_SLACK,
    auc,
    entropy_curve,
    frontier,
    operating_points,
    paired_difference_ci,
    patience_curve,
    pick,
    static_curve,
)
from geep_deploy.vocab import read_vocab, transplanted_embeddings

points_st = st.lists(st.fixed_dictionaries({
    "knob": st.text(min_size=1, max_size=4),
    "accuracy": st.floats(0, 1),
    "flops_speedup": st.floats(1, 6),
}), max_size=30)


@given(points_st, st.floats(1, 6))
def test_pick_is_the_most_accurate_point_reaching_the_target(curve, target) -> None:
    p = pick(curve, target)
    ok = [c for c in curve if c["flops_speedup"] >= target * TARGET_SLACK]
    if not ok:
        assert p is None
    else:
        assert p["flops_speedup"] >= target * TARGET_SLACK
        assert p["accuracy"] == max(c["accuracy"] for c in ok)


@given(points_st)
def test_frontier_is_monotone_and_undominated(curve) -> None:
    f = frontier(curve)
    for a, b in zip(f, f[1:]):
        assert a["flops_speedup"] <= b["flops_speedup"] and a["accuracy"] > b["accuracy"]
    for c in curve:  # every point is matched or beaten by a frontier point that is at least as fast
        assert any(p["flops_speedup"] >= c["flops_speedup"] and p["accuracy"] >= c["accuracy"] for p in f)


def test_curves_on_logits_with_known_answers() -> None:
    # 4 rows, 3 depths, 2 classes; row i is right from depth i+1 on (row 3 never), and confident when right.
    right = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=bool)
    logits = np.where(right[..., None], [[-5.0, 5.0]], [[0.1, -0.1]]).astype(np.float32)
    labels, lengths = np.ones(4, np.int64), np.full(4, 10)
    static = static_curve(logits, labels, lengths, TINY_SHAPE)
    assert [p["accuracy"] for p in static] == [0.25, 0.5, 0.75]
    assert [p["knob"] for p in static] == ["static:1", "static:2", "static:3"]
    fast = {p["knob"]: p for p in entropy_curve(logits, labels, lengths, TINY_SHAPE, speeds=(0.0, 0.5))}
    assert fast["fastbert:0.5"]["accuracy"] == 0.75 and fast["fastbert:0.5"]["mean_depth"] == 2.25
    assert fast["fastbert:0"]["mean_depth"] == 3.0
    assert [p["knob"] for p in patience_curve(logits, labels, lengths, TINY_SHAPE)] == ["pabee:1", "pabee:2"]
    pts = operating_points(static, targets=(1.4, 2.9, 10.0))
    assert pts[0]["knob"] == "static:2" and pts[1]["knob"] == "static:1" and pts[2] is None


def test_auc_counts_ordered_pairs_and_ties() -> None:
    pos = np.array([False, False, True, True])
    assert auc(np.array([1, 2, 3, 4]), pos) == 1.0 and auc(np.array([4, 3, 2, 1]), pos) == 0.0
    assert auc(np.array([1, 1, 1, 1]), pos) == 0.5 and auc(np.array([1, 3, 2, 4]), pos) == 0.75
    assert auc(np.array([1, 2]), np.array([True, True])) is None


def test_sample_is_seeded_and_write_tsv_round_trips(tmp_path: Path) -> None:
    ds = TextDataset([f"text {i}" for i in range(50)], [f"b {i}" for i in range(50)], [i % 3 for i in range(50)],
                     ["a", "b", "c"])
    s1, s2 = sample(ds, 20, seed=1), sample(ds, 20, seed=1)
    assert s1 == s2 and len(set(s1.texts_a)) == 20 and sample(ds, 20, seed=2) != s1
    assert sorted(sample(ds, 99, seed=0).texts_a) == sorted(ds.texts_a)
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    write_tsv(s1, tmp_path / "test.tsv")
    back = load_split(tmp_path, "test")
    assert (back.texts_a, back.texts_b, back.labels) == (s1.texts_a, s1.texts_b, s1.labels)


def test_equal_budgets_split_fastbert_only() -> None:
    from geep_deploy.suite.run import stage_epochs

    assert stage_epochs("geep", 4) == stage_epochs("pabee", 4) == (4, None)
    assert stage_epochs("fastbert", 4) == (2, 2) and stage_epochs("fastbert", 5) == (2, 3)
    assert stage_epochs("full", 4) == stage_epochs("full-minilm-vocab", 4) == (4, None)


def test_training_checks_pick_the_better_exit_per_depth() -> None:
    from geep_deploy.suite.page import training_checks

    s = {"per_depth_accuracy": {"geep": [0.50, 0.70, 0.80], "fastbert": [0.66, 0.72, 0.81]},
         "per_depth_shared_path": [0.64, 0.69], "majority_share": 0.5, "full_accuracy": 0.81,
         "train_seconds": {"geep": 10.0, "fastbert": 8.0}}
    c = training_checks(s)
    assert c["students_mean_points"] == pytest.approx(100 * ((0.64 + 0.70) - (0.66 + 0.72)) / 2)
    assert c["shared_path_better_at"] == [1] and c["geep_at_chance_where_fastbert_learns"] == [1]
    assert c["depth_l_minus_full_points"] == pytest.approx(-1.0)


def test_goal_margins_count_a_gap_exactly_at_the_margin_as_met() -> None:
    """6 rows of 2,000 is 0.30 points, which float subtraction turns into -0.30000000000000027."""
    from geep_deploy.suite.page import FASTBERT_GOAL_POINTS, within

    gap = 100 * (0.883 - 0.886)
    assert gap < -FASTBERT_GOAL_POINTS and within(gap, FASTBERT_GOAL_POINTS)
    assert not within(100 * (0.8825 - 0.886), FASTBERT_GOAL_POINTS) and within(+2.0, 0.0)


def test_goal_tally_counts_only_the_sets_that_learn() -> None:
    from geep_deploy.suite.page import goal_tally

    def summary(name: str, geep: list[float], full: float, fastbert: tuple = (0.6, 0.7, 0.8)) -> dict:
        return {"dataset": {"name": name}, "per_depth_accuracy": {"geep": geep, "fastbert": list(fastbert)},
                "per_depth_shared_path": [], "majority_share": 0.5, "full_accuracy": full, "targets": [2.0],
                "points": {"fastbert": [None]}, "train_seconds": {}}

    t = goal_tally([summary("a", [0.7, 0.75, 0.8], 0.803), summary("b", [0.6, 0.7, 0.79], 0.80),
                    summary("flat", [0.5, 0.5, 0.5], 0.505, (0.5, 0.5, 0.5))])
    assert t["sets_that_learn"] == ["a", "b"]
    assert t["depth_l"] == [1, 2] and t["students"] == [2, 2] and t["no_head_at_chance"] == [2, 2]
    assert t["fastbert_2x"] == [0, 2] and t["probe_auc"] == [0, 2]  # nothing measured is nothing met


def test_tune_split_halves_are_disjoint_and_cover_the_test_rows() -> None:
    from dataclasses import replace

    from geep_deploy.suite.datasets import DATASETS, tune_split

    spec = DATASETS["sst2"]
    tune, report = tune_split(spec, 873, seed=42)
    assert len(tune) == 436 and len(report) == 437 and not set(tune) & set(report)
    assert sorted([*tune, *report]) == list(range(873))
    assert tune_split(replace(spec, tune_on="pool"), 10, 0)[0] is None
    with pytest.raises(ConfigError, match="tune_on"):
        tune_split(replace(spec, tune_on="dev"), 10, 0)


def test_held_out_sample_is_disjoint() -> None:
    ds = TextDataset([f"t{i}" for i in range(30)], None, [i % 2 for i in range(30)], ["a", "b"])
    head, rest = sample(ds, 10, seed=4), sample(ds, 50, seed=4, offset=10)
    assert not set(head.texts_a) & set(rest.texts_a) and len(rest) == 20


def test_parse_datasets() -> None:
    assert [s.name for s in parse_datasets("sst2, afqmc")] == ["sst2", "afqmc"]
    assert len(parse_datasets("all")) == 6 and parse_datasets("all")[-1].name == "weibo"
    with pytest.raises(ConfigError, match="unknown dataset"):
        parse_datasets("sst2,imdb")


def test_transplanted_embeddings_keep_shared_rows(tmp_path: Path) -> None:
    old_vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "good"]
    new_vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "好", "the", "电", "影"]
    old = np.random.default_rng(0).normal(0.1, 0.05, size=(6, 16)).astype(np.float32)
    new, report = transplanted_embeddings(old, old_vocab, new_vocab, seed=3)
    assert new.shape == (8, 16) and (report.copied, report.drawn) == (5, 3)
    np.testing.assert_array_equal(new[5], old[4])
    np.testing.assert_array_equal(new[:4], old[:4])
    drawn = new[[4, 6, 7]]
    assert abs(drawn.mean() - 0.1) < 0.05 and not np.allclose(drawn[0], drawn[1])
    with pytest.raises(ConfigError, match="rows"):
        transplanted_embeddings(old[:5], old_vocab, new_vocab)
    (tmp_path / "v.txt").write_text("hello\nworld\n")
    with pytest.raises(ConfigError, match="special tokens"):
        read_vocab(tmp_path / "v.txt")


def test_full_is_fastbert_first_stage(tmp_path: Path) -> None:
    """The suite reads `full` off FastBERT's depth L: both must come out of identical training."""
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.encoding import TextEncoder
    from geep_deploy.evaluate import collect_depth_logits
    from geep_deploy.trainer import TrainConfig, train

    data = write_toy_dataset(tmp_path / "toy", rows=48)
    bb = load_backbone_dir(tiny_backbone_dir(tmp_path / "bb"))
    ds = load_split(data, "train")
    out = {}
    for m in ("full", "fastbert"):
        ck = train(bb, ds, None, TrainConfig(method=m, epochs=1, batch_size=8, max_len=32))
        enc = TextEncoder(ck.tokenizer_json, 32).encode(ds.texts_a)
        out[m] = collect_depth_logits(ck.model, enc)[:, -1]
    np.testing.assert_array_equal(out["full"], out["fastbert"])


def test_tiny_suite_run_resumes_and_renders(tmp_path: Path) -> None:
    """The whole pipeline on a random-weight 3-layer backbone: JSON, page, plots; a re-run reuses every step."""
    from geep_deploy.suite import run as suite_run
    from geep_deploy.suite.page import write_page
    from geep_deploy.suite.run import SuiteConfig, run_dataset

    root = tmp_path / "data"
    write_toy_dataset(root / "toy", rows=160)
    spec = DatasetSpec("toy", "Toy (en, 2 classes)", "en", "train", "dev", 40, 16, 32, "toy split.", pool_rows=120)
    cfg = SuiteConfig(datasets=[spec], data_root=root, work=tmp_path / "work", results=tmp_path / "results",
                      backbone=tiny_backbone_dir(tmp_path / "bb"), epochs=1, bench_rows={1: 4, 64: 16}, repeats=1,
                      command="test")
    s = run_dataset(cfg, spec, suite_run._Log())
    assert s["rows"] == {"train": 40, "pool": 120, "test": 16, "tune": 120}
    assert set(s["curves"]) == {"full", "geep", "probe", "probe_esc", "probe_skip", "fastbert", "pabee", "static"}
    # the probe over the shared exit path runs on its own export, named in its knobs
    assert all(c["knob"].endswith("@skip") for c in s["curves"]["probe_skip"])
    assert json.loads((cfg.work / "toy" / "export" / "geep_skip" / "manifest.json").read_text())["exit_mode"] == "skip"
    assert {"probe", "probe_with_table", "depth1_entropy"} <= set(s["hard_row_auc"])
    # every operating point was chosen on the pool and carries the pool figures it was chosen by
    assert all(p is None or "held_out" in p for ps in s["points"].values() for p in ps)
    # equal budgets: one epoch for every method here (FastBERT's two stages get one each: the minimum), times kept
    assert s["epochs"] == {"geep": [1], "fastbert": [1, 1], "pabee": [1], "full": [1]} and s["epoch_budget"] == 1
    assert set(s["stage_seconds"]["fastbert"]) == {"fastbert-1-teacher", "fastbert-2-distill"}
    assert len(s["per_depth_shared_path"]) == 2 and all(0 <= a <= 1 for a in s["per_depth_shared_path"])
    knobs = {p["knob"] for ps in s["points"].values() for p in ps if p is not None}
    assert knobs <= set(s["bench"]["64"]["records"]) and "full" in s["bench"]["1"]["records"]
    full_bench = s["bench"]["64"]["records"]["full"]
    assert full_bench["wall_speedup"] == 1.0 and full_bench["accuracy"] == pytest.approx(s["full_accuracy"])
    stamp = {p: p.stat().st_mtime_ns for p in (cfg.work / "toy").rglob("*.pt")}
    again = run_dataset(cfg, spec, suite_run._Log())
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp and again["points"] == s["points"]
    (cfg.work / "toy" / "logits.npz").write_bytes(b"PK\x03\x04 truncated")  # interrupted writes are redone
    (cfg.work / "toy" / "bench_b64.json").write_text('{"records": [')
    healed = run_dataset(cfg, spec, suite_run._Log())
    assert healed["points"] == s["points"] and set(healed["bench"]["64"]["records"]) == set(s["bench"]["64"]["records"])
    cfg.seed = 7  # another recipe: the cached checkpoints are stale and everything after them is redone
    other = run_dataset(cfg, spec, suite_run._Log())
    assert all(p.stat().st_mtime_ns != t for p, t in stamp.items()) and other["seed"] == 7
    page = write_page(cfg.results, out=tmp_path / "docs" / "results.md")
    text = page.read_text()
    assert "## Toy (en, 2 classes)" in text and "GEEP, token table @2x" in text and "GEEP, layer-1 probe @2x" in text
    assert "geep, shared exit path (+1 layer)" in text and "Training wall-clock" in text
    assert "GEEP d1..L-1 - FastBERT students (mean pts)" in text
    assert (tmp_path / "docs" / "results" / "toy.png").stat().st_size > 1000
    assert json.loads((cfg.results / "toy.json").read_text())["command"] == "test"
    (cfg.results / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="broken.json is not a readable summary"):
        write_page(cfg.results, out=tmp_path / "docs" / "results.md")
    assert "## Toy" in page.read_text()  # the page already written is left as it was


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_paired_difference_ci_brackets_the_difference(rows: list[tuple[bool, bool]]) -> None:
    a, b = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    diff, lo, hi = paired_difference_ci(a, b, resamples=300)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert -1.0 <= lo <= hi <= 1.0
    assert paired_difference_ci(a, a, resamples=50)[1:] == (0.0, 0.0)  # identical answers: no spread
    if (a >= b).all():
        assert lo >= 0.0  # a is right wherever b is: every resample favours a
