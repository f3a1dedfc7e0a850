"""Pure data shaping for request pooling: which requests form a pool, how a pool becomes `predict` calls, and
how each call's rows go back to the request they came from.

GEEP's dispatch only pays when many rows share one ``predict`` call (denser per-depth groups), so a service pools
concurrent requests. Requests are never split across pools, and a pool of plain texts and pairs becomes one call
per kind (``GeepEngine.predict`` takes pairs for the whole call or not at all). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Rows:
    """The texts of one request: first texts, and second texts when the request sends pairs."""

    texts: tuple[str, ...]
    texts_b: tuple[str, ...] | None = None
    exact: bool = False  # run at depth L (no early exit)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def is_pair(self) -> bool:
        return self.texts_b is not None


@dataclass(frozen=True)
class Span:
    """Rows ``start:stop`` of a call belong to request ``request`` of the pool."""

    request: int
    start: int
    stop: int


@dataclass(frozen=True)
class PoolCall:
    """One ``predict`` call of a pool: its texts (and pairs) and which rows belong to which request."""

    texts: tuple[str, ...]
    texts_b: tuple[str, ...] | None
    spans: tuple[Span, ...]
    exact: bool = False


def take_pool(pending_rows: Sequence[int], max_rows: int) -> int:
    """How many of the oldest pending requests form the next pool.

    Always at least one (a request larger than ``max_rows`` forms a pool alone, it is never split); then as many
    more, in arrival order, as keep the pool within ``max_rows`` rows. Returns 0 when nothing is pending.
    """
    if not pending_rows:
        return 0
    total, n = pending_rows[0], 1
    while n < len(pending_rows) and total + pending_rows[n] <= max_rows:
        total += pending_rows[n]
        n += 1
    return n


def plan_pool(pool: Sequence[Rows]) -> list[PoolCall]:
    """The ``predict`` calls that answer ``pool``: one per kind of its requests (plain texts or pairs, each with
    early exit or ``exact``)."""
    calls = []
    for pair, exact in ((False, False), (True, False), (False, True), (True, True)):
        texts: list[str] = []
        texts_b: list[str] = []
        spans = []
        for i, rows in enumerate(pool):
            if rows.is_pair != pair or rows.exact != exact:
                continue
            spans.append(Span(i, len(texts), len(texts) + len(rows)))
            texts.extend(rows.texts)
            if rows.texts_b is not None:
                texts_b.extend(rows.texts_b)
        if spans:
            calls.append(PoolCall(tuple(texts), tuple(texts_b) if pair else None, tuple(spans), exact))
    return calls


def scatter(calls: Sequence[PoolCall], outputs: Sequence[Sequence[T]], num_requests: int) -> list[list[T]]:
    """Per-row outputs of each call (in the call's row order) -> the rows of each request, in its own order."""
    per_request: list[list[T] | None] = [None] * num_requests
    for call, out in zip(calls, outputs, strict=True):
        if len(out) != len(call.texts):
            raise ValueError(f"pooling | a call of {len(call.texts)} rows returned {len(out)} results.")
        for span in call.spans:
            per_request[span.request] = list(out[span.start : span.stop])
    missing = [i for i, r in enumerate(per_request) if r is None]
    if missing:
        raise ValueError(f"pooling | requests {missing} are in no call of the plan.")
    return per_request  # type: ignore[return-value]
