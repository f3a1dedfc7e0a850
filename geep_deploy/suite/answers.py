"""Every knob's per-row answers on one seed's reported test rows, kept next to that seed's summary.

The intervals of ``aggregate`` resample test rows, so they need each knob's answer per row, not only its
accuracy. The answers live in ``<results>/<set>/answers_seed<S>.npz``, committed with ``seed<S>.json`` and written
by the same run, so the summary across seeds can be recomputed from the committed files alone (the work folder's
checkpoints and exports are a cache that a fresh checkout does not have).

Earlier runs kept them only in the work folder (``<work>/<set>/seed<S>/answers.npz``); `load_answers` still reads
that copy, checks it against the seed's summary, and records it next to the summary.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.atomic import atomic_path
from geep_deploy.errors import ConfigError

LABELS = "labels"
"""The key of the gold labels in an answers file; every other key is a knob."""


def answers_path(results: Path, dataset: str, seed: int) -> Path:
    """Where a seed's answers are kept: next to its ``seed<S>.json``."""
    return Path(results) / dataset / f"answers_seed{seed}.npz"


def legacy_answers_path(work: Path, dataset: str, seed: int) -> Path:
    """Where runs before ``answers_path`` kept them: the seed's work folder."""
    return Path(work) / dataset / f"seed{seed}" / "answers.npz"


def compact(values: np.ndarray) -> np.ndarray:
    """Class ids in the smallest integer type that holds them (answers are ids >= 0; -1 would fit a signed one)."""
    v = np.asarray(values)
    if v.dtype.kind not in "iu":
        raise ConfigError(f"suite | answers must be integer class ids, got dtype {v.dtype}.")
    if v.size == 0:
        return v.astype(np.uint8)
    return v.astype(np.result_type(np.min_scalar_type(int(v.min())), np.min_scalar_type(int(v.max()))))


def save_answers(path: Path, labels: np.ndarray, answers: dict[str, np.ndarray]) -> Path:
    """Write ``labels`` and every knob's answers (one per label) compressed, then rename into place."""
    n = len(labels)
    if LABELS in answers:
        raise ConfigError(f"suite | {LABELS!r} is the gold labels' key in an answers file, not a knob name.")
    for knob, a in answers.items():
        if np.shape(a) != (n,):
            raise ConfigError(f"suite | answers of knob {knob!r}: expected {n} answers (one per reported row), "
                              f"got shape {np.shape(a)}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **{LABELS: compact(labels)}, **{k: compact(v) for k, v in answers.items()})
    return path


def read_answers(path: Path) -> dict[str, np.ndarray]:
    """Every array of an answers file as int64, ``labels`` included."""
    try:
        with np.load(path) as z:
            out = {k: z[k].astype(np.int64) for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(f"suite | {path} is not a readable answers file ({e}); rerun the suite for that seed.") from e
    if LABELS not in out:
        raise ConfigError(f"suite | {path} has no {LABELS!r} array; rerun the suite for that seed.")
    return out


def check_answers(answers: dict[str, np.ndarray], summary: dict[str, Any], source: Path) -> None:
    """The answers belong to ``summary``: every knob of its curves is there, and its accuracy on these rows is the
    one the summary states. Raises ConfigError naming the first knob that differs."""
    labels = answers[LABELS]
    for method, curve in summary["curves"].items():
        for point in curve:
            knob = point["knob"]
            got = answers.get(knob)
            if got is None or got.shape != labels.shape:
                raise ConfigError(f"suite | {source} has no answers for {method} knob {knob!r} on the "
                                  f"{len(labels)} reported rows: it is not from the run that wrote seed "
                                  f"{summary['seed']}'s summary. Rerun the suite for that seed.")
            acc = float((got == labels).mean())
            if abs(acc - float(point["accuracy"])) > 1e-9:
                raise ConfigError(f"suite | {source}: {method} knob {knob!r} is {100 * acc:.2f}% right on these "
                                  f"rows, but seed {summary['seed']}'s summary says {100 * point['accuracy']:.2f}%: "
                                  "the answers are from another run. Rerun the suite for that seed.")


def load_answers(results: Path, work: Path, dataset: str, seed: int, summary: dict[str, Any]) -> dict[str, np.ndarray]:
    """A seed's answers, checked against its summary (`check_answers`).

    Read from ``answers_path``; where only a work folder's copy from an earlier run exists, that copy is checked
    and then recorded at ``answers_path``, so the next checkout has it.

    Raises:
        ConfigError: neither file exists, a file is unreadable, or the answers are not the summary's.
    """
    kept, legacy = answers_path(results, dataset, seed), legacy_answers_path(work, dataset, seed)
    source = kept if kept.is_file() else legacy if legacy.is_file() else None
    if source is None:
        raise ConfigError(f"suite | no answers for {dataset} seed {seed}: neither {kept} nor {legacy} exists. "
                          f"Rerun the suite for {dataset} seed {seed} (it writes every knob's answers).")
    answers = read_answers(source)
    check_answers(answers, summary, source)
    if source == legacy:
        save_answers(kept, answers[LABELS], {k: v for k, v in answers.items() if k != LABELS})
    return answers
