"""Served throughput and latency against concurrency: GEEP vs `full`, pooling on vs off, and Ray Serve replicas.

Each configuration is one `geep-deploy serve` subprocess on 127.0.0.1 (the same code users run), warmed up, then
hit with one SST-2 dev text per request at each concurrency from an aiohttp loop, every level bounded in count
and time. `full` is the same export served with `--depth L` (every row at the last depth, same pooling, same
length-sorted dispatch). Pooling off is `--max-batch 1 --max-wait-ms 0`: one request per predict call.
The first configuration runs again at the end: the spread of the two is the run's noise.
Recorded per level: requests/s, rows/s, p50/p95/p99 latency, mean pooled batch (from /metrics), server CPU
seconds per request (server process and its children) and rows per depth. The benchmark is
``geep_deploy.bench.serve_bench``.

example:
  PYTHONPATH=$PWD .venv/bin/python bench/serve_bench.py --export runs/demo/export_geep \\
      --json bench/results/serve_cpu.json --plot bench/results/serve_cpu.png [--ray]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geep_deploy.atomic import atomic_write_text
from geep_deploy.bench.serve_bench import ServeBenchConfig, plot, plot_title, run_serve_bench

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", type=Path, required=True)
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/serve_cpu.json")
    ap.add_argument("--plot", type=Path, default=ROOT / "bench/results/serve_cpu.png")
    ap.add_argument("--concurrency", default="1,8,32,128")
    ap.add_argument("--max-requests", type=int, default=600, help="most requests per level (default 600)")
    ap.add_argument("--time-limit", type=float, default=6.0, help="seconds per level at most (default 6)")
    ap.add_argument("--engine-batch", type=int, default=None,
                    help="most rows per engine call inside a pool (serve --engine-batch; default: the service's)")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads of every server and replica (default 1: the machine is shared)")
    ap.add_argument("--ray", action="store_true", help="also Ray Serve with 1 and 2 replicas")
    ap.add_argument("--only", default=None, help="comma list of configuration names to run")
    ap.add_argument("--log-dir", type=Path, default=Path("/tmp/serve_bench_logs"))
    a = ap.parse_args()
    cfg = ServeBenchConfig(
        export=a.export, command=" ".join([".venv/bin/python", "bench/serve_bench.py", *sys.argv[1:]]),
        levels=tuple(int(x) for x in a.concurrency.split(",")), max_requests=a.max_requests,
        time_limit_s=a.time_limit, engine_batch=a.engine_batch, threads=a.threads, ray=a.ray,
        only=frozenset(a.only.split(",")) if a.only else None, log_dir=a.log_dir)
    result = run_serve_bench(cfg)
    atomic_write_text(a.json, json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.json} and {plot(result['records'], a.plot, plot_title(result))}")
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
