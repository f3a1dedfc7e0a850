"""Scale-out on Ray Serve: the same HTTP routes as ``geep-deploy serve``, one `GeepEngine` per replica, requests
pooled per replica with ``@serve.batch``.

Each replica loads the whole export (tokenizer, exit table, every depth engine; ~the memory of one local service)
and pools the requests the Ray proxy routes to it; Ray places replicas on the cluster's nodes by their
``ray_actor_options`` (CPUs, or ``num_gpus: 1``) and scales their number with ``autoscaling_config``. ``@serve.batch``
counts requests, not rows: a pool holds at most ``max_batch`` requests.

Run it:
  geep-deploy serve --export runs/demo/export_geep --ray --replicas 2          # a private local Ray
  serve run geep_deploy.service.ray_app:app_builder export=$PWD/runs/demo/export_geep
  serve deploy geep_deploy/service/ray_serve.yaml                             # an existing cluster
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from geep_deploy.errors import ConfigError
from geep_deploy.optional import require
from geep_deploy.service.limits import RequestLimits
from geep_deploy.service.pooling import Rows
from geep_deploy.service.runner import DEFAULT_ENGINE_BATCH, PoolRunner, Record
from geep_deploy.service.telemetry import ServiceMetrics
from runtime.options import LoadOptions

serve = require("ray.serve", "serve --ray", "for scale-out on Ray Serve")


@dataclass(frozen=True)
class ReplicaOptions:
    """What one replica pools and accepts, beside the engine's `LoadOptions`.

    Args:
        max_batch: most requests per ``@serve.batch`` pool. max_wait_ms: longest wait for a pool to fill.
        engine_batch: most rows per engine call (`geep_deploy.names`: rows per call).
        max_rows, max_chars, max_body_kb: request limits.
    """

    max_batch: int = 64
    max_wait_ms: float = 5.0
    engine_batch: int = DEFAULT_ENGINE_BATCH
    max_rows: int = 256
    max_chars: int = 4096
    max_body_kb: int = 1024


def split_options(load: LoadOptions | None, replica: ReplicaOptions | None,
                  fields: dict[str, Any]) -> tuple[LoadOptions, ReplicaOptions]:
    """``fields`` by name into the load and the replica options (unknown names: TypeError listing both)."""
    from dataclasses import fields as fields_of

    from geep_deploy.options import build_options

    own = {f.name for f in fields_of(ReplicaOptions)}
    rep = {k: v for k, v in fields.items() if k in own}
    rest = {k: v for k, v in fields.items() if k not in own}
    if rep.get("engine_batch", 0) is None:
        rep.pop("engine_batch")
    return (build_options(LoadOptions, load, rest, "GeepDeployment"),
            build_options(ReplicaOptions, replica, rep, "GeepDeployment"))


@serve.deployment(name="geep", ray_actor_options={"num_cpus": 1}, max_ongoing_requests=256,
                  max_queued_requests=2048)
@serve.ingress()
class GeepDeployment:
    """One replica: loads the export, pools with ``@serve.batch``, serves the routes of `service.app`.

    Args:
        export: export directory, readable on every node that runs a replica.
        load: how to load it (`runtime.options.LoadOptions`). replica: pooling and limits (`ReplicaOptions`).
        **fields: fields of either, by name (``threads=1, max_batch=16``), replacing those in ``load``/``replica``.
    """

    def __init__(self, export: str, load: LoadOptions | None = None, replica: ReplicaOptions | None = None,
                 **fields: Any) -> None:
        import ray

        from runtime import GeepEngine

        load, replica = split_options(load, replica, fields)
        max_batch, max_wait_ms = replica.max_batch, replica.max_wait_ms
        self.engine = GeepEngine.load(export, options=load)
        self.runner = PoolRunner(self.engine, replica.engine_batch)
        self.limits = RequestLimits(max_rows=replica.max_rows, max_chars=replica.max_chars,
                                    max_body_bytes=replica.max_body_kb * 1024)
        self.metrics = ServiceMetrics(ready=lambda: 1.0, guarantee=self.engine.guarantee)
        ctx = serve.get_replica_context()
        self.info = {**self.engine.info, "num_layers": self.engine.num_layers,
                     "labels": list(self.engine.label_names), "max_batch": max_batch, "max_wait_ms": max_wait_ms,
                     "replica": getattr(ctx.replica_id, "unique_id", str(ctx.replica_id)),
                     "node_id": ray.get_runtime_context().get_node_id(), "guarantee": self.engine.guarantee}
        self._pool.set_max_batch_size(max_batch)
        self._pool.set_batch_wait_timeout_s(max_wait_ms / 1e3)

    def __serve_build_asgi_app__(self) -> Any:
        from geep_deploy.service.app import build_app

        return build_app(lambda: self)

    def ready(self) -> bool:
        return True

    async def classify(self, rows: Rows) -> list[Record]:
        result = await self._pool(rows)
        if isinstance(result, BaseException):
            raise result
        return result

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def _pool(self, pool: list[Rows]) -> list[list[Record] | BaseException]:
        outcome = await asyncio.to_thread(self.runner, pool)
        self.metrics.observe_pool(sum(len(r) for r in pool), len(pool), outcome.timings, outcome.depths,
                                  outcome.seconds)
        return outcome.results

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()


def app_builder(args: dict[str, Any]) -> Any:
    """The Ray Serve application for ``serve run``/``serve deploy``: ``args`` are `GeepDeployment`'s keywords.

    Example:
        serve run geep_deploy.service.ray_app:app_builder export=/abs/path/export_geep max_batch=64
    """
    typed = {"fixed_depth": int, "threads": int, "max_batch": int, "max_wait_ms": float, "engine_batch": int,
             "max_rows": int, "max_chars": int, "max_body_kb": int}
    kwargs = {k: (typed[k](v) if k in typed and v is not None else v) for k, v in args.items()}
    if "export" not in kwargs:
        raise ConfigError("serve --ray | app_builder needs `export=<export dir>` (readable on every node).")
    kwargs["export"] = os.path.abspath(str(kwargs["export"]))
    return GeepDeployment.bind(**kwargs)


@dataclass
class RayOptions:
    """What ``geep-deploy serve --ray`` needs: where Ray is, the HTTP address, replicas and the app's args."""

    address: str = "local"
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    app_args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, a: argparse.Namespace, load: LoadOptions) -> RayOptions:
        """``serve --ray``'s flags; ``load`` is the `LoadOptions` the CLI built from them."""
        replica = ReplicaOptions(max_batch=a.max_batch, max_wait_ms=a.max_wait_ms, engine_batch=a.engine_batch,
                                 max_rows=a.max_rows, max_chars=a.max_chars, max_body_kb=a.max_body_kb)
        app_args = {"export": str(a.export), "load": load, "replica": replica}
        return cls(a.ray_address, a.host, a.port, a.replicas, app_args)


def run_on_ray(opts: RayOptions) -> int:
    """Start (or join) Ray, deploy ``opts.replicas`` replicas behind HTTP on ``host:port``, block until Ctrl-C."""
    import ray

    init: dict[str, Any] = {"address": opts.address, "include_dashboard": False}
    if opts.address == "local":  # a private single-node Ray that advertises loopback only
        init["_node_ip_address"] = "127.0.0.1"
    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)  # SIGTERM shuts Serve and Ray down like Ctrl-C
    ray.init(**init)
    try:
        serve.start(http_options={"host": opts.host, "port": opts.port})
        load = opts.app_args.get("load")
        num_gpus = 1 if (load.device if load is not None else opts.app_args.get("device")) == "cuda" else 0
        app = GeepDeployment.options(num_replicas=opts.replicas,
                                     ray_actor_options={"num_cpus": 1, "num_gpus": num_gpus})
        print(f"Ray Serve: {opts.replicas} replica(s) of {opts.app_args['export']} on "
              f"http://{opts.host}:{opts.port}; Ctrl-C stops", file=sys.stderr, flush=True)
        serve.run(app.bind(**opts.app_args), name="geep", route_prefix="/", blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


__all__ = ["GeepDeployment", "RayOptions", "ReplicaOptions", "app_builder", "run_on_ray", "split_options"]
