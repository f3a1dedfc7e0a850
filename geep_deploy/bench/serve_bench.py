"""Served throughput and latency against concurrency (``bench/serve_bench.py`` is its command line): GEEP vs
`full`, pooling on vs off, and Ray Serve replicas.

Each configuration is one `geep-deploy serve` subprocess on 127.0.0.1 (the same code users run), warmed up, then
hit with one SST-2 dev text per request at each concurrency from an aiohttp loop, every level bounded in count
and time. `full` is the same export served with `--depth L`. Pooling off is `--max-batch 1 --max-wait-ms 0`.
The first configuration runs again at the end: the spread of the two is the run's noise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from geep_deploy.bench.loadgen import ServerProcess, http_get, load
from geep_deploy.data import bundled_data_dir, load_split
from geep_deploy.service.metrics import parse_samples
from runtime.manifest import predictor_of

POOL_ON = ["--max-batch", "64", "--max-wait-ms", "5"]
POOL_OFF = ["--max-batch", "1", "--max-wait-ms", "0"]
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "30"}


def configs(num_layers: int, with_ray: bool, engine_batch: int | None, threads: int) -> list[dict[str, Any]]:
    full = ["--depth", str(num_layers)]
    batch = ["--engine-batch", str(engine_batch)] if engine_batch else []  # else the service's default
    pool_on = [*POOL_ON, *batch, "--threads", str(threads)]
    pool_off = [*POOL_OFF, "--threads", str(threads)]
    out = [
        {"name": "geep_pool", "method": "geep", "pooling": True, "args": pool_on},
        {"name": "full_pool", "method": "full", "pooling": True, "args": pool_on + full},
        {"name": "geep_nopool", "method": "geep", "pooling": False, "args": pool_off},
        {"name": "full_nopool", "method": "full", "pooling": False, "args": pool_off + full},
        {"name": "geep_pool_repeat", "method": "geep", "pooling": True, "args": pool_on},
    ]
    if with_ray:
        for n in (1, 2):
            out.append({"name": f"ray_geep_{n}replica", "method": "geep", "pooling": True, "replicas": n,
                        "args": [*pool_on, "--ray", "--replicas", str(n)]})
    return out


def _server_cpu_s(pid: int) -> float:
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _pool_stats(url: str) -> dict[str, float]:
    return parse_samples(http_get(url + "/metrics")[1])


def _delta(after: dict[str, float], before: dict[str, float], prefix: str) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if k.startswith(prefix)}


def served_accuracy(url: str, texts: list[str], labels: list[int]) -> dict[str, Any]:
    """Every dev text once (concurrency 32, not timed): the share of answers whose label is the gold one."""
    res = load(url + "/v1/classify", [{"text": t} for t in texts], concurrency=32, time_limit_s=300,
               keep_bodies=True)
    got = [b["predictions"][0]["label_id"] if b else None for b in res.bodies]
    right = sum(int(g == y) for g, y in zip(got, labels))
    return {"rows": len(texts), "answered": sum(g is not None for g in got), "accuracy": round(right / len(texts), 4)}


def run_config(cfg: dict[str, Any], export: Path, texts: list[str], levels: list[int], max_requests: int,
               time_limit_s: float, log_dir: Path, labels: list[int] | None = None) -> list[dict[str, Any]]:
    env_before = dict(os.environ)
    if "--ray" in cfg["args"]:
        os.environ.update(RAY_ENV)
    srv = ServerProcess(["--export", str(export), *cfg["args"]], log_path=log_dir / f"{cfg['name']}.log",
                        ready_timeout_s=240, stop_timeout_s=60)
    records = []
    try:
        t0 = time.perf_counter()
        srv.start()
        startup_s = time.perf_counter() - t0
        url = srv.url
        warm = [{"text": texts[i % len(texts)]} for i in range(128)]
        load(url + "/v1/classify", warm, concurrency=16, time_limit_s=30)
        for c in levels:
            payloads = [{"text": texts[(i * 7) % len(texts)]} for i in range(max_requests)]
            before, cpu0 = _pool_stats(url), _server_cpu_s(srv.proc.pid)
            res = load(url + "/v1/classify", payloads, concurrency=c, time_limit_s=time_limit_s)
            after, cpu1 = _pool_stats(url), _server_cpu_s(srv.proc.pid)
            s = res.summary()
            pool = _delta(after, before, "geep_pool_rows_")
            n_pools = pool.get("geep_pool_rows_count", 0.0)
            depths = {k.split('"')[1]: int(v) for k, v in _delta(after, before, "geep_rows_total").items() if v}
            rec = {"config": cfg["name"], "method": cfg["method"], "pooling": cfg["pooling"],
                   "replicas": cfg.get("replicas"), "concurrency": c, **s,
                   "mean_pool_rows": round(pool.get("geep_pool_rows_sum", 0.0) / n_pools, 2) if n_pools else None,
                   "server_cpu_ms_per_request": round(1e3 * (cpu1 - cpu0) / max(1, s["requests"]), 3),
                   "rows_per_depth": depths, "startup_s": round(startup_s, 1),
                   "load_average": [round(x, 2) for x in os.getloadavg()]}
            if "--ray" in cfg["args"]:
                rec["mean_pool_rows"] = None  # /metrics shows one replica's pools only; not comparable
            print(f"{cfg['name']:>20} c={c:<4} {s['requests_per_s']:>8.1f} req/s  p50 {s['p50_ms']:>7.1f}  "
                  f"p95 {s['p95_ms']:>7.1f}  p99 {s['p99_ms']:>7.1f} ms  pool {rec['mean_pool_rows']}  "
                  f"errors {s['errors']}", flush=True)
            records.append(rec)
        if labels is not None and records:
            acc = served_accuracy(url, texts, labels)
            print(f"{cfg['name']:>20} served accuracy {acc['accuracy']:.4f} on {acc['rows']} dev texts", flush=True)
            for rec in records:
                rec["served_accuracy"] = acc
    finally:
        srv.stop()
        os.environ.clear()
        os.environ.update(env_before)
    return records


def _at(records: list[dict], name: str, c: int, key: str = "requests_per_s") -> float | None:
    for r in records:
        if r["config"] == name and r["concurrency"] == c:
            return r[key]
    return None


def summarize(records: list[dict], c: int = 32) -> dict[str, Any]:
    """Noise (spread of the two identical GEEP runs) and the issue's two goals at concurrency ``c``."""
    out: dict[str, Any] = {"concurrency": c}
    a, b = _at(records, "geep_pool", c), _at(records, "geep_pool_repeat", c)
    full, off = _at(records, "full_pool", c), _at(records, "geep_nopool", c)
    if a and b:
        out["noise_geep_pool_runs_rps"] = [a, b]
        out["noise_spread_pct"] = round(100 * abs(a - b) / ((a + b) / 2), 1)
        noise_all = [abs(x - y) / ((x + y) / 2) for x, y in
                     ((_at(records, "geep_pool", k), _at(records, "geep_pool_repeat", k))
                      for k in sorted({r["concurrency"] for r in records})) if x and y]
        out["noise_spread_pct_all_levels"] = [round(100 * v, 1) for v in noise_all]
    if a and b and full:
        out["geep_over_full_pooled"] = [round(min(a, b) / full, 3), round(max(a, b) / full, 3)]
        out["goal_geep_over_full_1.3x_met"] = min(a, b) / full >= 1.3
    if a and b and off:
        out["pool_on_over_off_geep"] = [round(min(a, b) / off, 3), round(max(a, b) / off, 3)]
        out["goal_pool_on_over_off_2x_met"] = min(a, b) / off >= 2.0
    full_off = _at(records, "full_nopool", c)
    if full and full_off:
        out["pool_on_over_off_full"] = round(full / full_off, 3)
    return out


def plot(records: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, grid = plt.subplots(2, 2, figsize=(13, 9))
    axes = grid.ravel()
    levels = sorted({r["concurrency"] for r in records})
    names = list(dict.fromkeys(r["config"] for r in records))
    for name in names:
        rs = sorted((r for r in records if r["config"] == name), key=lambda r: r["concurrency"])
        xs = [r["concurrency"] for r in rs]
        style = "--" if "nopool" in name else ":" if name.startswith("ray") else "-"
        for ax, key in zip(axes, ("rows_per_s", "p50_ms", "p95_ms", "p99_ms")):
            ax.plot(xs, [r[key] for r in rs], style, marker="o", label=name)
    for ax, label in zip(axes, ("throughput (texts/s)", "p50 latency (ms)", "p95 latency (ms)",
                                "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(x) for x in levels])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if "latency" in label:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


@dataclasses.dataclass(frozen=True)
class ServeBenchConfig:
    """One run of the serving benchmark: the export, the load levels and what every server is started with.

    ``command`` is recorded in the result as what reproduces it; ``only``: configuration names to run (None: all).
    """

    export: Path
    command: str
    levels: tuple[int, ...] = (1, 8, 32, 128)
    max_requests: int = 600
    time_limit_s: float = 6.0
    engine_batch: int | None = None
    threads: int = 1
    ray: bool = False
    only: frozenset[str] | None = None
    log_dir: Path = Path("/tmp/serve_bench_logs")


def run_serve_bench(cfg: ServeBenchConfig) -> dict[str, Any]:
    """Every configuration at every level, then the result JSON's record (command, machine, workload, summary,
    records)."""
    from geep_deploy.machine import machine_info
    from geep_deploy.service.runner import DEFAULT_ENGINE_BATCH
    from runtime.dispatch import default_call_cost

    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((cfg.export / "manifest.json").read_text())
    num_layers = int(manifest.get("num_layers") or manifest["backbone"]["num_hidden_layers"])
    engine_batch = cfg.engine_batch or DEFAULT_ENGINE_BATCH
    dev = load_split(bundled_data_dir(), "dev")
    texts, labels = list(dev.texts_a), [int(y) for y in dev.labels]
    levels = list(cfg.levels)
    cfgs = configs(num_layers, cfg.ray, cfg.engine_batch, cfg.threads)
    if cfg.only:
        cfgs = [c for c in cfgs if c["name"] in cfg.only]
    t0 = time.perf_counter()
    records: list[dict] = []
    for c in cfgs:
        records += run_config(c, cfg.export, texts, levels, cfg.max_requests, cfg.time_limit_s, cfg.log_dir,
                              labels=None if c["name"].endswith("_repeat") else labels)
    machine = {**machine_info("cpu"), "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
               "node": platform.node()}
    return {"command": cfg.command,
            "machine": machine, "export": str(cfg.export), "num_layers": num_layers,
            "predictor": predictor_of(manifest),
            "call_cost_tokens": default_call_cost("cpu"),
            "workload": {"data": "SST-2 dev (bundled), one text per request", "levels": levels,
                         "max_requests_per_level": cfg.max_requests, "time_limit_s_per_level": cfg.time_limit_s,
                         "threads": cfg.threads, "pool_on": [*POOL_ON, "--engine-batch", str(engine_batch)],
                         "pool_off": POOL_OFF, "pool_wait": "adaptive (the service's default; a lone request "
                         "goes at once when pools see no other request arrive while they run)",
                         "client": "aiohttp, same machine"},
            "wall_s": round(time.perf_counter() - t0, 1), "summary": summarize(records), "records": records}


def plot_title(result: dict[str, Any]) -> str:
    """The figure's title: the machine, the workload and the export served."""
    m = result["machine"]
    return (f"geep-deploy serve, {m['cpu']} ({m['cpu_count']} cores, shared), SST-2 dev texts, "
            f"1 text/request; {Path(result['export']).name}")
