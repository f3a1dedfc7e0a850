"""The multi-dataset evaluation: slices, vocabulary transplant, curves and operating points, and one tiny run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from models import TINY_SHAPE, tiny_backbone_dir, write_toy_dataset

from geep_deploy.bench.harness import engine_settings
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


def test_fastbert_fine_tunes_for_the_whole_budget_then_distils() -> None:
    from geep_deploy.suite.protocol import FASTBERT_DISTILL_EPOCHS
    from geep_deploy.suite.run import stage_epochs

    assert stage_epochs("geep", 4) == stage_epochs("pabee", 4) == (4, None)
    assert stage_epochs("fastbert", 4) == (4, FASTBERT_DISTILL_EPOCHS) == (4, 5)
    assert stage_epochs("full", 4) == stage_epochs("full-minilm-vocab", 4) == (4, None)


def test_drop_seen_removes_test_rows_whose_text_was_trained_or_tuned_on() -> None:
    from geep_deploy.suite.datasets import drop_seen

    test = TextDataset(["A  b", "c", "d", "e"], ["x", "y", "z", "w"], [0, 1, 0, 1], ["n", "p"])
    train = TextDataset(["a b", "c"], ["x", "other"], [0, 0], ["n", "p"])  # "c" pairs with another text_b
    pool = TextDataset(["E"], ["W"], [1], ["n", "p"])
    kept, dropped = drop_seen(test, train, pool)
    assert dropped == 2 and kept.texts_a == ["c", "d"] and kept.texts_b == ["y", "z"] and kept.labels == [1, 0]
    assert drop_seen(test)[1] == 0


def _gap(points: float, low: float, high: float) -> dict:
    return {"points": points, "low": low, "high": high, "seeds": 1}


def _pair(target: float, verdict: str | None) -> dict:
    if verdict is None:
        return {"target": target, "fastbert": "fastbert:0.3", "geep": None}
    return {"target": target, "fastbert": "fastbert:0.3", "geep": "probe:0.1", "fastbert_wall": 2.0,
            "geep_wall": 2.4, "fastbert_runs": [1.9, 2.1], "geep_runs": [2.3, 2.5], "geep_test_accuracy": 0.8,
            "fastbert_test_accuracy": 0.79, "spread": 0.2, "verdict": verdict}


def _set(name: str, fb: dict | None, full: dict | None, walls: dict, entropy: float = 0.7, majority: float = 0.5):
    from geep_deploy.reporting.suite_results import SetResults

    at = {"probe": {"2": {"mean": 0.8, "sd": 0.0, "n": 1}}, "geep_entropy": {"2": {"mean": entropy, "sd": 0, "n": 1}},
          "fastbert": {"2": {"mean": 0.79, "sd": 0.0, "n": 1}}}
    summary = {"seeds": [1], "full_margin_points": 1.0, "full_accuracy": {"mean": 0.8, "sd": 0.0, "n": 1}, "wall_clock": walls, "accuracy_at": at,
               "gaps": {"vs_fastbert": {"probe": {"2": fb}}, "vs_full": {"probe": {"2": full}},
                        "entropy_exit_vs_headline": {"2": _gap(100 * (entropy - 0.8), 100 * (entropy - 0.8) - 5,
                                                               100 * (entropy - 0.8) + 5)}},
               "depth_l_minus_full": _gap(-0.5, -1.5, 0.5)}
    seed = {"per_depth_accuracy": {"geep": [0.5, 0.8], "fastbert": [0.6, 0.8]}, "full_accuracy": 0.8,
            "majority_share": majority}
    return SetResults(name, name, {1: seed}, summary)


def test_wall_verdict_needs_every_seed_to_agree() -> None:
    from geep_deploy.reporting.suite_tables import wall_verdict

    assert wall_verdict({"1": [_pair(2.0, "ahead")], "2": [_pair(2.0, "ahead"), _pair(3.0, "behind")]}) == "ahead"
    assert wall_verdict({"1": [_pair(2.0, "ahead")], "2": [_pair(2.0, "level")]}) == "mixed"
    assert wall_verdict({"1": [_pair(2.0, "behind")], "2": [_pair(2.0, None)]}) == "behind/unmatched"  # lost
    assert wall_verdict({"1": [_pair(2.0, "behind")], "2": [_pair(2.0, None)], "3": [_pair(2.0, "level")]}) == "mixed"
    assert wall_verdict({"1": [_pair(2.0, None)]}) == "unmatched"
    assert wall_verdict({"1": [_pair(3.0, "ahead")]}) == wall_verdict({}) == "-"


def test_a_check_timed_under_older_runtime_settings_says_which() -> None:
    from geep_deploy.reporting.suite_tables import stale_timing

    now = engine_settings("onnxruntime", "cpu")
    assert stale_timing({"engine_settings": now}) is None
    assert "SkipLayerNormFusion" in stale_timing({"engine_settings": None})
    assert "dispatch revision" in stale_timing({"engine_settings": {**now, "dispatch_revision": 1}})


def test_coverage_names_missing_and_unbenched_seeds() -> None:
    from geep_deploy.reporting.results_page import coverage_lines
    from geep_deploy.reporting.suite_results import SetResults

    seeds = {42: {"bench": {"64": {}}}, 43: {}}
    line, = coverage_lines([SetResults("toy", "Toy", seeds, {"seeds": [42, 43]})], (42, 43, 44))
    assert line == "- toy: seeds 42, 43; missing 44; wall-clock benched on seed 42"
    line, = coverage_lines([SetResults("toy", "Toy", {42: seeds[42]}, {"seeds": [42]})], (42,))
    assert line == "- toy: seeds 42"


def test_goal_tally_counts_interval_verdicts_on_the_sets_that_learn() -> None:
    from geep_deploy.reporting.suite_results import learns
    from geep_deploy.reporting.suite_tables import goal_rows, goal_tally, losses, tally_lines

    sets = [_set("a", _gap(1.0, 0.2, 1.8), _gap(-0.5, -0.9, 0.1), {"1": [_pair(2.0, "ahead")]}),
            _set("b", _gap(-1.0, -1.6, -0.2), _gap(-2.0, -3.0, -1.2), {"1": [_pair(2.0, None)]}, entropy=0.9),
            _set("c", None, None, {}),
            _set("flat", _gap(5.0, 4.0, 6.0), _gap(0, 0, 0), {}, majority=0.8)]
    learning = [s for s in sets if learns(s)]
    assert [s.name for s in learning] == ["a", "b", "c"]  # `flat`: no classifier beats its majority class
    t = goal_tally(learning)
    assert t["vs_fastbert_verdict"] == {"ahead": ["a"], "behind": ["b"], "-": ["c"]}
    assert t["vs_full_verdict"] == {"met": ["a"], "missed": ["b"], "-": ["c"]}
    assert t["wall"] == {"ahead": ["a"], "unmatched": ["b"], "-": ["c"]}
    lines = tally_lines(t, 1.0)
    assert "ahead on 1 of 3 (a); behind on 1 of 3 (b); not measured on 1 of 3 (c)" in lines[0]
    assert "met on 1 of 3 (a); missed on 1 of 3 (b)" in lines[1]
    assert goal_rows(learning)[0][2:4] == ["+1.00 [+0.20, +1.80]", "ahead"]
    said = " ".join(losses(learning))
    assert "loses to FastBERT at 2x FLOPs on b" in said and "not shown within 1 point of `full` at 2x FLOPs" in said
    assert "no point as accurate, on b" in said and "entropy exit are more accurate" in said
    assert losses(learning[:1]) == ["The pre-registered GEEP loses no comparison of the tally on the sets measured "
                                    "so far."]
    from geep_deploy.reporting.blocks_suite import LEFT_OUT, _md_headline_row

    # the README's headline table: gaps for every set, verdicts only where the set learns
    assert _md_headline_row(sets[3])[5:] == ["+5.00 [+4.00, +6.00]", LEFT_OUT, "+0.00 [+0.00, +0.00]", LEFT_OUT]
    assert _md_headline_row(sets[0])[6] == "ahead"


def test_a_lost_set_says_why_from_the_students_and_the_dispatch() -> None:
    """The reason under a loss is measured: per-depth student gaps to FastBERT, depth L against `full`, and
    whether the entropy exit on GEEP's own heads beats the probe (then the dispatch shares the blame)."""
    from geep_deploy.reporting.suite_tables import why_behind

    lost = _set("b", _gap(-1.0, -1.6, -0.2), _gap(-2.0, -3.0, -1.2), {}, entropy=0.9)
    said = why_behind(lost)
    assert "below FastBERT's at 1 of the 1 depths below L" in said and "d1 -10.0" in said
    assert "depth L minus `full` is -0.50 [-1.50, +0.50]" in said and "part of the loss is the dispatch" in said
    level = why_behind(_set("b", _gap(-1.0, -1.6, -0.2), None, {}, entropy=0.8))
    assert "level with the probe at 2x" in level and "lost in training the students, not in the dispatch" in level


def test_consistency_rows_flag_budgets_exceeded_on_test() -> None:
    from geep_deploy.reporting.suite_results import SetResults
    from geep_deploy.reporting.suite_tables import consistency_rows, violation_lines

    def row(method: str, eps: float, test: float) -> dict:
        return {"method": method, "rule": "max_disagree", "eps": eps, "delta": 0.1, "certified": True,
                "test_disagreement": test, "upper_bound": eps * 0.9, "flops_speedup": 2.0, "violated": test > eps}

    drop = {"method": "geep_probe", "rule": "max_drop", "test_disagreement": 0.03, "flops_speedup": 2.5,
            "violated_at": {"0.01": True, "0.05": False}}
    too_few = {"method": "fastbert", "rule": "max_disagree", "eps": 0.01, "delta": 0.1, "certified": False,
               "error": "too few", "rows_needed": 230}
    recs = [{**row("geep_probe", 0.01, 0.02), "knob_name": "probe:0.1"}, too_few, row("geep_probe", 0.05, 0.01),
            row("fastbert", 0.05, 0.04), drop]
    bench = {"64": {"records": {"probe:0.1": {"wall_speedup": 1.5}}}}  # the seed's bench timed one of the knobs
    s = SetResults("a", "a", {7: {"consistency": recs, "bench": bench}}, {})
    rows = consistency_rows([s])
    assert rows[0] == ["a", "7", "1%", "2.00 **exceeds** / 0.90 / 2.00x / 1.50x", "pool too small (230 rows needed)",
                       "3.00 **exceeds** / 2.50x / –"]
    assert rows[1][3:] == ["1.00 / 4.50 / 2.00x / –", "4.00 / 4.50 / 2.00x / –", "3.00 / 2.50x / –"]
    assert violation_lines([s]) == ["geep_probe: 1 of 2 certified cases exceed EPS on test (delta 0.1).",
                                    "fastbert: 0 of 1 certified cases exceed EPS on test (delta 0.1)."]


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
    """FastBERT as published distils its students from the fully fine-tuned model: given the `full` checkpoint as
    its teacher, its depth L answers exactly as `full`, only the students change, and the teacher is recorded."""
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.encoding import TextEncoder
    from geep_deploy.evaluate import collect_depth_logits
    from geep_deploy.trainer import TrainConfig, train

    data = write_toy_dataset(tmp_path / "toy", rows=48)
    bb = load_backbone_dir(tiny_backbone_dir(tmp_path / "bb"))
    ds = load_split(data, "train")
    full = train(bb, ds, None, TrainConfig(method="full", epochs=1, batch_size=8, max_len=32))
    fb = train(bb, ds, None, TrainConfig(method="fastbert", epochs=1, distill_epochs=1, batch_size=8, max_len=32),
               teacher=full)
    enc = TextEncoder(full.tokenizer_json, 32).encode(ds.texts_a)
    lf, lb = collect_depth_logits(full.model, enc), collect_depth_logits(fb.model, enc)
    np.testing.assert_array_equal(lf[:, -1], lb[:, -1])
    assert not np.allclose(lf[:, 0], lb[:, 0])  # the students were distilled
    assert list(fb.metrics["stage_seconds"]) == ["fastbert-2-distill"]
    assert fb.hparams["teacher"]["weights_sha256"] == full.weights_sha256
    with pytest.raises(ConfigError, match="must be a `full` checkpoint"):
        train(bb, ds, None, TrainConfig(method="fastbert", epochs=1, batch_size=8, max_len=32), teacher=fb)
    with pytest.raises(ConfigError, match="trains without one"):
        train(bb, ds, None, TrainConfig(method="geep", epochs=1, batch_size=8, max_len=32), teacher=full)


def test_tiny_suite_run_resumes_and_aggregates(tmp_path: Path) -> None:
    """The whole pipeline on a random-weight 3-layer backbone, two training seeds: per-seed JSON with the fair
    figures, the consistency rows and two bench runs; a summary across seeds; a re-run reuses every step."""
    from geep_deploy.suite import run as suite_run
    from geep_deploy.suite.aggregate import aggregate_dataset
    from geep_deploy.suite.answers import answers_path
    from geep_deploy.suite.consistency import consistency_knobs
    from geep_deploy.suite.protocol import ALL_DEPTH_L, HEADLINE
    from geep_deploy.suite.run import SuiteConfig, noise_knob, run_dataset, seed_dir

    root = tmp_path / "data"
    write_toy_dataset(root / "toy", rows=160, unique=True)
    spec = DatasetSpec("toy", "Toy (en, 2 classes)", "en", "train", "dev", 40, 16, 32, "toy split.", pool_rows=120)
    cfg = SuiteConfig(datasets=[spec], data_root=root, work=tmp_path / "work",
                      results=tmp_path / "results" / "multi_dataset",
                      backbone=tiny_backbone_dir(tmp_path / "bb"), epochs=1, bench_rows={1: 4, 64: 16}, repeats=1,
                      command="test", train_seeds=(1, 2))
    s = run_dataset(cfg, spec, suite_run._Log(), 1)
    assert s["rows"] == {"train": 40, "pool": 120, "test": 16, "tune": 120} and s["test_dropped_duplicates"] == 0
    assert set(s["curves"]) == {"full", "geep", "probe", "probe_esc", "probe_skip", "fastbert", "pabee", "static",
                                "geep_entropy"}
    assert s["headline"] == HEADLINE and set(s["fair"]["methods"]) == set(s["curves"]) - {"full"}
    # the probe over the shared exit path and GEEP's students under the entropy exit run on named exports
    assert all(c["knob"].endswith("@skip") for c in s["curves"]["probe_skip"])
    assert all(c["knob"].endswith("@geep_export") for c in s["curves"]["geep_entropy"])
    work = seed_dir(cfg, spec, 1)
    assert json.loads((work / "export" / "geep_skip" / "manifest.json").read_text())["exit_mode"] == "skip"
    assert {"probe", "probe_with_table", "depth1_entropy"} <= set(s["hard_row_auc"])
    assert all(p is None or "held_out" in p for ps in s["points"].values() for p in ps)
    # FastBERT as published: `full` for the whole budget, then its own distillation epochs
    assert s["epochs"]["fastbert"] == [1, 5] and s["epochs"]["full"] == [1] and s["epoch_budget"] == 1
    assert set(s["stage_seconds"]["fastbert"]) == {"fastbert-2-distill"}
    assert {r["method"] for r in s["consistency"]} >= {"geep_probe", "fastbert"}
    b64 = s["bench"]["64"]
    assert b64["runs"] == 2 and {"full", noise_knob(3), ALL_DEPTH_L} <= set(b64["records"])
    assert consistency_knobs(s["consistency"]) <= set(b64["records"])  # issue 27's table gives their wall-clock
    assert all(len(r["wall_speedup_runs"]) == 2 for r in b64["records"].values()) and b64["noise"] is not None
    full_bench = b64["records"]["full"]
    assert full_bench["wall_speedup"] == 1.0 and full_bench["accuracy"] == pytest.approx(s["full_accuracy"])
    # retraining a cached seed by its recipe reproduces it bit for bit on this machine (FastBERT from its teacher)
    from geep_deploy.suite.retrain_check import retrain_check

    check = retrain_check(cfg, spec, 1, "fastbert", tmp_path / "scratch")
    assert check["identical"] and check["differ"] == [] and check["tensors"] > 0
    assert check["retrained_weights_sha256"] == check["cached_weights_sha256"]
    stamp = {p: p.stat().st_mtime_ns for p in work.rglob("*.pt")}
    again = run_dataset(cfg, spec, suite_run._Log(), 1)
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp and again["points"] == s["points"]
    (work / "logits.npz").write_bytes(b"PK\x03\x04 truncated")  # interrupted writes are redone
    (work / "bench_b64_run1.json").write_text('{"records": [')
    healed = run_dataset(cfg, spec, suite_run._Log(), 1)
    assert healed["points"] == s["points"] and set(healed["bench"]["64"]["records"]) == set(b64["records"])
    run2 = work / "bench_b64_run2.json"  # a bench timed under other session settings is timed again
    stale = json.loads(run2.read_text())
    stale["config"]["engine_settings"] = {**engine_settings("onnxruntime", "cpu"), "dispatch_revision": 1}
    run2.write_text(json.dumps(stale))
    run_dataset(cfg, spec, suite_run._Log(), 1)
    assert json.loads(run2.read_text())["config"]["engine_settings"] == engine_settings("onnxruntime", "cpu")
    run_dataset(cfg, spec, suite_run._Log(), 2)  # another training seed: same slices, its own checkpoints
    assert (seed_dir(cfg, spec, 2) / "ckpt" / "geep.pt").is_file()
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    # the per-row answers are kept next to the seed files: the summary is recomputed without the work folder
    assert all(answers_path(cfg.results, "toy", seed).is_file() for seed in (1, 2))
    agg = aggregate_dataset(cfg.results, tmp_path / "no-work-folder", "toy")
    assert agg["seeds"] == [1, 2] and agg["fastbert_depth_l_equals_full"] is True
    assert agg["depth_l_minus_full"]["seeds"] == 2 and set(agg["gaps"]["vs_fastbert"]) >= {"probe", "geep_entropy"}
    assert json.loads((cfg.results / "toy" / "summary.json").read_text())["seeds"] == [1, 2]
    pooled = agg["all_depth_l_set_check"]  # the per-set rule over both seeds' runs, noise from `static:L`
    assert pooled["seeds"] == 2 and len(pooled["speedup_runs"]) == 4 and len(pooled["noise_runs"]) == 4
    assert pooled["noise_contender"] == noise_knob(3) and pooled["noise"] == pytest.approx(
        max(c["noise"] for c in agg["all_depth_l_check"].values()))
    _page_renders_from_the_seed_files(cfg.results, cfg.work, tmp_path)


def _page_renders_from_the_seed_files(results: Path, work: Path, tmp_path: Path) -> None:
    """docs/results.md and the README block from a tiny run's JSON: the protocol before any table, the sets
    not measured yet and the missing seeds named, a plot per measured set."""
    from geep_deploy.reporting.blocks_suite import block_multi_dataset
    from geep_deploy.reporting.sources import Results
    from geep_deploy.suite.answers import answers_path
    from geep_deploy.suite.page import refresh_summaries, write_page

    assert refresh_summaries(results, work) == []
    (results / "toy" / "summary.json").unlink()
    kept = answers_path(results, "toy", 2)
    kept.rename(tmp_path / "answers_seed2.npz")  # neither the kept copy nor a work folder's: named, nothing lost
    assert refresh_summaries(results, tmp_path / "elsewhere")[0].startswith("toy: kept the committed summary")
    (tmp_path / "answers_seed2.npz").rename(kept)
    assert refresh_summaries(results, tmp_path / "elsewhere") == []
    checks = results.parent / "all_depth_l_overhead"  # bench/all_depth_l_overhead.py's JSON for seed 1
    checks.mkdir(exist_ok=True)
    (checks / "toy_seed1.json").write_text(json.dumps({
        "config": {"mean_tokens": 9.5, "runs": 2, "repeats": 3}, "machine": {"cpu": "test cpu"},
        "ratios": {"graphs_probe_over_graphs_full": 1.01},
        "check": {"probe0_speedup": 0.99, "probe0_speedup_runs": [0.98, 1.0], "noise": 0.02,
                  "noise_runs": [0.02, 0.01], "noise_contender": "full_reloaded", "within_noise": True},
        "check_same_engines": {"probe0_speedup": 0.99, "probe0_speedup_runs": [0.98, 1.0], "noise": 0.005,
                               "noise_runs": [0.005, 0.001], "noise_contender": "full_again",
                               "within_noise": False},
        "runs": [{"median_s": {"full": 1.0, "probe0": 1 / p, "full_reloaded": 1 / (1 + n), "full_again": 1 / (1 + a)}}
                 for p, n, a in ((0.98, 0.02, 0.005), (1.0, 0.01, 0.001))]}))
    text = write_page(results, tmp_path / "docs" / "results.md", planned=(1, 2, 3)).read_text()
    assert "loaded a second time as the identical contender" in text and "toy within the noise (0.990x, noise 2.0%) over its 1 seeds (1 of 1 seeds one by one)" in text
    assert ("| toy | 1 | 9.5 | 2 x 3 | 0.990x (0.980 / 1.000) | 2.0% (2.0 / 1.0) | within | 0.5% (0.5 / 0.1) | "
            "OUTSIDE (slower) | 1.010x | test cpu |") in text
    assert text.index("## The protocol") < text.index("\n|") and text.index("`probe`: the layer-1 probe") < text.index("\n|")
    assert "- toy: seeds 1, 2; missing 3" in text and "- sst2: not measured yet" in text
    assert "toy equal" in text and "## Training compute" in text and "## The consistency guarantee" in text
    cert = [line for line in text.splitlines() if line.startswith("| toy | 1 | 1% |")]
    assert cert and re.search(r"\| [0-9.]+ / [0-9.]+x / [0-9.]+x \|$", cert[0])  # seed 1's bench timed the knob
    assert (tmp_path / "docs" / "results" / "toy.png").is_file()
    block = block_multi_dataset(Results(results.parent))
    assert block[0].startswith("_Generated by `bench/render_docs.py` from `bench/results/") and "written by `test`" in block[0]
    assert any(line.startswith("| toy | 1, 2 |") for line in block)
    assert any(line.startswith("| sst2 | not measured yet |") for line in block)
    assert any("within the noise on 1 of 1 sets, and on 1 of 1 seeds one by one (`full` timed again on its own "
               "engines, identical by construction: 1 of 1 sets, 1 of 1 seeds); toy within the noise (0.990x, noise "
               "2.0%) over its 1 seeds (1 of 1 seeds one by one). Over the 1 seeds" in line for line in block)
    # the suite's own check (noise `static:L`) by the per-set rule, over both seeds of the tiny run
    assert re.search(r"toy (within|OUTSIDE) the noise[^;]*\([0-9.]+x, noise [0-9.]+%\) over its 2 seeds", text)
    assert re.search(r"`probe:0` is within the noise on [01] of 1 sets by the per-set rule \([0-2] of 2 seeds one "
                     r"by one\); over the 2 seeds its speed-up is [0-9.]+x \(95% interval", text)
    assert any("in the suite's own bench" in line and "of 1 sets by the per-set rule" in line for line in block)
    assert "| toy | 1 | 2 | 0.990x | 2.0% | within | 1.003x | within | 1 / 1 of 1 |" in text


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


def _pt(knob: str, acc: float, x: float) -> dict:
    return {"knob": knob, "accuracy": acc, "flops_speedup": x}


def test_interpolation_reads_every_method_off_its_tuned_frontier() -> None:
    from geep_deploy.suite.points import area_under, interpolate_at, tuned_frontier

    tune = [_pt("a", 0.90, 1.0), _pt("b", 0.85, 2.5), _pt("c", 0.70, 4.0), _pt("d", 0.80, 1.5)]  # d is dominated
    test = [_pt("a", 0.88, 1.0), _pt("b", 0.80, 2.0), _pt("c", 0.72, 4.2), _pt("d", 0.99, 1.4)]
    curve = tuned_frontier(tune, test)
    assert [c["knob"] for c in curve] == ["a", "b", "c"]  # chosen on the tuning rows: d's test score is unused
    at = interpolate_at(curve, 1.5)
    assert at["low"] == "a" and at["high"] == "b" and at["weight"] == pytest.approx(0.5)
    assert at["accuracy"] == pytest.approx(0.84)
    assert interpolate_at(curve, 2.0)["accuracy"] == pytest.approx(0.80)  # on a point: that point
    assert interpolate_at(curve, 5.0) is None and interpolate_at([], 2.0) is None
    assert interpolate_at(curve[1:], 1.2)["accuracy"] == pytest.approx(0.80)  # below the curve: its slowest point
    area = area_under(curve, 1.0, 3.0)
    assert 0.80 < area < 0.88 and area_under(curve, 1.0, 5.0) is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(1.0, 6.0)), min_size=1, max_size=12),
       st.floats(1.0, 6.0))
def test_interpolated_accuracy_lies_between_its_neighbours(pts: list[tuple[float, float]], x: float) -> None:
    from geep_deploy.suite.points import interpolate_at, tuned_frontier

    curve = [_pt(f"k{i}", a, s) for i, (a, s) in enumerate(pts)]
    fr = tuned_frontier(curve, curve)
    at = interpolate_at(fr, x)
    if at is None:
        assert x > max(c["flops_speedup"] for c in fr)
        return
    by = {c["knob"]: c["accuracy"] for c in fr}
    lo, hi = sorted((by[at["low"]], by[at["high"]]))
    assert lo - 1e-9 <= at["accuracy"] <= hi + 1e-9 and 0.0 <= at["weight"] <= 1.0


def test_interpolated_correct_averages_to_the_interpolated_accuracy() -> None:
    from geep_deploy.suite.points import interpolate_at, interpolated_correct

    labels = np.array([0, 1, 1, 0, 1])
    answers = {"a": np.array([0, 1, 1, 0, 0]), "b": np.array([1, 1, 0, 0, 0])}
    curve = [_pt("a", 0.8, 1.0), _pt("b", 0.4, 3.0)]
    at = interpolate_at(curve, 2.5)
    assert interpolated_correct(at, answers, labels).mean() == pytest.approx(at["accuracy"])


def test_seed_row_bootstrap_brackets_the_mean_and_sees_seed_spread() -> None:
    from geep_deploy.suite.points import seed_row_bootstrap

    rng = np.random.default_rng(0)
    same = [rng.integers(-1, 2, size=400).astype(float)] * 3
    m, lo, hi = seed_row_bootstrap(same, resamples=400)
    assert lo <= m <= hi
    # seeds that disagree widen the interval beyond what rows alone give
    spread = [same[0] + 0.3, same[0] - 0.3, same[0]]
    m2, lo2, hi2 = seed_row_bootstrap(spread, resamples=400)
    assert m2 == pytest.approx(m) and hi2 - lo2 > hi - lo
    assert seed_row_bootstrap([np.zeros(5)] * 2, resamples=50) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        seed_row_bootstrap([np.zeros(3), np.zeros(4)])


def test_verdicts_follow_the_interval() -> None:
    from geep_deploy.suite.aggregate import verdict

    assert verdict({"points": 1.0, "low": 0.2, "high": 1.8}) == "ahead"
    assert verdict({"points": 0.1, "low": -0.5, "high": 0.7}) == "level"
    assert verdict({"points": -1.0, "low": -1.5, "high": -0.1}) == "behind"
    assert verdict({"points": -0.4, "low": -0.9, "high": 0.1}, margin=1.0) == "met"
    assert verdict({"points": -0.4, "low": -1.2, "high": 0.1}, margin=1.0) == "missed" and verdict(None) == "-"


def test_fastbert_compute_is_full_plus_distillation() -> None:
    """bench/train_time.py scales FastBERT as published: `full`'s epochs (same repeats) plus its distillation;
    the page's table adds the suite's distillation seconds beside FastBERT's total."""
    import importlib.util

    from geep_deploy.reporting.suite_results import SetResults
    from geep_deploy.reporting.suite_tables import training_rows

    spec = importlib.util.spec_from_file_location("train_time", Path(__file__).parents[1] / "bench" / "train_time.py")
    tt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tt)
    per_epoch = {"full": {"full": [10.0, 12.0, 11.0]}, "fastbert": {"fastbert-2-distill": [3.0, 4.0, 5.0]},
                 "geep": {"geep": [20.0]}}
    fb = tt.budget_record(per_epoch, "fastbert", 4, 10)
    assert fb["budget_epochs"] == [4, 5] and list(fb["seconds_per_epoch"]) == [tt.TEACHER_STAGE, "fastbert-2-distill"]
    assert fb["seconds_at_budget"] == pytest.approx(11 * 4 + 4 * 5)
    assert tt.budget_record(per_epoch, "geep", 4, 10)["seconds_at_budget"] == pytest.approx(80)
    secs = {m: {"mean": v, "sd": 0.0, "n": 2} for m, v in (("full", 100.0), ("geep", 150.0), ("pabee", 120.0),
                                                           ("fastbert", 130.0))}
    seeds = {1: {"stage_seconds": {"fastbert": {"fastbert-2-distill": 28.0}}},
             2: {"stage_seconds": {"fastbert": {"fastbert-2-distill": 32.0}}}}
    row = training_rows([SetResults("a", "a", seeds, {"seeds": [1, 2], "train_seconds": secs})])[0]
    assert row == ["a", "1, 2", "100 ± 0", "150 ± 0", "120 ± 0", "130 ± 0 (distillation 30)", "1.15"]
    secs["fastbert"]["mean"] = 0.0  # a tiny run on a fast machine rounds to 0 s: no ratio, no crash
    assert training_rows([SetResults("a", "a", seeds, {"seeds": [1, 2], "train_seconds": secs})])[0][-1] == "–"


def test_the_page_names_the_machine_of_every_benched_seed() -> None:
    from types import SimpleNamespace

    from geep_deploy.reporting.results_page import machine_lines

    intel = {"cpu": "Intel Xeon", "cpu_count": 2, "torch": "2.13.0", "onnxruntime": "1.32.0"}
    a = SimpleNamespace(name="a", seeds={42: {"machine": intel}, 43: {}})
    assert machine_lines([a]) == ["Machine: Intel Xeon, 2 cores, no GPU; torch 2.13.0, onnxruntime 1.32.0."]
    b = SimpleNamespace(name="b", seeds={42: {"machine": {**intel, "cpu": "AMD EPYC"}}})
    lines = machine_lines([a, b])
    assert lines[0].startswith("Machines") and "- Intel Xeon" in lines[2] and lines[2].endswith(": a seed 42")
    assert lines[3].startswith("- AMD EPYC") and lines[3].endswith(": b seed 42")
    assert machine_lines([SimpleNamespace(name="c", seeds={44: {}})]) == ["Machine: not recorded yet."]


def test_seeds_that_lose_in_different_ways_are_a_loss_not_a_disagreement() -> None:
    """behind on one seed and unmatched on another: FastBERT wins on every seed, so the set is said to be lost;
    level on one seed and unmatched on another is a real disagreement, named with its verdicts."""
    from geep_deploy.reporting.suite_tables import goal_tally, losses

    gap = _gap(0.0, -1.0, 1.0)
    lost = _set("t", gap, gap, {"42": [_pair(2.0, "behind")], "43": [_pair(2.0, None)]})
    split = _set("w", gap, gap, {"42": [_pair(2.0, "level")], "43": [_pair(2.0, None)]})
    assert goal_tally([lost, split])["wall"] == {"behind/unmatched": ["t"], "mixed": ["w"]}
    said = losses([lost, split])
    assert any("no point as accurate, on t (on t the seeds differ only in which)" in x for x in said)
    assert any("disagree on the batch-64 wall-clock verdict on w (level, unmatched)" in x for x in said)
