"""The service's metric families: what an operator needs to see whether pooling works and where time goes.

Requests and errors by route and status; pooled batch size (rows and requests per ``predict``); latency per stage
(queue wait, tokenize, exit prediction, model, whole pool, whole request); rows answered per depth; queue depth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from geep_deploy.service.metrics import Counter, Gauge, Histogram, Registry

POOL_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# GeepEngine's stage names (PredictResult.timings) -> the metric's stage label
ENGINE_STAGES = {"tokenize_s": "tokenize", "predict_exits_s": "predict_exits", "model_s": "model"}


class ServiceMetrics:
    """All metric families of one service process, registered in one `Registry`."""

    def __init__(self, queue_rows: Callable[[], float] = lambda: 0.0,
                 pools_in_flight: Callable[[], float] = lambda: 0.0,
                 ready: Callable[[], float] = lambda: 0.0, guarantee: Mapping[str, Any] | None = None) -> None:
        r = self.registry = Registry()
        self.requests = r.add(Counter("geep_requests_total", "HTTP requests answered, by route and status code.",
                                      ("route", "code")))
        self.errors = r.add(Counter("geep_request_errors_total",
                                    "Requests answered with an error, by reason.", ("reason",)))
        self.rows = r.add(Counter("geep_rows_total", "Rows classified, by the depth that answered them.",
                                  ("depth",)))
        self.pool_rows = r.add(Histogram("geep_pool_rows", "Rows per pooled predict call (pooled batch size).",
                                         POOL_BUCKETS))
        self.pool_requests = r.add(Histogram("geep_pool_requests", "Requests per pooled predict call.",
                                             POOL_BUCKETS))
        self.stage = r.add(Histogram("geep_stage_seconds",
                                     "Seconds per stage: queue (per request), tokenize, predict_exits, model and "
                                     "pool (per pool), request (per request, end to end).",
                                     LATENCY_BUCKETS, ("stage",)))
        r.add(Gauge("geep_queue_rows", "Rows waiting for a pool.", queue_rows))
        r.add(Gauge("geep_pools_in_flight", "Pools being classified now.", pools_in_flight))
        r.add(Gauge("geep_ready", "1 when the service accepts requests, 0 while loading or draining.", ready))
        add_guarantee_gauges(r, guarantee)

    def observe_pool(self, rows: int, requests: int, timings: Mapping[str, float], depths: Mapping[int, int],
                     pool_seconds: float) -> None:
        """Record one finished pool: its size, its stage times (summed over its calls) and rows per depth."""
        self.pool_rows.observe(rows)
        self.pool_requests.observe(requests)
        for key, stage in ENGINE_STAGES.items():
            if key in timings:
                self.stage.observe(timings[key], stage=stage)
        self.stage.observe(pool_seconds, stage="pool")
        for depth, n in sorted(depths.items()):
            self.rows.inc(n, depth=depth)

    def render(self) -> str:
        return self.registry.render()


GUARANTEE_GAUGES = (
    ("max_disagree", "geep_guarantee_max_disagree", "Certified share of rows whose answer may differ from depth L's."),
    ("confidence", "geep_guarantee_confidence", "Confidence (1 - delta) of that certification."),
    ("calibration_rows", "geep_guarantee_calibration_rows", "Calibration rows the certification used."),
    ("certified_bound", "geep_guarantee_certified_bound",
     "Clopper-Pearson upper bound of the served setting's disagreement on the calibration rows."),
)


def add_guarantee_gauges(r: Registry, guarantee: Mapping[str, Any] | None) -> None:
    """``geep_guarantee_certified`` (1: the served setting carries a consistency guarantee, see
    ``GeepEngine.guarantee``) and, when it does, the guarantee's figures."""
    r.add(Gauge("geep_guarantee_certified", "1 when the served exit setting carries a consistency guarantee "
                "(calibrate --max-disagree), else 0.", lambda: float(guarantee is not None)))
    for key, name, doc in GUARANTEE_GAUGES if guarantee is not None else ():
        if isinstance(guarantee.get(key), (int, float)):
            r.add(Gauge(name, doc, lambda v=float(guarantee[key]): v))
