"""Exit-table keys: 64-bit hashes of token n-grams, written once in NumPy uint64 arithmetic.

Specification (the CUDA twin in ``runtime/kernels/source.py`` is generated from the constants below):

- ``mix64(z)`` is the splitmix64 finaliser: ``z ^= z >> 30; z *= M1; z ^= z >> 27; z *= M2; z ^= z >> 31``
  (all arithmetic modulo 2**64).
- The key of the n-gram ``(t_1, ..., t_n)`` under ``seed`` is::

      h = mix64(seed + n * GOLDEN)
      for t in (t_1, ..., t_n):  h = mix64(h ^ (t + GOLDEN))
      key = h if h != EMPTY_KEY else EMPTY_KEY - 1

  so the empty-slot marker ``EMPTY_KEY = 2**64 - 1`` is never produced (one hash value is folded onto its
  neighbour). The n-gram order is part of the key: a unigram and a bigram never share a key by construction.
- Which n-grams: every position ``i`` of a row whose tokens ``i .. i+n-1`` are all real (attention mask 1) and
  not special (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[UNK]``, ``[MASK]``: ids stored with the table). An n-gram never
  spans a special token, so the two segments of a pair (split by ``[SEP]``) never form a bigram.
- Padded layout: ``padded_keys`` returns a ``(B, S, len(orders))`` uint64 array, ``[b, i, j]`` being the key of
  the ``orders[j]``-gram starting at position ``i`` of row ``b``, and ``EMPTY_KEY`` where there is none.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from geep_deploy.errors import ConfigError

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
M1 = 0xBF58476D1CE4E5B9
M2 = 0x94D049BB133111EB
EMPTY_KEY = MASK64
DEFAULT_SEED = 0x6765657021  # "geep!"
DEFAULT_ORDERS = (1, 2)
MAX_ORDER = 4

_U30, _U27, _U31 = np.uint64(30), np.uint64(27), np.uint64(31)
_M1, _M2, _GOLDEN = np.uint64(M1), np.uint64(M2), np.uint64(GOLDEN)
_EMPTY = np.uint64(EMPTY_KEY)


def mix64_int(z: int) -> int:
    """The splitmix64 finaliser on a Python int: the reference the array versions are tested against."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * M1) & MASK64
    z = ((z ^ (z >> 27)) * M2) & MASK64
    return z ^ (z >> 31)


def ngram_key_int(tokens: Sequence[int], seed: int = DEFAULT_SEED) -> int:
    """Key of one n-gram, in plain Python ints (slow; for tests and documentation)."""
    h = mix64_int(seed + len(tokens) * GOLDEN)
    for t in tokens:
        h = mix64_int(h ^ ((int(t) + GOLDEN) & MASK64))
    return h if h != EMPTY_KEY else EMPTY_KEY - 1


@functools.lru_cache(maxsize=64)
def initial_state(order: int, seed: int) -> int:
    """``mix64(seed + order * GOLDEN)``: the hash state before the first token of an ``order``-gram."""
    return mix64_int(seed + order * GOLDEN)


def mix64(z: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser on a uint64 array (wraps modulo 2**64, like the CUDA version)."""
    z = z ^ (z >> _U30)
    z *= _M1
    z ^= z >> _U27
    z *= _M2
    z ^= z >> _U31
    return z


def check_orders(orders: Sequence[int]) -> tuple[int, ...]:
    """Validate n-gram orders (distinct, 1..MAX_ORDER) and return them sorted."""
    out = tuple(sorted({int(o) for o in orders}))
    if not out or out[0] < 1 or out[-1] > MAX_ORDER or len(out) != len(orders):
        raise ConfigError(
            f"exit table | n-gram orders must be distinct integers in 1..{MAX_ORDER}, got {tuple(orders)}. "
            "Try (1, 2): unigrams and bigrams."
        )
    return out


@functools.lru_cache(maxsize=64)
def _special_lut(special_ids: tuple[int, ...]) -> np.ndarray:
    """Bool lookup table over ids 0..max(special)+1; the last entry (every larger id) is False."""
    lut = np.zeros(max(special_ids, default=-1) + 2, dtype=bool)
    lut[list(special_ids)] = True
    return lut


def real_token_mask(input_ids: np.ndarray, attention_mask: np.ndarray | None, special_ids: Sequence[int]) -> np.ndarray:
    """(B, S) bool: positions holding a real, non-special token."""
    lut = _special_lut(tuple(sorted(int(i) for i in special_ids)))
    special = lut[np.minimum(input_ids, len(lut) - 1)]
    if attention_mask is None:
        return ~special
    return (attention_mask != 0) & ~special


@functools.lru_cache(maxsize=64)
def _initial_states(orders: tuple[int, ...], seed: int) -> np.ndarray:
    return np.array([initial_state(n, seed) for n in orders], dtype=np.uint64)[:, None, None]


def padded_keys(
    input_ids: np.ndarray,
    attention_mask: np.ndarray | None,
    special_ids: Sequence[int],
    orders: Sequence[int] = DEFAULT_ORDERS,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """Keys of every n-gram of a padded batch.

    Args:
        input_ids: (B, S) non-negative integer token ids.
        attention_mask: (B, S) 0/1 mask of real tokens, or None when every position is real.
        special_ids: token ids that never form keys.
        orders: n-gram orders, e.g. (1, 2).
        seed: hash seed stored with the table.

    Returns:
        (B, S, len(orders)) uint64 keys, ``EMPTY_KEY`` where no n-gram starts.
    """
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ConfigError(f"exit table | input_ids must be a (batch, seq) array, got shape {ids.shape}.")
    valid = real_token_mask(ids, None if attention_mask is None else np.asarray(attention_mask), special_ids)
    tok = ids.astype(np.uint64)
    tok += _GOLDEN  # (t + GOLDEN) mod 2**64, shared by every order
    b, s = ids.shape
    orders = tuple(orders)
    first = mix64(_initial_states(orders, int(seed)) ^ tok[None])  # first token of every order, in one pass
    out = np.empty((b, s, len(orders)), dtype=np.uint64)
    for j, n in enumerate(orders):
        width = max(s - n + 1, 0)
        h, ok = first[j, :, :width], valid[:, :width]
        if n > 1 and width:
            ok = ok.copy()
            for off in range(1, n):
                ok &= valid[:, off : off + width]
                h = mix64(h ^ tok[:, off : off + width])
        # np.minimum folds EMPTY_KEY (the largest uint64) onto EMPTY_KEY - 1 and leaves every other value alone
        out[:, :width, j] = np.where(ok, np.minimum(h, _EMPTY - np.uint64(1)), _EMPTY)
        out[:, width:, j] = _EMPTY
    return out


def pad_rows(rows: Sequence[np.ndarray], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stack unpadded rows into (B, S) ids and a 0/1 mask, without a Python loop over tokens."""
    if len(rows) == 0:
        raise ConfigError("exit table | got an empty list of rows; nothing to hash.")
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    width = max(int(lengths.max()), 1)
    mask = np.arange(width)[None, :] < lengths[:, None]
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    if lengths.sum():
        ids[mask] = np.concatenate([np.asarray(r, dtype=np.int64).ravel() for r in rows])
    return ids, mask


def row_keys(
    rows: Sequence[np.ndarray],
    special_ids: Sequence[int],
    orders: Sequence[int] = DEFAULT_ORDERS,
    seed: int = DEFAULT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat keys of unpadded rows and the row each key came from.

    Returns:
        (keys, row_index): uint64 keys (no ``EMPTY_KEY``) and int64 row indices, in row order.
    """
    ids, mask = pad_rows(rows)
    keys = padded_keys(ids, mask, special_ids, orders, seed)
    present = keys != _EMPTY
    row_index = np.broadcast_to(np.arange(len(rows))[:, None, None], keys.shape)[present]
    return keys[present], row_index.astype(np.int64)
