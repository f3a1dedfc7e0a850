"""Run one pool on a `GeepEngine`: one ``predict`` per kind of request, results scattered back per request.

Runs in a worker thread (``GeepEngine.predict`` is thread-safe and releases the GIL in the backend). If a pooled
call fails on its input, each of its requests is retried alone, so one bad request cannot fail the others.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from geep_deploy.errors import GeepError
from geep_deploy.service.pooling import PoolCall, Rows, plan_pool, scatter

Record = dict[str, Any]  # label, label_id, probabilities, depth


@dataclass
class PoolOutcome:
    """Per request: its records, or the error that answers it; plus the pool's timings and rows per depth."""

    results: list[list[Record] | BaseException]
    timings: dict[str, float] = field(default_factory=dict)
    depths: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


# Most rows per engine call inside a pool, on every device. The engine cuts each depth group into calls by padded
# work (`runtime.dispatch.length_cuts`), so a mixed pool no longer pays for its longest row in every call (the
# padding that made 64-row calls slower than 8-row ones on the CPU, `bench/results/pool_chunking_cpu.json`).
DEFAULT_ENGINE_BATCH = 64


class PoolRunner:
    """Classify pools with one engine; ``engine_batch`` caps rows per engine call inside ``predict``."""

    def __init__(self, engine: Any, engine_batch: int = DEFAULT_ENGINE_BATCH) -> None:
        self.engine, self.engine_batch = engine, engine_batch

    def _predict(self, call: PoolCall, timings: dict[str, float], depths: Counter[int]) -> list[Record]:
        res = self.engine.predict(list(call.texts), list(call.texts_b) if call.texts_b is not None else None,
                                  batch_size=self.engine_batch, **({"exact": True} if call.exact else {}))
        for k, v in res.timings.as_dict().items():
            if k.endswith("_s"):
                timings[k] = timings.get(k, 0.0) + v
        records = res.to_records()
        depths.update(int(r["depth"]) for r in records)
        return records

    def _call_rows(self, pool: Sequence[Rows], call: PoolCall, timings: dict[str, float],
                   depths: Counter[int]) -> list[Record | BaseException]:
        """Per-row records of one call; a failed call is retried per request, failed rows carry the error."""
        try:
            return list(self._predict(call, timings, depths))
        except GeepError as e:
            if len(call.spans) == 1:
                return [e] * len(call.texts)
        rows: list[Record | BaseException] = []
        for span in call.spans:  # isolate the bad request: each one alone
            try:
                rows += self._predict(plan_pool([pool[span.request]])[0], timings, depths)
            except GeepError as e:
                rows += [e] * (span.stop - span.start)
        return rows

    def __call__(self, pool: Sequence[Rows]) -> PoolOutcome:
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        depths: Counter[int] = Counter()
        calls = plan_pool(pool)
        per_request = scatter(calls, [self._call_rows(pool, c, timings, depths) for c in calls], len(pool))
        results: list[list[Record] | BaseException] = []
        for rows in per_request:
            err = next((r for r in rows if isinstance(r, BaseException)), None)
            results.append(err if err is not None else rows)  # type: ignore[arg-type]
        return PoolOutcome(results, timings, dict(depths), time.perf_counter() - t0)
