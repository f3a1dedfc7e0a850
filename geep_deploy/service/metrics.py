"""A minimal Prometheus registry (counters, gauges, histograms) rendered in the text exposition format 0.0.4.

Hand-written because the service needs five metric families and no client-library dependency; the format is
what ``prometheus_client`` writes, so any Prometheus server scrapes ``GET /metrics``. Thread-safe: pools finish in
worker threads.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

LabelKey = tuple[str, ...]


def _fmt(v: float) -> str:
    v = float(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> None:
        self.name, self.doc, self.labelnames = name, doc, tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, object]) -> LabelKey:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"metrics | {self.name} takes labels {self.labelnames}, got {sorted(labels)}.")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing count, per label set."""

    kind = "counter"

    def __init__(self, name: str, doc: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, doc, labelnames)
        self._values: dict[LabelKey, float] = {}

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: object) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labelnames, k)} {_fmt(v)}" for k, v in items]


class Gauge(_Metric):
    """A value read at scrape time from a callable (queue depth, pools in flight, readiness)."""

    kind = "gauge"

    def __init__(self, name: str, doc: str, read: Callable[[], float]) -> None:
        super().__init__(name, doc)
        self._read = read

    def samples(self) -> list[str]:
        return [f"{self.name} {_fmt(self._read())}"]


class Histogram(_Metric):
    """Cumulative buckets, sum and count, per label set."""

    kind = "histogram"

    def __init__(self, name: str, doc: str, buckets: Sequence[float], labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, doc, labelnames)
        if list(buckets) != sorted(set(buckets)):
            raise ValueError(f"metrics | {name} buckets must be strictly increasing, got {list(buckets)}.")
        self.buckets = tuple(float(b) for b in buckets) + (math.inf,)
        self._data: dict[LabelKey, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total = self._data.setdefault(key, ([0] * len(self.buckets), [0.0]))
            for i, b in enumerate(self.buckets):
                if value <= b:
                    counts[i] += 1
                    break
            total[0] += value

    def count_and_sum(self, **labels: object) -> tuple[int, float]:
        with self._lock:
            counts, total = self._data.get(self._key(labels), ([0], [0.0]))
            return sum(counts), total[0]

    def samples(self) -> list[str]:
        out = []
        with self._lock:
            items = sorted((k, (list(c), t[0])) for k, (c, t) in self._data.items())
        for key, (counts, total) in items:
            cum = 0
            for b, c in zip(self.buckets, counts):
                cum += c
                le = 'le="' + _fmt(b) + '"'
                out.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {cum}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_fmt(total)}")
            out.append(f"{self.name}_count{_labels(self.labelnames, key)} {cum}")
        return out


class Registry:
    """Metrics in registration order; ``render()`` is the body of ``GET /metrics``."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def add(self, metric: _Metric) -> _Metric:
        if any(m.name == metric.name for m in self._metrics):
            raise ValueError(f"metrics | {metric.name} is registered twice.")
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for m in self._metrics:
            lines += m.header() + m.samples()
        return "\n".join(lines) + "\n"


def parse_samples(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of a rendered exposition (for tests and the bench)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
