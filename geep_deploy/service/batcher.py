"""An asyncio micro-batcher: pools concurrent requests into one ``predict`` call, run in a worker thread.

A pool closes when it holds ``max_batch`` rows or when its oldest request has waited ``max_wait_s``; while every
worker is busy, requests keep queueing, so under load pools fill up without any added wait. With
``adaptive_wait`` (the default) a lone request does not wait for company that is not coming: when recent pools
saw (almost) no request arrive while they ran, the service has one client at a time, and the request is
classified at once (an exponential average of arrivals per pool, starting as if there were company). The queue is bounded in
rows (`QueueFull` -> HTTP 503 with Retry-After), and ``close()`` stops intake, then finishes every queued and
in-flight pool before returning (graceful shutdown).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from geep_deploy.errors import GeepError
from geep_deploy.service.pooling import Rows, take_pool
from geep_deploy.service.runner import PoolOutcome, Record
from geep_deploy.service.telemetry import ServiceMetrics

COMPANY_FLOOR = 0.5
"""Fewer requests than this arriving per pool run (on average) means one client at a time: a lone request's pool
closes at once instead of waiting ``max_wait_s`` for others."""


class QueueFull(GeepError):
    """Too many rows are waiting; the client should retry after ``retry_after_s`` seconds (HTTP 503)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ShuttingDown(GeepError):
    """The service is draining and takes no new requests (HTTP 503)."""


@dataclass(frozen=True)
class BatcherConfig:
    """Pool size and wait, queue bound and the number of pools classified at once."""

    max_batch: int = 64
    max_wait_s: float = 0.005
    max_queue_rows: int = 2048
    workers: int = 1
    adaptive_wait: bool = True  # a lone request waits only while requests arrive during pools (module docstring)

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue_rows < 1 or self.workers < 1 or self.max_wait_s < 0:
            raise GeepError(f"service | max_batch, max_queue_rows and workers must be >= 1 and max_wait_s >= 0; "
                            f"got {self}.")


@dataclass
class _Pending:
    rows: Rows
    future: asyncio.Future[list[Record]]
    enqueued: float


class MicroBatcher:
    """Pools ``submit``ted requests and classifies each pool with ``run_pool`` in a worker thread.

    Args:
        run_pool: classifies a list of requests (`PoolRunner`); called in a worker thread.
        config: pool size, wait, queue bound, workers.
        metrics: where pool sizes, stage times and queue waits go. Defaults to a private `ServiceMetrics`.

    Example:
        >>> batcher = MicroBatcher(PoolRunner(engine), BatcherConfig(max_batch=64))  # doctest: +SKIP
        >>> await batcher.start(); records = await batcher.submit(Rows(("a charming journey",)))  # doctest: +SKIP
    """

    def __init__(self, run_pool: Callable[[Sequence[Rows]], PoolOutcome], config: BatcherConfig,
                 metrics: ServiceMetrics | None = None) -> None:
        self.run_pool, self.config = run_pool, config
        self.metrics = metrics or ServiceMetrics()
        self._pending: deque[_Pending] = deque()
        self._queued_rows = 0
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wakeup: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._recent_pool_s = 0.05  # moving estimate of one pool's seconds, for Retry-After
        self._running = 0  # pools inside ``run_pool`` now
        self._busy_arrivals = 0  # requests that arrived while a pool ran, since the last pool finished
        self.company = 1.0  # moving average of those per pool; below COMPANY_FLOOR a lone request goes at once

    # -- state ----------------------------------------------------------------------------------------------
    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def pools_in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def accepting(self) -> bool:
        return self._loop_task is not None and not self._closing

    # -- lifetime -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(self.config.workers, thread_name_prefix="geep-pool")
        self._loop_task = asyncio.get_running_loop().create_task(self._loop(), name="geep-batcher")

    async def close(self) -> None:
        """Stop taking requests, classify everything queued or in flight, then release the workers."""
        if self._loop_task is None or self._closing:
            return
        self._closing = True
        assert self._wakeup is not None
        self._wakeup.set()
        await self._loop_task
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # -- intake ---------------------------------------------------------------------------------------------
    def retry_after_s(self) -> int:
        """Seconds until the queue has likely drained enough to take a request again (at least 1)."""
        pools = self._queued_rows / self.config.max_batch / self.config.workers
        return max(1, math.ceil(pools * self._recent_pool_s))

    async def submit(self, rows: Rows) -> list[Record]:
        """Queue one request's rows and wait for their records (in order).

        Raises:
            QueueFull: more than ``max_queue_rows`` rows would be waiting.
            ShuttingDown: ``close()`` has begun, or ``start()`` was never called.
            GeepError: the engine rejected this request's input.
        """
        if not self.accepting:
            raise ShuttingDown("service | shutting down (or not started); send the request to another replica.")
        if self._queued_rows + len(rows) > self.config.max_queue_rows:
            raise QueueFull(f"service | queue full: {self._queued_rows} rows waiting, limit "
                            f"{self.config.max_queue_rows}. Retry later or add replicas.", self.retry_after_s())
        fut: asyncio.Future[list[Record]] = asyncio.get_running_loop().create_future()
        if self._running:
            self._busy_arrivals += 1
        self._pending.append(_Pending(rows, fut, time.perf_counter()))
        self._queued_rows += len(rows)
        assert self._wakeup is not None
        self._wakeup.set()
        return await fut

    # -- pooling --------------------------------------------------------------------------------------------
    async def _wait(self, timeout: float | None) -> None:
        assert self._wakeup is not None
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def _loop(self) -> None:
        slots = asyncio.Semaphore(self.config.workers)
        while True:
            await slots.acquire()  # a free worker first: requests queue meanwhile, so busy pools come full
            freed = time.perf_counter()
            while not self._pending and not self._closing:
                await self._wait(None)
            if not self._pending:  # closing and drained
                slots.release()
                return
            # the pool's window opens when its oldest request arrived, or when the worker came free if later:
            # under load, the clients answered by the last pool get max_wait to join the next one
            opened = max(self._pending[0].enqueued, freed)
            alone = self.config.adaptive_wait and len(self._pending) == 1 and self.company < COMPANY_FLOOR
            while self._queued_rows < self.config.max_batch and not self._closing and not alone:
                left = opened + self.config.max_wait_s - time.perf_counter()
                if left <= 0:
                    break
                await self._wait(left)
            n = take_pool([len(p.rows) for p in self._pending], self.config.max_batch)
            pool = [self._pending.popleft() for _ in range(n)]
            self._queued_rows -= sum(len(p.rows) for p in pool)
            task = asyncio.get_running_loop().create_task(self._run(pool, slots))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _run(self, pool: list[_Pending], slots: asyncio.Semaphore) -> None:
        try:
            now = time.perf_counter()
            for p in pool:
                self.metrics.stage.observe(now - p.enqueued, stage="queue")
            assert self._executor is not None
            self._running += 1
            try:
                outcome = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self.run_pool, [p.rows for p in pool])
            except Exception as e:  # an engine crash answers every request of the pool
                for p in pool:
                    if not p.future.done():
                        p.future.set_exception(e)
                return
            finally:
                self._running -= 1
            self._recent_pool_s = 0.8 * self._recent_pool_s + 0.2 * outcome.seconds
            self.company = 0.7 * self.company + 0.3 * self._busy_arrivals
            self._busy_arrivals = 0
            self.metrics.observe_pool(sum(len(p.rows) for p in pool), len(pool), outcome.timings,
                                      outcome.depths, outcome.seconds)
            for p, result in zip(pool, outcome.results):
                if p.future.done():  # the client went away
                    continue
                if isinstance(result, BaseException):
                    p.future.set_exception(result)
                else:
                    p.future.set_result(result)
        finally:
            slots.release()
