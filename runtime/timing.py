"""Wall-clock accounting for the runtime and the benchmark: stage timers and robust summaries.

Stages are ``tokenize``, ``predict_exits``, ``model`` and ``total`` (the probe dispatch adds ``escalate``, the
share of ``model`` its escalation pass took); every time is ``time.perf_counter`` seconds taken after the backend
returned host arrays (so device work is included). Counters: ``escalated`` rows (probe dispatch).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

STAGES = ("tokenize", "predict_exits", "model", "total")
COUNTERS = ("escalated",)


@dataclass
class StageTimes:
    """Seconds spent per stage by one call (or summed over several); thread-safe to add into."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    calls: int = 0
    rows: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def count(self, name: str, n: int) -> None:
        """Add ``n`` to counter ``name`` (e.g. rows escalated)."""
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def merge(self, other: StageTimes) -> None:
        with self._lock:
            for k, v in other.seconds.items():
                self.seconds[k] = self.seconds.get(k, 0.0) + v
            for k, n in other.counts.items():
                self.counts[k] = self.counts.get(k, 0) + n
            self.calls += other.calls
            self.rows += other.rows

    def as_dict(self) -> dict[str, float]:
        """Seconds per stage, the counters, plus ``calls``, ``rows`` and ``ms_per_row`` (end to end)."""
        with self._lock:
            out: dict[str, float] = {f"{k}_s": round(v, 6) for k, v in self.seconds.items()}
            out.update(self.counts)
            out["calls"], out["rows"] = self.calls, self.rows
            out["ms_per_row"] = round(1e3 * self.seconds["total"] / self.rows, 4) if self.rows else 0.0
        return out


def percentiles(values: list[float] | np.ndarray, qs: tuple[float, ...] = (50, 95)) -> dict[str, float]:
    """``{"p50": ..., "p95": ...}`` of ``values`` (empty -> zeros)."""
    v = np.asarray(values, dtype=np.float64)
    return {f"p{int(q)}": float(np.percentile(v, q)) if v.size else 0.0 for q in qs}


def median(values: list[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64))) if len(values) else 0.0
