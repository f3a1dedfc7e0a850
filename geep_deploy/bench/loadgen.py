"""Load-test a local service: start ``geep-deploy serve`` in a subprocess, send bounded concurrent load with
aiohttp, stop the server by PID. Used by the CI load test and ``bench/serve_bench.py``.

aiohttp because its client costs ~0.8 ms CPU per request here (httpx ~8.5 ms became the bottleneck). Every load
is bounded in count *and* time; servers bind 127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import geep_deploy


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; connection errors give status 0."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # loopback URLs we built
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def _children(pid: int) -> list[int]:
    """PIDs of a process's descendants (empty without psutil)."""
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # no psutil, or the process is gone: nothing to clean up
        return []


class ServerProcess:
    """``geep-deploy serve`` in a subprocess on 127.0.0.1, ready when ``/readyz`` answers 200.

    Runs the ``geep_deploy`` this module was imported from (its parent goes first on PYTHONPATH). ``stop()``
    sends SIGTERM (graceful), then SIGKILL by PID after ``stop_timeout_s``.

    Example:
        >>> with ServerProcess(["--export", "runs/demo/export_geep"]) as srv:  # doctest: +SKIP
        ...     http_get(srv.url + "/healthz")
    """

    def __init__(self, serve_args: Sequence[str], log_path: Path | None = None, ready_timeout_s: float = 90.0,
                 stop_timeout_s: float = 20.0, port: int | None = None) -> None:
        self.serve_args, self.log_path = list(serve_args), log_path
        self.ready_timeout_s, self.stop_timeout_s = ready_timeout_s, stop_timeout_s
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.is_file() else ""

    def start(self) -> ServerProcess:
        env = dict(os.environ)
        root = str(Path(geep_deploy.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        cmd = [sys.executable, "-m", "geep_deploy.cli", "serve", *self.serve_args, "--host", "127.0.0.1",
               "--port", str(self.port)]
        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode} before ready:\n{self.log_text()}")
            if http_get(self.url + "/readyz", timeout=1.0)[0] == 200:
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"serve not ready after {self.ready_timeout_s:.0f} s:\n{self.log_text()}")

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        children = _children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pid in children:  # what the server started (Ray's processes with --ray) and left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LoadResult:
    """What a bounded load run saw: per request its status, latency and (optionally) JSON body."""

    statuses: list[int] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    rows: int = 0
    wall_s: float = 0.0
    timed_out: bool = False

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_s, dtype=np.float64) * 1e3
        ok = sum(1 for s in self.statuses if s == 200)
        return {"requests": len(self.statuses), "ok": ok, "errors": len(self.statuses) - ok,
                "rows": self.rows, "wall_s": round(self.wall_s, 4),
                "requests_per_s": round(len(self.statuses) / self.wall_s, 2) if self.wall_s else 0.0,
                "rows_per_s": round(self.rows / self.wall_s, 2) if self.wall_s else 0.0,
                **{f"p{q}_ms": round(float(np.percentile(lat, q)), 3) if lat.size else 0.0 for q in (50, 95, 99)},
                "timed_out": self.timed_out}


async def run_load(url: str, payloads: Sequence[dict[str, Any]], concurrency: int, time_limit_s: float,
                   keep_bodies: bool = False) -> LoadResult:
    """POST each payload once (in order, ``concurrency`` at a time) until all are sent or time runs out.

    Args:
        url: the endpoint, e.g. ``http://127.0.0.1:8000/v1/classify``.
        payloads: JSON bodies; their count bounds the run.
        concurrency: requests in flight at once (one connection each).
        time_limit_s: no request starts after this many seconds; in-flight ones get 30 s more at most.
        keep_bodies: keep each answer's JSON (in payload order) for checking.
    """
    import aiohttp

    res = LoadResult(statuses=[0] * len(payloads), latencies_s=[0.0] * len(payloads),
                     bodies=[None] * len(payloads))
    next_i = 0
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    encoded = [json.dumps(p).encode() for p in payloads]

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_i
        while next_i < len(payloads) and time.perf_counter() < deadline:
            i, next_i = next_i, next_i + 1
            t = time.perf_counter()
            async with session.post(url, data=encoded[i], headers={"content-type": "application/json"}) as r:
                body = await r.read()
                res.statuses[i], res.latencies_s[i] = r.status, time.perf_counter() - t
                if keep_bodies:
                    res.bodies[i] = json.loads(body) if body else None
            if r.status == 200:
                text = payloads[i]["text"]
                res.rows += 1 if isinstance(text, str) else len(text)

    timeout = aiohttp.ClientTimeout(total=time_limit_s + 30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    res.wall_s = time.perf_counter() - t0
    sent = next_i
    res.timed_out = sent < len(payloads)
    res.statuses, res.latencies_s, res.bodies = res.statuses[:sent], res.latencies_s[:sent], res.bodies[:sent]
    return res


def load(url: str, payloads: Sequence[dict[str, Any]], concurrency: int, time_limit_s: float,
         keep_bodies: bool = False) -> LoadResult:
    """`run_load` from synchronous code."""
    return asyncio.run(run_load(url, payloads, concurrency, time_limit_s, keep_bodies))
