"""Exit-sorted dispatch: group a batch by predicted depth, run each group densely, restore input order.

Pure NumPy functions with no model in sight, so they are property-tested on their own. Inside a depth group rows
are sorted by length, so cutting a group into ``max_group`` chunks pads each chunk only to its own longest row.
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


def plan_groups(depths: np.ndarray, lengths: np.ndarray, max_group: int | None = None) -> list[Group]:
    """Sort a batch by (depth, length, position) and cut it into groups of equal depth.

    Args:
        depths: (B,) predicted depths (integers >= 1).
        lengths: (B,) real token counts.
        max_group: largest group size; bigger depth groups are cut into consecutive chunks. Defaults to no limit.

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
        step = order.size if max_group is None else max_group
        return [Group(int(d[0]), order[i : i + step]) for i in range(0, order.size, step)]
    order = np.lexsort((n, d))  # stable: equal (depth, length) keep input order
    sd = d[order]
    cuts = np.flatnonzero(sd[1:] != sd[:-1]) + 1
    groups: list[Group] = []
    for chunk in np.split(order, cuts):
        depth = int(d[chunk[0]])
        step = chunk.size if max_group is None else max_group
        groups.extend(Group(depth, chunk[i : i + step]) for i in range(0, chunk.size, step))
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
