"""FLOPs of a sample from its depth and real length (multiply-add = 2 FLOPs).

Counts embeddings (sum and LayerNorm), per layer the Q/K/V/output projections, attention at the row's real length
``n`` (scores and context), the feed-forward block, and the exit head. FLOPs ignore padding by design: they are the
ideal the wall-clock speed-up is compared with.
"""

from __future__ import annotations

import numpy as np

from geep_deploy.config import BertShape


def layer_flops(s: BertShape, n: np.ndarray | int) -> np.ndarray:
    """FLOPs of one Transformer layer on ``n`` real tokens."""
    n = np.asarray(n, dtype=np.float64)
    h, i = s.hidden_size, s.intermediate_size
    proj = 4 * 2 * n * h * h
    attn = 2 * 2 * n * n * h + 5 * s.num_attention_heads * n * n
    ffn = 2 * 2 * n * h * i + 8 * n * i
    norms = 2 * 5 * n * h
    return proj + attn + ffn + norms


def head_flops(s: BertShape, num_labels: int) -> float:
    return float(2 * s.hidden_size * s.hidden_size + 2 * s.hidden_size * num_labels)


def sample_flops(
    s: BertShape, num_labels: int, lengths: np.ndarray | int, depths: np.ndarray | int, heads: np.ndarray | int = 1
) -> np.ndarray:
    """FLOPs per sample run to ``depths`` layers on ``lengths`` tokens, applying ``heads`` exit heads.

    ``heads`` is 1 for GEEP and static depths (one classifier per sample), and the depth itself for FastBERT and
    PABEE, which apply every layer's classifier on the way.
    """
    n = np.asarray(lengths, dtype=np.float64)
    emb = 2 * 5 * n * s.hidden_size
    return emb + np.asarray(depths) * layer_flops(s, n) + np.asarray(heads) * head_flops(s, num_labels)


def flops_speedup(
    s: BertShape, num_labels: int, lengths: np.ndarray, depths: np.ndarray, heads: np.ndarray | int = 1
) -> float:
    """Total FLOPs of the full model (depth L, one head) over those of the method, on the same samples."""
    full = sample_flops(s, num_labels, lengths, s.num_hidden_layers).sum()
    return float(full / sample_flops(s, num_labels, lengths, depths, heads).sum())
