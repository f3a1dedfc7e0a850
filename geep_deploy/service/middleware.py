"""An ASGI guard in front of the routes: body size (413) and content type (415) before any parsing, and request
counts and end-to-end latency per route and status for ``/metrics``.

Pure ASGI (not a Starlette ``BaseHTTPMiddleware``), so it adds no task per request and streams nothing twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KNOWN_ROUTES = ("/v1/classify", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")
JSON_ROUTES = ("/v1/classify",)


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


class RequestGuard:
    """Rejects oversize bodies and non-JSON posts early; counts every answer by route and status code.

    Args:
        app: the ASGI app to guard.
        service: returns the process's service (``.metrics``, ``.limits.max_body_bytes``), looked up per request
            because a Ray replica builds its service after the app was defined.
    """

    def __init__(self, app: ASGIApp, service: Callable[[], Any]) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        svc = self.service()
        path = scope.get("path", "")
        route = path if path in KNOWN_ROUTES else "other"
        status = {"code": 500}

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            if scope.get("method") == "POST" and path in JSON_ROUTES:
                await self._guarded_post(scope, receive, counting_send, svc.limits.max_body_bytes)
            else:
                await self.app(scope, receive, counting_send)
        finally:
            code = status["code"]
            svc.metrics.requests.inc(route=route, code=code)
            if code >= 400:
                svc.metrics.errors.inc(reason=_reason(code))
            if route == "/v1/classify":
                svc.metrics.stage.observe(time.perf_counter() - t0, stage="request")

    async def _guarded_post(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            await _reply(send, 415, f"service | content type must be application/json, got {ctype or 'none'!r}.")
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await _reply(send, 413, f"service | body of {declared} bytes; at most {max_bytes} allowed.")
            return
        chunks, size, more = [], 0, True
        while more:  # read the body here (bounded), then replay it to the app
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                await _reply(send, 413, f"service | body over {max_bytes} bytes.")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _reason(code: int) -> str:
    return {400: "malformed_json", 413: "too_large", 415: "content_type", 422: "invalid", 404: "not_found",
            405: "method", 503: "unavailable"}.get(code, "server_error" if code >= 500 else "client_error")
