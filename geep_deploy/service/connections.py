"""Connection handling of ``geep-deploy serve``: bounded read time, a bounded number of open connections, and log
lines that cannot flood stderr.

uvicorn bounds neither how long a client may take to send its request nor how many connections stay open: 1,100
clients sending half a body hold every file descriptor (good requests then time out), and each failed accept or
broken request logs a line (stderr grew 211 MB in two minutes). `guarded_protocol` returns uvicorn's h11
protocol with three bounds:

- a request's headers must arrive within ``header_timeout`` seconds of the connection (or of the previous
  response, on a kept-alive connection), and its body within ``body_timeout`` seconds of the headers; a
  connection that misses either is closed (a request already being answered is never cut);
- at most ``max_connections`` connections are open: one more closes the connection that has been waiting longest
  for its request (a stalled one), or, when every connection has a request in flight, answers the newcomer
  503 with ``Retry-After`` and closes it;
- `RepeatFilter` lets the same log line through a few times per window, then counts the rest and says how many
  it dropped.

The subclass overrides only asyncio's ``Protocol`` methods (``connection_made``, ``data_received``,
``connection_lost``) and uvicorn's ``on_response_complete``, and reads the h11 state machine's public
``their_state``.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("geep_deploy.service")

_READING = (h11.IDLE, h11.SEND_BODY)  # states in which the client still owes us (part of) a request
_BUSY_503 = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
             b"connection: close\r\ncontent-length: 68\r\n\r\n"
             b'{"detail": "service | too many open connections; retry in a second."}')


def default_max_connections(reserve: int = 64) -> int:
    """What the open-file limit leaves after ``reserve`` descriptors for the engine, logs and the listener."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 4096 if soft == resource.RLIM_INFINITY else int(soft)
    return max(16, min(4096, limit - reserve))


def guarded_protocol(header_timeout: float, body_timeout: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the read-time and connection bounds above (pass it as ``Config(http=...)``)."""

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            self._read_timer: Any = None
            self._waiting_since = time.monotonic()
            super().connection_made(transport)
            if len(self.connections) > max_connections and not self._make_room():
                transport.write(_BUSY_503)
                transport.close()
                log.warning("service | %d connections open (--max-connections %d), every one with a request in "
                            "flight: answered a new one 503.", len(self.connections), max_connections)
                return
            self._arm(header_timeout)

        def _make_room(self) -> bool:
            """Close the connection waiting longest for its request; False if every other one is busy."""
            stalled = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol)
                       and c.conn.their_state in _READING and c._read_timer is not None]
            if not stalled:
                return False
            victim = min(stalled, key=lambda c: c._waiting_since)
            victim._close("%d connections open (--max-connections %d): closed the one waiting longest for its "
                          "request", len(self.connections), max_connections)
            return True

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._waiting_since = time.monotonic()
            self._read_timer = self.loop.call_later(seconds, self._timed_out, seconds)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _timed_out(self, seconds: float) -> None:
            self._read_timer = None
            if self.conn.their_state in _READING:
                part = "headers" if self.conn.their_state is h11.IDLE else "body"
                self._close("a connection sent no complete request %s within %g s (--%s-timeout)", part, seconds,
                            part[:6])

        def _close(self, template: str, *args: Any) -> None:
            self._disarm()
            log.warning("service | " + template + "; closed it.", *args)  # the template keys the rate limit
            if not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            before = self.conn.their_state
            super().data_received(data)
            state = self.conn.their_state
            if state is h11.SEND_BODY and before is not h11.SEND_BODY:
                self._arm(body_timeout)  # headers are in: the body gets its own deadline
            elif state not in _READING:
                self._disarm()  # the whole request is in (or the connection is done): the app answers it

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm(header_timeout)  # kept alive: the next request's headers have a deadline too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol


class RepeatFilter(logging.Filter):
    """Let each distinct log line (logger + message template) through ``burst`` times per ``window_s`` seconds;
    the first line after a window with drops says how many were dropped.

    Args:
        burst: lines of one kind per window. Defaults to 5.
        window_s: window length in seconds. Defaults to 10.
    """

    def __init__(self, burst: int = 5, window_s: float = 10.0) -> None:
        super().__init__()
        self.burst, self.window_s = burst, window_s
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        start, count, dropped = self._seen.get(key, (now, 0, 0))
        if now - start >= self.window_s:
            if dropped:
                record.msg = f"{record.msg} [{int(dropped)} more like this in the last {self.window_s:g} s not shown]"
            start, count, dropped = now, 0, 0
        count += 1
        keep = count <= self.burst
        self._seen[key] = [start, count, dropped + (not keep)]
        if len(self._seen) > 10_000:  # bounded memory even for endlessly distinct messages
            self._seen.clear()
        return keep


LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "geep_deploy.service")


def rate_limit_logs(burst: int = 5, window_s: float = 10.0) -> RepeatFilter:
    """Attach one `RepeatFilter` to the loggers a flood comes through (uvicorn, asyncio, the service)."""
    f = RepeatFilter(burst, window_s)
    for name in LOGGERS:
        logging.getLogger(name).addFilter(f)
    return f
