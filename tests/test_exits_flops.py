"""Exit rules on crafted logits, and the FLOPs model."""

from __future__ import annotations

import numpy as np
import pytest
from models import TINY_SHAPE

from geep_deploy.errors import ConfigError
from geep_deploy.exits import (
    consistency_exit_depths,
    entropy_exit_depths,
    normalized_entropy,
    patience_exit_depths,
    predictions_at,
)
from geep_deploy.flops import flops_speedup, sample_flops

CONF = [5.0, -5.0]  # confident class 0
UNSURE = [0.0, 0.0]
CONF1 = [-5.0, 5.0]


def test_normalized_entropy_bounds() -> None:
    assert normalized_entropy(np.array([UNSURE]))[0] == pytest.approx(1.0)
    assert normalized_entropy(np.array([CONF]))[0] < 0.01


def test_entropy_exit() -> None:
    logits = np.array([[UNSURE, CONF, CONF], [UNSURE, UNSURE, UNSURE], [CONF, UNSURE, UNSURE]])
    assert entropy_exit_depths(logits, 0.5).tolist() == [2, 3, 1]
    assert entropy_exit_depths(logits, 0.0).tolist() == [3, 3, 3]
    with pytest.raises(ConfigError):
        entropy_exit_depths(logits, 1.5)


def test_consistency_and_patience() -> None:
    logits = np.array([
        [CONF1, CONF, CONF, CONF],  # agrees with depth 4 from depth 2
        [CONF, CONF1, CONF, CONF1],  # only depth 4
        [CONF, CONF, CONF, CONF],
    ])
    assert consistency_exit_depths(logits).tolist() == [2, 4, 1]
    assert patience_exit_depths(logits, 1).tolist() == [3, 4, 2]
    assert patience_exit_depths(logits, 2).tolist() == [4, 4, 3]
    assert predictions_at(logits, np.array([1, 2, 4])).tolist() == [1, 1, 0]


def test_flops() -> None:
    lengths = np.array([10, 20, 40])
    L = TINY_SHAPE.num_hidden_layers
    assert flops_speedup(TINY_SHAPE, 2, lengths, np.full(3, L)) == pytest.approx(1.0)
    s1 = flops_speedup(TINY_SHAPE, 2, lengths, np.full(3, 1))
    assert 1.5 < s1 < L
    assert (np.diff(sample_flops(TINY_SHAPE, 2, 16, np.arange(1, L + 1))) > 0).all()
    # applying every layer's head (FastBERT) costs more than one head
    assert flops_speedup(TINY_SHAPE, 2, lengths, np.full(3, 2), heads=2) < flops_speedup(
        TINY_SHAPE, 2, lengths, np.full(3, 2))
