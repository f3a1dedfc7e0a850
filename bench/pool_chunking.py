"""How a pooled `predict` should cut its rows into engine calls on the CPU: padded work against per-call cost.

A service pools requests in arrival order, so a pool mixes short and long rows. `GeepEngine` sorts each depth
group by length and cuts it into engine calls. This bench times one `predict` per pool of ``--pool`` random rows
(the serving case) for every way of cutting, and one `predict` per row (no pooling) for reference:

- ``b1``: every row alone (what a service without pooling runs);
- ``fixed8`` / ``fixed64``: chunks of at most 8 / 64 length-sorted rows (the old cutting);
- ``cost{c}``: `runtime.dispatch.length_cuts`, the fewest padded tokens plus ``c`` tokens per call;
- the default configuration runs twice (``..._again``): the spread of the pair is the run's noise.

Each method (``full``: every row at depth L; ``geep``: the export's stored predictor) runs every contender in
interleaved repeats on one engine; the figure is the median rows/s of the repeats (model + dispatch time of
`predict`, tokenizing included). `runtime.dispatch.CALL_COST_TOKENS` takes its CPU value from this JSON.

    .venv/bin/python bench/pool_chunking.py --export runs/multi_dataset/sst2/export/geep \\
        --json bench/results/pool_chunking_cpu.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

COSTS = (0.0, 4.0, 16.0, 64.0, 256.0)


def contenders(default_cost: float) -> dict[str, tuple[int, float | None, int]]:
    """name -> (rows per predict call, call_cost, max rows per engine call)."""
    out: dict[str, tuple[int, float | None, int]] = {"b1": (1, None, 1), "fixed8": (0, None, 8),
                                                     "fixed64": (0, None, 64)}
    out.update({f"cost{c:g}": (0, c, 64) for c in COSTS})
    out[f"cost{default_cost:g}_again"] = (0, default_cost, 64)
    return out


def time_pass(engine: Any, texts: list[str], pool: int, depth: int | None, call_cost: float | None,
              max_rows: int) -> float:
    """Seconds to classify ``texts`` in consecutive pools of ``pool`` rows, one ``predict`` per pool."""
    engine.call_cost = call_cost
    t0 = time.perf_counter()
    for i in range(0, len(texts), pool):
        chunk = texts[i : i + pool]
        engine.predict(chunk, batch_size=max_rows, depths=None if depth is None else [depth] * len(chunk))
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    from geep_deploy.atomic import atomic_write_text
    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.machine import machine_info
    from runtime import GeepEngine
    from runtime.dispatch import CALL_COST_TOKENS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: .venv/bin/python bench/pool_chunking.py --export "
                                        "runs/multi_dataset/sst2/export/geep --json /tmp/pool.json",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", type=Path, required=True, help="an export directory (geep-deploy export)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/pool_chunking_cpu.json")
    ap.add_argument("--pool", type=int, default=32, help="rows per pooled predict call (default 32)")
    ap.add_argument("--rows", type=int, default=512, help="SST-2 dev rows, shuffled (default 512)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    a = ap.parse_args(argv)
    dev = load_split(bundled_data_dir(), "dev")
    order = np.random.default_rng(0).permutation(len(dev))[: a.rows]
    texts = [dev.texts_a[i] for i in order]
    engine = GeepEngine.load(a.export, backend="onnxruntime", device="cpu", threads=a.threads)
    L = engine.num_layers
    default_cost = CALL_COST_TOKENS["cpu"]
    table = contenders(default_cost)
    lengths = engine.encoder.encode(texts).lengths
    result: dict[str, Any] = {
        "command": shlex.join([".venv/bin/python", "bench/pool_chunking.py", *(argv or sys.argv[1:])]),
        "machine": machine_info(),
        "config": {"export": str(a.export), "pool": a.pool, "rows": len(texts), "repeats": a.repeats,
                   "threads": a.threads, "backend": "onnxruntime", "precision": "fp32", "data": "sst2 dev (bundled)",
                   "mean_tokens": float(lengths.mean()), "max_tokens": int(lengths.max()),
                   "default_call_cost": default_cost, "contenders": {k: list(v) for k, v in table.items()}},
        "methods": {}}
    for method, depth in (("full", L), ("geep", None)):
        time_pass(engine, texts[: 4 * a.pool], a.pool, depth, default_cost, 64)  # warm-up
        secs: dict[str, list[float]] = {n: [] for n in table}
        for r in range(a.repeats):
            for name, (pool, cost, max_rows) in table.items():
                secs[name].append(time_pass(engine, texts, pool or a.pool, depth, cost, max_rows))
                print(f"{method} repeat {r + 1}/{a.repeats} {name}: {len(texts) / secs[name][-1]:.0f} rows/s",
                      flush=True)
        rps = {n: len(texts) / float(np.median(s)) for n, s in secs.items()}
        again = f"cost{default_cost:g}_again"
        result["methods"][method] = {
            "seconds": secs, "rows_per_s": rps,
            "over_b1": {n: v / rps["b1"] for n, v in rps.items()},
            "noise": abs(rps[again] / rps[f"cost{default_cost:g}"] - 1),
            "best": max((n for n in rps if n != "b1" and not n.endswith("_again")), key=rps.get)}
    engine.close()
    a.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.json, json.dumps(result, indent=1) + "\n")
    for m, v in result["methods"].items():
        print(m, {n: round(x, 2) for n, x in v["over_b1"].items()}, f"noise {v['noise']:.1%}", "best", v["best"])
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
