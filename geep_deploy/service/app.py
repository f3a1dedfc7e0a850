"""The HTTP API (FastAPI): ``POST /v1/classify``, ``GET /healthz``, ``/readyz``, ``/metrics``, OpenAPI at
``/openapi.json`` and ``/docs``.

The routes talk to a *service*: anything with ``limits``, ``metrics``, ``info``, ``ready()`` and an async
``classify(rows)``. `LocalService` pools with the asyncio `MicroBatcher` (``geep-deploy serve``); the Ray Serve
deployment (``ray_app.py``) mounts the same routes and pools with ``@serve.batch``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException
from starlette.requests import Request

from geep_deploy import __version__
from geep_deploy.errors import ConfigError, DataError, GeepError
from geep_deploy.service.batcher import BatcherConfig, MicroBatcher, QueueFull, ShuttingDown
from geep_deploy.service.limits import InvalidRequest, RequestLimits, RequestTooLarge, check_request
from geep_deploy.service.metrics import Registry
from geep_deploy.service.middleware import RequestGuard
from geep_deploy.service.pooling import Rows
from geep_deploy.service.runner import DEFAULT_ENGINE_BATCH, PoolRunner, Record
from geep_deploy.service.schema import Alive, ClassifyRequest, ClassifyResponse, ErrorResponse, Health
from geep_deploy.service.telemetry import ServiceMetrics


class Service(Protocol):
    """What the routes need from the process that serves them."""

    limits: RequestLimits
    metrics: ServiceMetrics
    info: dict[str, Any]

    def ready(self) -> bool: ...

    async def classify(self, rows: Rows) -> list[Record]: ...


class LocalService:
    """One `GeepEngine` behind a `MicroBatcher`: the reference service of ``geep-deploy serve``.

    Args:
        engine: a loaded ``runtime.GeepEngine``; the service closes it on ``stop()``.
        batcher: pool size, wait, queue bound and workers.
        limits: request limits.
        engine_batch: most rows per engine call inside one ``predict``. Defaults to 64 (`DEFAULT_ENGINE_BATCH`).
    """

    def __init__(self, engine: Any, batcher: BatcherConfig | None = None, limits: RequestLimits | None = None,
                 engine_batch: int | None = None) -> None:
        self.engine, self.limits = engine, limits or RequestLimits()
        guarantee = getattr(engine, "guarantee", None)
        self.metrics = ServiceMetrics(queue_rows=lambda: self.batcher.queued_rows,
                                      pools_in_flight=lambda: self.batcher.pools_in_flight,
                                      ready=lambda: float(self.ready()), guarantee=guarantee)
        self.batcher = MicroBatcher(PoolRunner(engine, engine_batch or DEFAULT_ENGINE_BATCH),
                                    batcher or BatcherConfig(),
                                    self.metrics)
        self.info = {**engine.info, "num_layers": engine.num_layers, "labels": list(engine.label_names),
                     "max_batch": self.batcher.config.max_batch, "max_wait_ms": self.batcher.config.max_wait_s * 1e3,
                     "guarantee": guarantee}

    def ready(self) -> bool:
        return self.batcher.accepting

    async def classify(self, rows: Rows) -> list[Record]:
        return await self.batcher.submit(rows)

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        """Finish every queued and in-flight pool, then close the engine."""
        await self.batcher.close()
        self.engine.close()


ERRORS = {413: {"model": ErrorResponse, "description": "too many rows, too long a text or too big a body"},
          415: {"model": ErrorResponse, "description": "content type is not application/json"},
          400: {"model": ErrorResponse, "description": "the body is not valid JSON"},
          422: {"model": ErrorResponse, "description": "wrong field types, unknown fields, empty list or text"},
          500: {"model": ErrorResponse, "description": "the engine failed on a valid request (see the server log)"},
          503: {"model": ErrorResponse, "description": "queue full or draining; see the Retry-After header"}}


def _error(status: int, detail: Any, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def build_app(service: Callable[[], Service], lifespan: Callable[[FastAPI], Any] | None = None) -> FastAPI:
    """The FastAPI app; ``service()`` is looked up per request (a Ray replica builds its own after import)."""
    app = FastAPI(title="geep-deploy", version=__version__, lifespan=lifespan,
                  description="Early-exit BERT classification: each text runs only to its predicted exit depth; "
                              "concurrent requests are pooled into one engine call.")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # anything else (e.g. CUDA out of memory) still answers in the documented JSON error shape
        return _error(500, f"service | internal error: {type(exc).__name__}: {str(exc)[:300]}")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Any:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":  # FastAPI's wording
            return _error(400, "service | the body could not be read as JSON text (not UTF-8, or the upload was "
                               "cut off).")
        return await http_exception_handler(request, exc)  # 404, 405, ...: FastAPI's answer

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "service | the body is not valid JSON.")
        return _error(422, [{k: e.get(k) for k in ("loc", "msg", "type")} for e in errors])

    @app.post("/v1/classify", response_model=ClassifyResponse, responses=ERRORS)
    async def classify(body: ClassifyRequest) -> Any:
        """Classify one text or a list (or pairs with ``text_b``); one result row per text, in order."""
        svc = service()
        try:
            rows = check_request(body.text, body.text_b, svc.limits)
            if body.exact:
                rows = replace(rows, exact=True)
            records = await svc.classify(rows)
        except RequestTooLarge as e:
            return _error(413, str(e))
        except QueueFull as e:
            return _error(503, str(e), e.retry_after_s)
        except ShuttingDown as e:
            return _error(503, str(e), 1)
        except (InvalidRequest, DataError, ConfigError) as e:  # the request's fault: the client can fix it
            return _error(422, str(e))
        except GeepError as e:  # the engine's or the export's fault (a failed run, a damaged artifact)
            return _error(500, f"service | the engine failed: {e}")
        return {"predictions": records, "num_layers": svc.info["num_layers"]}

    @app.get("/healthz", response_model=Alive)
    async def healthz() -> Any:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    async def readyz() -> Any:
        """Readiness: the engine is loaded and the service takes requests (503 while draining)."""
        svc = service()
        if not svc.ready():
            return JSONResponse({"status": "draining", "model": {}}, status_code=503)
        return {"status": "ready", "model": svc.info}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Any:
        """Prometheus text format: requests, errors, pooled batch sizes, stage latencies, rows per depth."""
        return PlainTextResponse(service().metrics.render(), media_type=Registry.CONTENT_TYPE)

    app.add_middleware(RequestGuard, service=service)
    return app


def create_app(service: LocalService) -> FastAPI:
    """The app of ``geep-deploy serve``: starts the batcher on startup, drains it and closes the engine on exit."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    return build_app(lambda: service, lifespan)
