"""Serve an export over HTTP: POST /v1/classify, GET /healthz, /readyz, /metrics (Prometheus), /docs (OpenAPI).

Concurrent requests are pooled into one predict call of up to --max-batch rows, waiting at most --max-wait-ms for
the pool to fill (GEEP's dispatch gets denser depth groups from bigger pools). More than --max-queue waiting rows
answer 503 with Retry-After; too many rows or too long a text answer 413, malformed input 400/415/422. SIGTERM or
Ctrl-C stops intake and finishes every request already accepted. Binds to 127.0.0.1 unless --host says otherwise;
there is no authentication, so put a gateway in front before exposing it. --ray runs the same app on Ray Serve
(needs the `serve` extra); for a cluster, `serve deploy` the config in geep_deploy/service/ray_serve.yaml.

Example:
  geep-deploy serve --export runs/demo/export_geep --port 8000
  curl -s localhost:8000/v1/classify -H 'content-type: application/json' \\
      -d '{"text": ["a charming and often affecting journey", "bleak and desperate"]}'
  geep-deploy serve --export runs/demo/export_geep --depth 6      # the full model, served the same way
  geep-deploy serve --export runs/demo/export_geep --ray --replicas 2
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from geep_deploy.errors import ConfigError
from geep_deploy.names import AUTO, AUTO_RULE, BACKENDS, DEVICES

if TYPE_CHECKING:
    from runtime.options import LoadOptions


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--export", required=True, type=Path, help="export directory (geep-deploy export --out)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-batch", type=int, default=64, help="most rows per pooled predict call (default 64)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="longest a request waits for its pool to fill (default 5); --max-batch 1 --max-wait-ms 0 "
                        "turns pooling off")
    p.add_argument("--fixed-wait", action="store_true",
                   help="every pool waits up to --max-wait-ms, even with one client at a time (default: a lone "
                        "request goes at once when recent pools saw no other request arrive while they ran)")
    p.add_argument("--max-queue", type=int, default=2048, help="most rows waiting before 503 (default 2048)")
    p.add_argument("--workers", type=int, default=1, help="pools classified at once (default 1)")
    p.add_argument("--engine-batch", type=int, default=None,
                   help="most rows per engine call inside a pool (default 64; on the CPU the engine cuts a pool "
                        "into calls by padded work, see --call-cost)")
    p.add_argument("--backend", default=AUTO, choices=(AUTO, *BACKENDS),
                   help=f"default: {AUTO} ({AUTO_RULE})")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="default: cpu")
    p.add_argument("--precision", default="fp32", help="fp32, tf32 (torch), fp16, bf16 or int8 (default fp32)")
    p.add_argument("--depth", type=int, default=None,
                   help="run every row at this depth (no exit prediction; the export's L = the full model)")
    p.add_argument("--threads", type=int, default=None, help="intra-op CPU threads (default: backend's choice)")
    p.add_argument("--call-cost", default="auto",
                   help="fixed cost of one engine call in padded tokens: rows are cut into calls that minimise "
                        "padding plus this (default auto: 16 on cpu, fixed chunks on cuda; 'off': fixed chunks)")
    p.add_argument("--max-rows", type=int, default=256, help="most texts per request (default 256; 413 above)")
    p.add_argument("--max-chars", type=int, default=4096, help="most characters per text (default 4096; 413 above)")
    p.add_argument("--max-body-kb", type=int, default=1024, help="most KiB per request body (default 1024; 413)")
    p.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a connection may take to send a request's headers before it is closed (default 10)")
    p.add_argument("--body-timeout", type=float, default=30.0,
                   help="seconds a request may take to send its body after the headers (default 30)")
    p.add_argument("--max-connections", type=int, default=None,
                   help="most open connections; one more closes the one waiting longest for its request (default: "
                        "what the open-file limit allows, at most 4096)")
    p.add_argument("--graceful-timeout", type=float, default=30.0,
                   help="seconds to finish accepted requests on shutdown (default 30)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level (default: warning)")
    p.add_argument("--ray", action="store_true", help="run on Ray Serve (local Ray, or --ray-address)")
    p.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas (with --ray; default 1)")
    p.add_argument("--ray-address", default="local",
                   help="Ray cluster to join with --ray (default: start a private local one)")


def _check(args: argparse.Namespace) -> None:
    if args.engine_batch is None:
        from geep_deploy.service.runner import DEFAULT_ENGINE_BATCH

        args.engine_batch = DEFAULT_ENGINE_BATCH
    # every numeric flag was range-checked (finite, in range) by geep_deploy.cli.checks before this runs
    from runtime.dispatch import parse_call_cost

    args.call_cost = parse_call_cost(args.call_cost)
    if args.ray:  # Ray Serve queues, scales and drains replicas itself
        ignored = [f"--{n.replace('_', '-')}" for n, default in (("max_queue", 2048), ("workers", 1),
                                                                   ("graceful_timeout", 30.0),
                                                                   ("fixed_wait", False), ("header_timeout", 10.0),
                                                                   ("body_timeout", 30.0), ("max_connections", None))
                   if getattr(args, n) != default]
        if ignored:
            print(f"warning: {', '.join(ignored)} apply to the local service only; --ray ignores them.",
                  file=sys.stderr)
    if not (args.export / "manifest.json").is_file():
        raise ConfigError(f"serve | {args.export} has no manifest.json; give an export directory written by "
                          f"`geep-deploy export --out`.")
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(f"warning: binding {args.host}: the service has no authentication; put a gateway in front.",
              file=sys.stderr)


def load_options(args: argparse.Namespace) -> LoadOptions:
    """The `LoadOptions` of ``serve``'s flags (built once; Ray's replicas get the same object)."""
    from runtime.options import LoadOptions

    return LoadOptions(backend=args.backend, device=args.device, precision=args.precision, fixed_depth=args.depth,
                       threads=args.threads, call_cost=args.call_cost)


def _import_service() -> None:
    from geep_deploy.optional import require

    require("fastapi", "serve", "for the HTTP service")
    require("uvicorn", "serve", "for the HTTP service")


def run(args: argparse.Namespace) -> int:
    _check(args)
    _import_service()
    if args.ray:
        from geep_deploy.service.ray_app import RayOptions, run_on_ray

        return run_on_ray(RayOptions.from_args(args, load_options(args)))
    import uvicorn

    from geep_deploy.service.listener import bind_listeners, url_host

    listeners = bind_listeners(args.host, args.port)  # a port in use fails here, before the engine loads
    try:
        from geep_deploy.service.app import LocalService, create_app
        from geep_deploy.service.batcher import BatcherConfig
        from geep_deploy.service.limits import RequestLimits
        from runtime import GeepEngine

        engine = GeepEngine.load(args.export, options=load_options(args))
        service = LocalService(
            engine,
            BatcherConfig(max_batch=args.max_batch, max_wait_s=args.max_wait_ms / 1e3, max_queue_rows=args.max_queue,
                          workers=args.workers, adaptive_wait=not args.fixed_wait),
            RequestLimits(max_rows=args.max_rows, max_chars=args.max_chars, max_body_bytes=args.max_body_kb * 1024),
            engine_batch=args.engine_batch)
        from geep_deploy.service.connections import default_max_connections, guarded_protocol, rate_limit_logs

        protocol = guarded_protocol(args.header_timeout, args.body_timeout,
                                    args.max_connections or default_max_connections())
        config = uvicorn.Config(create_app(service), host=args.host, port=args.port, log_level=args.log_level,
                                access_log=False, timeout_graceful_shutdown=args.graceful_timeout, http=protocol)
        rate_limit_logs()  # after Config, which (re)configures uvicorn's loggers
        port = listeners[0].getsockname()[1]  # --port 0: the one the system chose
        print(f"serving {args.export} ({engine!r}) on http://{url_host(args.host)}:{port} "
              f"(max batch {args.max_batch}, max wait {args.max_wait_ms} ms"
              f"{', fixed' if args.fixed_wait else ', adaptive'}); Ctrl-C stops", file=sys.stderr,
              flush=True)
        server = uvicorn.Server(config)
        server.run(sockets=listeners)
    finally:  # a failed load (or Ctrl-C during it) leaves no port held
        for sock in listeners:
            sock.close()
    return 0 if server.started else 1
