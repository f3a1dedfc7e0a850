"""What ``full``'s dispatch and GEEP's ``probe:0`` spend outside the engines (Python, padding, bookkeeping), per pass.

The all-depth-L check (`bench/all_depth_l_overhead.py`) times whole dispatches; its ``dispatch - graphs`` figure
subtracts medians of separate repeats and carries their noise. This bench splits each pass itself: the engines
add up the seconds of their own calls (``BaseEngine.inference_seconds``), so a pass's time outside them is its
wall time minus that sum, measured in the same pass. On each suite seed's batch-64 bench rows, length-sorted into
the same batches as the check, ``full`` (every row at depth L on the ``full`` export) and ``probe:0`` (GEEP's
probe dispatch at risk 0) alternate for ``--repeats`` passes after one warm-up pass each; figures are medians.

    .venv/bin/python bench/dispatch_outside_engines.py --work runs/multi_dataset/sst2/seed42 \\
        runs/multi_dataset/weibo/seed42 --json bench/results/dispatch_outside_engines_cpu.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _pass(fn: Callable[[], Any], engines: list[Any]) -> tuple[float, float]:
    """(wall seconds, seconds inside ``engines``) of one call of ``fn``."""
    before = sum(e.inference_seconds for e in engines)
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return wall, sum(e.inference_seconds for e in engines) - before


def _one_work(work: Path, batch: int, repeats: int, threads: int | None) -> dict[str, Any]:
    from geep_deploy.bench.suite_seed import full_pass, probe0_pass, seed_rows
    from geep_deploy.encoding import length_sorted_batches
    from runtime import GeepEngine

    data = seed_rows(work, batch, "dispatch_outside_engines")
    geep = GeepEngine.load(work / "export" / "geep", backend="onnxruntime", device="cpu", threads=threads)
    full = GeepEngine.load(work / "export" / "full", backend="onnxruntime", device="cpu", threads=threads,
                           fixed_depth=geep.num_layers)
    try:
        probe0 = geep.with_probe(risk=0.0, escalate=None)
        enc = full.encoder.encode(data.texts_a, data.texts_b)
        batches = [enc.take(b) for b in length_sorted_batches(enc.lengths, batch)]
        contenders = {"full": (full_pass(full, batches, batch), list(full.engines.values())),
                      "probe0": (probe0_pass(probe0, batches, batch), probe0.probe.engines)}
        for fn, _ in contenders.values():  # warm-up
            fn()
        passes: dict[str, list[tuple[float, float]]] = {n: [] for n in contenders}
        names = list(contenders)
        for r in range(repeats):
            for n in names[r % 2:] + names[: r % 2]:
                passes[n].append(_pass(*contenders[n]))
    finally:
        full.close()
        geep.close()
    out: dict[str, Any] = {"work": str(work), "rows": len(enc), "batches": len(batches),
                           "mean_tokens": float(enc.lengths.mean())}
    for n, got in passes.items():
        wall, inside = np.array(got).T
        out[n] = {"wall_s": float(np.median(wall)), "engines_s": float(np.median(inside)),
                  "outside_s": float(np.median(wall - inside)), "outside_runs_s": (wall - inside).tolist()}
    out["extra_outside_share_of_full"] = (out["probe0"]["outside_s"] - out["full"]["outside_s"]) / out["full"]["wall_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    from geep_deploy.atomic import atomic_write_text
    from geep_deploy.machine import machine_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: .venv/bin/python bench/dispatch_outside_engines.py --work "
                                        "runs/multi_dataset/sst2/seed42 --json /tmp/outside.json",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, nargs="+", required=True,
                    help="suite seed work folders (export/geep, export/full and bench_rows_b<batch> in each)")
    ap.add_argument("--json", type=Path, required=True, help="where to write the result")
    ap.add_argument("--batch", type=int, default=64, help="rows per batch (default 64, the suite's)")
    ap.add_argument("--repeats", type=int, default=10, help="passes per dispatch after the warm-up (default 10)")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's)")
    a = ap.parse_args(argv)
    if min(a.batch, a.repeats) < 1:
        ap.error(f"--batch and --repeats must be >= 1, got {a.batch} and {a.repeats}")
    works = []
    for w in a.work:
        print(f"timing {w} ...", flush=True)
        works.append(_one_work(w, a.batch, a.repeats, a.threads))
    result = {
        "command": shlex.join([".venv/bin/python", "bench/dispatch_outside_engines.py", *(argv or sys.argv[1:])]),
        "machine": machine_info(),
        "config": {"batch": a.batch, "repeats": a.repeats, "threads": a.threads, "backend": "onnxruntime",
                   "precision": "fp32"},
        "works": works,
    }
    a.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.json, json.dumps(result, indent=1) + "\n")
    for w in works:
        print(f"{w['work']}: outside the engines per pass, full {1e3 * w['full']['outside_s']:.1f} ms, probe:0 "
              f"{1e3 * w['probe0']['outside_s']:.1f} ms; the difference is "
              f"{100 * w['extra_outside_share_of_full']:.2f}% of full's pass ({1e3 * w['full']['wall_s']:.0f} ms)")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
