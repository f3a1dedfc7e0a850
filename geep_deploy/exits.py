"""Exit rules on per-depth logits: pure NumPy functions shared by evaluation, calibration and the runtime.

``logits`` is an (N, L, C) array: row i's logits at every depth 1..L. Depths returned are 1-based.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geep_deploy.config import BertShape
from geep_deploy.errors import ArtifactError, ConfigError, EngineRunError
from geep_deploy.flops import flops_speedup

EXIT_RULES = ("entropy", "consistency")

# Knob grids, one place: the eval report, the suite's curves, calibration and the bench all sweep these.
SPEED_GRID = tuple(round(s, 2) for s in np.arange(0.0, 0.951, 0.05))  # FastBERT: normalised-entropy threshold
PATIENCE_GRID = (1, 2, 3, 4, 5)  # PABEE: equal predictions in a row
# GEEP's predictor quantile: coarse below 0.85, fine above, where the cumulative exit mass nearly saturates.
QUANTILE_GRID = tuple(round(q, 2) for q in np.arange(0.05, 0.8501, 0.05)) + tuple(
    round(q, 2) for q in np.arange(0.86, 1.0001, 0.01))
# The bench times every point it runs, so its default sweeps are short subsets of the grids above.
BENCH_SWEEPS = {"fastbert": (0.1, 0.2, 0.3, 0.5), "pabee": (1, 2, 3)}


def check_logits(logits: np.ndarray, rows: int, num_labels: int, what: str) -> np.ndarray:
    """Refuse logits that would become a wrong answer: a width other than the label count, or NaN/inf values
    (an argmax over NaN is label 0 with probabilities ``[nan, nan]``)."""
    if logits.ndim != 2 or logits.shape != (rows, num_labels):
        raise ArtifactError(f"runtime | the {what} graph gives logits of shape {tuple(logits.shape)} for {rows} "
                            f"rows, but the export names {num_labels} labels. The export is inconsistent; "
                            "re-export it.")
    if not np.isfinite(logits).all():
        bad = int((~np.isfinite(logits)).any(axis=1).sum())
        raise EngineRunError(f"runtime | the {what} graph gave non-finite logits (NaN/inf) for {bad} of {rows} "
                             "rows; no label is returned for them. The weights are damaged or overflow at this "
                             "precision: try --precision fp32 or re-export.")
    return logits


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def normalized_entropy(logits: np.ndarray) -> np.ndarray:
    """H(p) / log(C) in [0, 1], FastBERT's uncertainty ("speed" threshold compares against it)."""
    p = softmax(np.asarray(logits, dtype=np.float64))
    h = -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=-1)
    return h / np.log(p.shape[-1])


def _first_true(flags: np.ndarray) -> np.ndarray:
    """1-based index of the first True along axis 1, L where none is True (the last depth always exits)."""
    flags = flags.copy()
    flags[:, -1] = True
    return flags.argmax(axis=1) + 1


def entropy_exit_depths(logits: np.ndarray, tau: float) -> np.ndarray:
    """First depth whose normalised entropy is below ``tau`` (FastBERT's exit; depth L otherwise)."""
    if not 0.0 <= tau <= 1.0:
        raise ConfigError(f"exit | entropy threshold must be in [0, 1], got {tau}.")
    return _first_true(normalized_entropy(logits) < tau)


def consistency_exit_depths(logits: np.ndarray) -> np.ndarray:
    """First depth from which the prediction equals depth L's at every deeper depth."""
    pred = logits.argmax(axis=-1)
    agree = pred == pred[:, -1:]
    # suffix-AND: agree from k to L
    suffix = np.flip(np.logical_and.accumulate(np.flip(agree, axis=1), axis=1), axis=1)
    return _first_true(suffix)


def patience_exit_depths(logits: np.ndarray, patience: int) -> np.ndarray:
    """PABEE: exit once ``patience`` consecutive depths after the first agree (depth L otherwise)."""
    if patience < 1:
        raise ConfigError(f"exit | patience must be >= 1, got {patience}.")
    pred = logits.argmax(axis=-1)
    n, L = pred.shape
    run = np.zeros(n, dtype=np.int64)
    out = np.full(n, L, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    for k in range(1, L):
        same = pred[:, k] == pred[:, k - 1]
        run = np.where(same, run + 1, 0)
        hit = (run >= patience) & ~done
        out[hit] = k + 1
        done |= hit
    return out


def exit_depths(logits: np.ndarray, rule: str, tau: float | None = None) -> np.ndarray:
    """Exit labels for calibration by rule name (``entropy`` needs ``tau``)."""
    if rule == "entropy":
        if tau is None:
            raise ConfigError("exit | the entropy rule needs a threshold tau.")
        return entropy_exit_depths(logits, tau)
    if rule == "consistency":
        return consistency_exit_depths(logits)
    raise ConfigError(f"exit | unknown rule {rule!r}. Expected one of {EXIT_RULES}.")


def predictions_at(logits: np.ndarray, depths: np.ndarray) -> np.ndarray:
    """Predicted class of each row at its own depth."""
    return logits[np.arange(len(depths)), np.asarray(depths) - 1].argmax(axis=-1)


def exit_figures(shape: BertShape, logits: np.ndarray, labels: np.ndarray, lengths: np.ndarray, depths: np.ndarray,
                 heads: np.ndarray | int = 1, answers: bool = False) -> dict[str, Any]:
    """Accuracy, FLOPs speed-up and mean depth of rows exiting at ``depths`` (``heads`` classifiers applied each).

    ``answers``: also the predicted class per row (``"answers"``, an array: not JSON), for per-row statistics."""
    pred = predictions_at(logits, depths)
    out: dict[str, Any] = {
        "accuracy": float((pred == labels).mean()),
        "flops_speedup": flops_speedup(shape, logits.shape[2], lengths, depths, heads),
        "mean_depth": float(np.mean(depths)),
    }
    if answers:
        out["answers"] = pred
    return out
