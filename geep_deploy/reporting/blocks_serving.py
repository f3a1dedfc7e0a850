"""The docs' serving figures: the HTTP service under load (``bench/serve_bench.py``) and how pooled rows are cut
into engine calls (``bench/pool_chunking.py``)."""

from __future__ import annotations

from typing import Any

from geep_deploy.names import TABLE
from geep_deploy.reporting.format import machine, pct, table
from geep_deploy.reporting.sources import Results

SERVE = "serve_cpu.json"
SERVE_LABELS = {"geep_pool": "GEEP, pooling on", "full_pool": "`full`, pooling on", "geep_nopool": "GEEP, pooling off",
                "full_nopool": "`full`, pooling off", "geep_pool_repeat": "GEEP, pooling on, run again",
                "ray_geep_1replica": "Ray Serve, 1 replica", "ray_geep_2replica": "Ray Serve, 2 replicas"}


def _serve_rec(d: dict[str, Any], config: str, c: int) -> dict[str, Any] | None:
    return next((x for x in d["records"] if x["config"] == config and x["concurrency"] == c), None)


def _serve_range(d: dict[str, Any], configs: tuple[str, ...], c: int, key: str, fmt: str = "{:.0f}") -> str:
    vals = sorted(x[key] for k in configs if (x := _serve_rec(d, k, c)) is not None)
    return fmt.format(vals[0]) if vals[0] == vals[-1] else f"{fmt.format(vals[0])}-{fmt.format(vals[-1])}"


def block_serving(r: Results) -> list[str]:
    d = r(SERVE)
    return [r.source(SERVE), "", *serving_lines(d)]


def _served_accuracy(d: dict[str, Any], method: str) -> str:
    acc = [x["served_accuracy"]["accuracy"] for x in d["records"] if x["method"] == method and "served_accuracy" in x
           and not x["config"].startswith("ray")]
    return pct(acc[0]) if acc else "?"


def serving_lines(d: dict[str, Any]) -> list[str]:
    """The serving table and its summary lines, for any `serve_bench.py` JSON."""
    levels = d["workload"]["levels"]
    names = list(dict.fromkeys(x["config"] for x in d["records"]))
    rows = []
    for n in names:
        cells = [SERVE_LABELS.get(n, n)]
        for c in levels:
            x = _serve_rec(d, n, c)
            cells.append(f"{x['rows_per_s']:.0f}, {x['p50_ms']:.0f} / {x['p99_ms']:.0f}" if x else "")
        x32 = _serve_rec(d, n, 32)
        cells.append(f"{x32['mean_pool_rows']:.1f}" if x32 and x32.get("mean_pool_rows") else "")
        rows.append(cells)
    s = d["summary"]
    loads = [v for x in d["records"] for v in x["load_average"][:1]]
    errors = sum(x["errors"] for x in d["records"])
    pool, nopool = ("geep_pool", "geep_pool_repeat"), ("geep_nopool",)
    ray = ("ray_geep_1replica", "ray_geep_2replica")
    served = ""
    if any("served_accuracy" in x for x in d["records"]):
        rows_acc = next(x["served_accuracy"]["rows"] for x in d["records"] if "served_accuracy" in x)
        served = (f" Accuracy of the answers served on all {rows_acc} dev texts: GEEP {_served_accuracy(d, 'geep')}, "
                  f"`full` {_served_accuracy(d, 'full')}.")
    return [f"Export `{d['export']}` (exit predictor: {d.get('predictor') or TABLE}), {d['workload']['threads']} "
            f"intra-op thread(s) per server or replica, at most {d['workload']['pool_on'][-1]} rows per engine call "
            f"when pooled{', cut by padded work' if d.get('call_cost_tokens') is not None else ''}. Machine: "
            f"{machine(d['machine'])}; 1-minute load average {min(loads):.0f}-{max(loads):.0f} during "
            f"the levels. {d['workload']['data']}; at most "
            f"{d['workload']['max_requests_per_level']} requests and {d['workload']['time_limit_s_per_level']:g} s "
            f"per level; {errors} errors in all.{served}", "",
            *table(["configuration", *[f"c={c}: texts/s, p50 / p99 ms" for c in levels], "mean pool rows, c=32"],
                   rows, "-" + "r" * (len(levels) + 1)), "",
            f"- noise: the two identical GEEP runs differ by {min(s['noise_spread_pct_all_levels']):.0f}-"
            f"{max(s['noise_spread_pct_all_levels']):.0f}% per level ({s['noise_spread_pct']:.0f}% at concurrency "
            f"{s['concurrency']});",
            f"- GEEP over `full`, both pooled, at concurrency {s['concurrency']}: "
            f"{s['geep_over_full_pooled'][0]:.2f}x and {s['geep_over_full_pooled'][1]:.2f}x for the two GEEP runs "
            f"(goal 1.3x: {'met' if s['goal_geep_over_full_1.3x_met'] else 'missed'});",
            f"- pooling on over off at concurrency {s['concurrency']}: GEEP {s['pool_on_over_off_geep'][0]:.2f}x and "
            f"{s['pool_on_over_off_geep'][1]:.2f}x, `full` {s['pool_on_over_off_full']:.2f}x (goal 2x: "
            f"{'met' if s['goal_pool_on_over_off_2x_met'] else 'missed'}); at concurrency 128 pooled GEEP answers "
            f"{_serve_range(d, pool, 128, 'rows_per_s')} texts/s against {_serve_range(d, nopool, 128, 'rows_per_s')}"
            f" unpooled, p99 {_serve_range(d, pool, 128, 'p99_ms')} against "
            f"{_serve_range(d, nopool, 128, 'p99_ms')} ms;",
            f"- server CPU per request at concurrency 32: GEEP {_serve_range(d, pool, 32, 'server_cpu_ms_per_request', '{:.1f}')}"
            f" ms pooled, {_serve_range(d, nopool, 32, 'server_cpu_ms_per_request', '{:.1f}')} ms unpooled; `full` "
            f"{_serve_range(d, ('full_pool',), 32, 'server_cpu_ms_per_request', '{:.1f}')} and "
            f"{_serve_range(d, ('full_nopool',), 32, 'server_cpu_ms_per_request', '{:.1f}')} ms"
            + (f"; Ray Serve {_serve_range(d, ray, 32, 'server_cpu_ms_per_request', '{:.1f}')} ms (proxy and "
               "replicas)." if any(_serve_rec(d, k, 32) for k in ray) else ".")]


def block_serving_threads1(r: Results) -> list[str]:
    return [r.source("serve_cpu_threads1.json"), "", *serving_lines(r("serve_cpu_threads1.json"))]


CHUNKING = "pool_chunking_cpu.json"


def value_pool_chunking(r: Results) -> str:
    """Pooled predict over one row at a time, per way of cutting the pool into engine calls (threads 1 and 2)."""
    parts = []
    for name in (CHUNKING, "pool_chunking_cpu_threads2.json"):
        d = r(name)
        c = f"cost{d['config']['default_call_cost']:g}"
        m = {k: d["methods"][k]["over_b1"] for k in ("geep", "full")}
        noise = max(d["methods"][k]["noise"] for k in ("geep", "full"))
        parts.append(f"{d['config']['threads']} thread{'s' if d['config']['threads'] > 1 else ''}: pools of "
                     f"{d['config']['pool']} rows cut by padded work run GEEP {m['geep'][c]:.2f}x and `full` "
                     f"{m['full'][c]:.2f}x as fast as one row per call, against {m['geep']['fixed64']:.2f}x and "
                     f"{m['full']['fixed64']:.2f}x as one padded call and {m['geep']['fixed8']:.2f}x and "
                     f"{m['full']['fixed8']:.2f}x in 8-row chunks (noise {100 * noise:.0f}%)")
    return "; ".join(parts)
