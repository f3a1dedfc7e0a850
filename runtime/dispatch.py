"""Exit-sorted dispatch: group a batch by predicted depth, run each group densely, restore input order.

Pure NumPy functions with no model in sight, so they are property-tested on their own. Inside a depth group rows
are sorted by length, so cutting a group into ``max_group`` chunks pads each chunk only to its own longest row.
With a ``call_cost`` the cuts are chosen by ``length_cuts`` instead: the fewest padded tokens plus ``call_cost``
tokens per engine call, so a call that mixes short and long rows is split where that pays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geep_deploy.errors import ConfigError


@dataclass(frozen=True)
class Group:
    """Rows of one depth: ``indices`` into the original batch, sorted by length (stable)."""

    depth: int
    indices: np.ndarray


DISPATCH_REVISION = 2
"""What a timing of the dispatch path means. Bumped when a change makes the same calls faster or slower without
changing a graph, so a bench cached before it is re-timed (``bench.harness.engine_settings``). 1: every
continuation group gathered into a zeroed copy, every layer-wise layer's remaining rows copied. 2: a continuation
group that is one whole prefix chunk runs on it as it is, and a layer-wise layer no row leaves copies nothing."""

CALL_COST_TOKENS: dict[str, float] = {"cpu": 16.0}
"""Measured fixed cost of one engine call, in padded tokens, per device (`bench/pool_chunking.py`); a device
without an entry keeps fixed ``max_group`` chunks (CUDA: not measured yet)."""


def default_call_cost(device: str) -> float | None:
    """The ``call_cost`` ``GeepEngine.load`` uses on ``device`` by default (None: fixed chunks)."""
    return CALL_COST_TOKENS.get(device)


def parse_call_cost(value: float | str | None) -> float | str | None:
    """A ``call_cost`` from a flag, a config or a caller: ``"auto"`` (the device's default), ``"off"``/None (fixed
    chunks), or a number of tokens >= 0."""
    if value is None or str(value).lower() in ("off", "none"):
        return None
    if value == "auto":
        return value
    try:
        cost = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"dispatch | call cost {value!r}: expected a number of tokens >= 0, 'auto' or "
                          "'off'.") from None
    if not cost >= 0:
        raise ConfigError(f"dispatch | call cost must be >= 0 tokens, got {value!r}.")
    return cost


def length_cuts(sorted_lengths: np.ndarray, max_rows: int, call_cost: float) -> list[int]:
    """Where to cut a run of rows sorted by length into engine calls, at least padded work.

    A call over rows ``i..j`` pads every row to row ``j``'s length, so it costs ``(j - i + 1) * length[j]`` tokens
    plus ``call_cost`` tokens of fixed overhead (launches, the runtime's per-call work). Dynamic programming over
    the cut points gives the exact minimum with at most ``max_rows`` rows per call. On the CPU a call's time is
    close to linear in its padded tokens with a small fixed part, so padding is the cost that counts there
    (`bench/results/pool_chunking_cpu.json` compares the cuts with fixed chunks).

    Args:
        sorted_lengths: (n,) non-decreasing token counts.
        max_rows: most rows per call (>= 1).
        call_cost: fixed cost of one call, in tokens (>= 0).

    Returns:
        The end index (exclusive) of every call, increasing, the last being n; empty when n = 0.

    Example:
        >>> length_cuts(np.array([3, 3, 4, 30, 31]), max_rows=64, call_cost=8)
        [3, 5]
    """
    n = int(np.asarray(sorted_lengths).size)
    lengths = np.asarray(sorted_lengths, dtype=np.float64)
    if n and np.any(np.diff(lengths) < 0):
        raise ConfigError("dispatch | length_cuts needs lengths sorted in increasing order.")
    if max_rows < 1 or call_cost < 0:
        raise ConfigError(f"dispatch | max_rows must be >= 1 and call_cost >= 0, got {max_rows} and {call_cost}.")
    best = np.zeros(n + 1)
    start = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):  # best[end]: least cost of rows 0..end-1; the last call is start..end-1
        lo = max(0, end - max_rows)
        cand = best[lo:end] + (end - np.arange(lo, end)) * lengths[end - 1] + call_cost
        k = int(np.argmin(cand))
        best[end], start[end] = cand[k], lo + k
    cuts, end = [], n
    while end > 0:
        cuts.append(end)
        end = int(start[end])
    return cuts[::-1]


def _chunks(order: np.ndarray, lengths: np.ndarray, max_group: int | None, call_cost: float | None) -> list[np.ndarray]:
    """``order`` (rows sorted by length) cut into engine calls: fixed ``max_group`` chunks, or ``length_cuts``."""
    if call_cost is None:
        step = order.size if max_group is None else max_group
        return [order[i : i + step] for i in range(0, order.size, step)]
    cuts = length_cuts(lengths[order], max_group or order.size, call_cost)
    return [order[a:b] for a, b in zip([0, *cuts[:-1]], cuts)]


def plan_groups(depths: np.ndarray, lengths: np.ndarray, max_group: int | None = None,
                call_cost: float | None = None) -> list[Group]:
    """Sort a batch by (depth, length, position) and cut it into groups of equal depth.

    Args:
        depths: (B,) predicted depths (integers >= 1).
        lengths: (B,) real token counts.
        max_group: largest group size; bigger depth groups are cut into consecutive chunks. Defaults to no limit.
        call_cost: when given, chunks are cut by ``length_cuts`` with this per-call cost in tokens (fewer padded
            tokens) instead of every ``max_group`` rows.

    Returns:
        Groups in increasing depth; together their indices are a permutation of 0..B-1.

    Raises:
        ConfigError: shapes differ, depths below 1, or ``max_group`` < 1.

    Example:
        >>> [(g.depth, g.indices.tolist()) for g in plan_groups(np.array([2, 1, 2]), np.array([9, 5, 3]))]
        [(1, [1]), (2, [2, 0])]
    """
    d = np.asarray(depths)
    n = np.asarray(lengths)
    if d.ndim != 1 or n.shape != d.shape:
        raise ConfigError(f"dispatch | depths {d.shape} and lengths {n.shape} must be 1-D of equal length.")
    if d.size and (d.dtype.kind not in "iu" or d.min() < 1):
        raise ConfigError(f"dispatch | depths must be integers >= 1, got dtype {d.dtype} min {d.min()}.")
    if max_group is not None and max_group < 1:
        raise ConfigError(f"dispatch | max_group must be >= 1, got {max_group}.")
    if d.size == 0:
        return []
    if d.size == 1 or (d == d[0]).all():  # common fast path: one depth (always at batch 1)
        order = np.argsort(n, kind="stable")
        return [Group(int(d[0]), c) for c in _chunks(order, n, max_group, call_cost)]
    order = np.lexsort((n, d))  # stable: equal (depth, length) keep input order
    sd = d[order]
    cuts = np.flatnonzero(sd[1:] != sd[:-1]) + 1
    groups: list[Group] = []
    for chunk in np.split(order, cuts):
        groups.extend(Group(int(d[chunk[0]]), c) for c in _chunks(chunk, n, max_group, call_cost))
    return groups


def restore_order(groups: list[Group], outputs: list[np.ndarray]) -> np.ndarray:
    """Scatter per-group outputs back to input order.

    Args:
        groups: from ``plan_groups``.
        outputs: ``outputs[i]`` has one row per ``groups[i].indices`` (any trailing shape, same for all).

    Returns:
        (B, ...) array, row j being the output for input j.

    Raises:
        ConfigError: group/output counts or row counts differ, or the groups do not cover 0..B-1 exactly once.
    """
    if len(groups) != len(outputs):
        raise ConfigError(f"dispatch | got {len(groups)} groups but {len(outputs)} outputs.")
    if not groups:
        raise ConfigError("dispatch | nothing to restore: no groups.")
    total = sum(g.indices.size for g in groups)
    first = np.asarray(outputs[0])
    out = np.empty((total, *first.shape[1:]), dtype=first.dtype)
    seen = np.zeros(total, dtype=bool)
    for i, (g, o) in enumerate(zip(groups, outputs)):
        o = np.asarray(o)
        if o.shape[:1] != g.indices.shape or o.shape[1:] != first.shape[1:]:
            raise ConfigError(
                f"dispatch | output {i} has shape {o.shape}; expected ({g.indices.size}, *{first.shape[1:]})."
            )
        if g.indices.size and (g.indices.min() < 0 or g.indices.max() >= total or seen[g.indices].any()):
            raise ConfigError(f"dispatch | group {i} indices repeat or fall outside 0..{total - 1}.")
        seen[g.indices] = True
        out[g.indices] = o
    if not seen.all():
        raise ConfigError(f"dispatch | group indices repeat: {int((~seen).sum())} of 0..{total - 1} are not covered.")
    return out


def depth_map(loaded: Sequence[int], num_layers: int) -> np.ndarray:
    """``map[d]`` = the smallest loaded depth >= d (never a shallower, less accurate one); 0 where none is."""
    avail = np.array(sorted(loaded), dtype=np.int64)
    idx = np.searchsorted(avail, np.arange(num_layers + 1))
    return np.where(idx < len(avail), avail[np.minimum(idx, len(avail) - 1)], 0).astype(np.int64)
