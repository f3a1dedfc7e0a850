"""Per-row answers kept next to each seed's summary (`geep_deploy.suite.answers`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geep_deploy.errors import ConfigError
from geep_deploy.suite.answers import (
    LABELS,
    answers_path,
    compact,
    legacy_answers_path,
    load_answers,
    read_answers,
    save_answers,
)


def _summary(seed: int, labels: np.ndarray, answers: dict[str, np.ndarray]) -> dict:
    curve = [{"knob": k, "accuracy": float((a == labels).mean())} for k, a in answers.items()]
    return {"seed": seed, "curves": {"m": curve}}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40_000), min_size=1, max_size=50))
def test_compact_keeps_every_class_id(ids: list[int]) -> None:
    a = np.array(ids, dtype=np.int64)
    c = compact(a)
    assert np.array_equal(c.astype(np.int64), a) and c.itemsize <= a.itemsize
    assert compact(np.array([0, 3])).dtype == np.uint8


def test_round_trip_and_checked_against_the_summary(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 30)
    answers = {"full": labels.copy(), "probe:0.1": rng.integers(0, 3, 30)}
    save_answers(answers_path(tmp_path, "toy", 7), labels, answers)
    got = load_answers(tmp_path, tmp_path / "work", "toy", 7, _summary(7, labels, answers))
    assert np.array_equal(got[LABELS], labels) and all(np.array_equal(got[k], v) for k, v in answers.items())
    other = _summary(7, labels, {**answers, "probe:0.1": (answers["probe:0.1"] + 1) % 3})
    with pytest.raises(ConfigError, match="probe:0.1.*from another run"):
        load_answers(tmp_path, tmp_path / "work", "toy", 7, other)
    with pytest.raises(ConfigError, match="no answers for m knob 'static:2'"):
        load_answers(tmp_path, tmp_path / "work", "toy", 7,
                     {"seed": 7, "curves": {"m": [{"knob": "static:2", "accuracy": 0.5}]}})


def test_a_work_folder_copy_is_checked_then_recorded(tmp_path: Path) -> None:
    labels = np.array([0, 1, 1, 0])
    answers = {"full": np.array([0, 1, 0, 0])}
    legacy = legacy_answers_path(tmp_path / "work", "toy", 3)
    legacy.parent.mkdir(parents=True)
    np.savez(legacy, labels=labels, **answers)
    kept = answers_path(tmp_path / "results", "toy", 3)
    load_answers(tmp_path / "results", tmp_path / "work", "toy", 3, _summary(3, labels, answers))
    assert kept.is_file() and np.array_equal(read_answers(kept)["full"], answers["full"])
    wrong = {"seed": 4, "curves": {"m": [{"knob": "full", "accuracy": 1.0}]}}
    other = legacy_answers_path(tmp_path / "work", "toy", 4)
    other.parent.mkdir(parents=True)
    np.savez(other, labels=labels, **answers)
    with pytest.raises(ConfigError, match="75.00% right on these rows, but seed 4's summary says 100.00%"):
        load_answers(tmp_path / "results", tmp_path / "work", "toy", 4, wrong)
    assert not answers_path(tmp_path / "results", "toy", 4).exists()  # nothing recorded from a mismatched run


def test_missing_damaged_and_misshapen_answers_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no answers for toy seed 5.*Rerun the suite"):
        load_answers(tmp_path, tmp_path, "toy", 5, {"seed": 5, "curves": {}})
    bad = answers_path(tmp_path, "toy", 6)
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ConfigError, match="not a readable answers file"):
        read_answers(bad)
    with pytest.raises(ConfigError, match="expected 3 answers"):
        save_answers(tmp_path / "x.npz", np.array([0, 1, 2]), {"full": np.array([0, 1])})
    with pytest.raises(ConfigError, match="integer class ids"):
        compact(np.array([0.5]))


def test_a_knob_named_like_the_labels_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gold labels' key"):
        save_answers(tmp_path / "x.npz", np.array([0, 1]), {LABELS: np.array([0, 1])})
    assert not (tmp_path / "x.npz").exists()
