"""Exit-table and exit-prediction cost (``bench/exit_table_bench.py`` is its command line): table throughput of the
NumPy and CuPy twins, and exit prediction plus ``plan_groups`` as a share of the full model's batch time on the
backend that serves on the CPU (ONNX Runtime; ``--model-backend torch`` for the eager module).

Every figure is given as wall-clock and as process CPU time: on a shared machine CPU time is the better estimate
of an idle core.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.bench.machine import cpu_bench_machine_info
from geep_deploy.names import ONNXRUNTIME, TORCH
from runtime.exit_table import ExitHashTable
from runtime.keys import EMPTY_KEY

L = 6


def _random_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    keys = np.unique(rng.integers(0, EMPTY_KEY, size=int(n * 1.01) + 16, dtype=np.uint64, endpoint=False))
    return rng.permutation(keys)[:n]


def _best(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and median process CPU time of ``fn`` (CPU time is what an idle core would take)."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def bench_numpy_table(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        keys = _random_keys(rng, n)
        exits = rng.integers(1, L + 1, n)
        absent = _random_keys(np.random.default_rng(n), n)
        reps = 1 if n >= 2**23 else repeats  # one bulk insert of 8M keys takes seconds

        def build(n: int = n, keys: np.ndarray = keys, exits: np.ndarray = exits) -> ExitHashTable:
            t = ExitHashTable.for_keys(n, L, load_factor=0.5)
            t.insert(keys, exits)
            return t

        t_insert = _best(build, reps)
        table = build()
        query = rng.permutation(keys)
        assert (table.lookup(query[:1000]) >= 0).all()
        t_hit = _best(lambda q=query, t=table: t.lookup(q), max(reps, 3))
        t_miss = _best(lambda q=absent, t=table: t.lookup(q), max(reps, 3))
        row = {"keys": n, "capacity": table.capacity, "load": round(table.load, 3),
               "table_mb": round((table.keys.nbytes + table.counts.nbytes) / 2**20, 1),
               "inserts_per_s": n / t_insert[0], "lookups_per_s_hit": n / t_hit[0],
               "lookups_per_s_miss": n / t_miss[0], "inserts_per_cpu_s": n / t_insert[1],
               "lookups_per_cpu_s_hit": n / t_hit[1], "lookups_per_cpu_s_miss": n / t_miss[1]}
        print(f"numpy  n={n:>9,}  insert {row['inserts_per_s']:.3g}/s  lookup hit {row['lookups_per_s_hit']:.3g}/s"
              f"  miss {row['lookups_per_s_miss']:.3g}/s  (per CPU-second: insert {row['inserts_per_cpu_s']:.3g},"
              f" hit {row['lookups_per_cpu_s_hit']:.3g}, miss {row['lookups_per_cpu_s_miss']:.3g}; "
              f"{row['table_mb']} MB)", flush=True)
        rows.append(row)
        del table
    return rows


def bench_cupy_table(sizes: list[int], repeats: int) -> dict[str, Any]:
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return {"skipped": "no CUDA device visible to CuPy"}
    except Exception as e:  # ImportError or any CUDA driver failure means "skipped"
        return {"skipped": f"CuPy unavailable here ({type(e).__name__}: {str(e)[:120]})"}
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        keys = cupy.asarray(_random_keys(rng, n))
        exits = cupy.asarray(rng.integers(1, L + 1, n))

        def build(n: int = n, keys: Any = keys, exits: Any = exits) -> Any:
            from runtime.kernels.cupy_table import CupyExitHashTable

            t = CupyExitHashTable.from_host(ExitHashTable.for_keys(n, L))
            t.insert(keys, exits)
            cupy.cuda.Device().synchronize()
            return t

        t_insert = _best(build, repeats)
        table = build()

        def look(t: Any = table, keys: Any = keys) -> None:
            t.lookup(keys)
            cupy.cuda.Device().synchronize()

        t_look = _best(look, repeats)[0]
        rows.append({"keys": n, "inserts_per_s": n / t_insert[0], "lookups_per_s_hit": n / t_look})
        print(f"cupy   n={n:>9,}  insert {n / t_insert[0]:.3g}/s  lookup {n / t_look:.3g}/s", flush=True)
    return {"device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "rows": rows}


def bench_prediction_share(batch_sizes: list[int], repeats: int, threads: int,
                           backend: str = ONNXRUNTIME) -> dict[str, Any]:
    """Exit prediction plus ``plan_groups`` against the depth-L model's batch time on ``backend`` (through the
    runner protocol, `engines.registry.open_engine`: ONNX Runtime runs a depth-L graph traced here, torch the
    eager module), on the bundled SST-2 dev rows."""
    import tempfile

    import onnx
    import torch

    torch.set_num_threads(threads)  # on a shared, loaded machine more threads than free cores stall torch badly

    from engines.registry import open_engine
    from export.onnx_export import export_graph
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.encoding import TextEncoder, length_sorted_batches, pad_batch
    from geep_deploy.model import ExitBert
    from geep_deploy.names import DEPTH
    from runtime.dispatch import plan_groups
    from runtime.predictor import build_predictor

    bb = load_backbone_dir()
    model = ExitBert(bb.shape, 2)
    model.load_backbone(bb.weights)
    model.eval()
    tmp = tempfile.TemporaryDirectory(prefix="geep-share-")
    if backend == TORCH:
        engine = open_engine(TORCH, model, kind=DEPTH, depth=L, check_inputs=False)
    else:
        graph = Path(tmp.name) / "depth.onnx"
        onnx.save(export_graph(model, DEPTH, L), str(graph))
        engine = open_engine(backend, graph, threads=threads, check_inputs=False)
    encoder = TextEncoder(bb.tokenizer_json, 128)
    train = encoder.encode(load_split(bundled_data_dir(), "train").texts_a)
    dev = encoder.encode(load_split(bundled_data_dir(), "dev").texts_a)
    # Table of the real size (2,000 training rows); exit labels are random here: speed does not depend on them.
    labels = np.random.default_rng(0).integers(1, L + 1, len(train))
    predictor = build_predictor(train.ids, labels, L, sorted(encoder.special_ids)).with_params(0.5, 0)
    predictor.weighted_histograms()  # built once at load time in a service
    out: dict[str, Any] = {"model_backend": backend, "threads": threads, "table_keys": predictor.table.size,
                           "table_capacity": predictor.table.capacity, "dev_rows": len(dev), "rows": []}
    for b in batch_sizes:
        batches = length_sorted_batches(dev.lengths, b)
        pick = np.linspace(0, len(batches) - 1, {1: 40, 32: 8}.get(b, 4)).round().astype(int)
        chosen = [batches[i] for i in sorted(set(pick.tolist()))]
        feeds = [pad_batch(dev.take(idx)) for idx in chosen]
        rows = [[dev.ids[i] for i in idx] for idx in chosen]
        lengths = [dev.lengths[idx] for idx in chosen]
        engine.infer(feeds[0])  # warm-up
        shape = (2, repeats, len(chosen))  # [wall, cpu]
        model_t, pred_t = np.zeros(shape), np.zeros(shape)
        for r in range(repeats):
            for j in range(len(chosen)):
                t0, c0 = time.perf_counter(), time.process_time()
                d = predictor.predict(rows[j])
                plan_groups(d, lengths[j])
                t1, c1 = time.perf_counter(), time.process_time()
                engine.infer(feeds[j])
                t2, c2 = time.perf_counter(), time.process_time()
                pred_t[:, r, j], model_t[:, r, j] = (t1 - t0, c1 - c0), (t2 - t1, c2 - c1)
        m, p = np.median(model_t, axis=1).sum(axis=1), np.median(pred_t, axis=1).sum(axis=1)
        row = {"batch_size": b, "batches_timed": len(chosen), "repeats": repeats,
               "model_ms_per_batch": 1e3 * m[0] / len(chosen),
               "predict_plus_plan_ms_per_batch": 1e3 * p[0] / len(chosen), "share_percent": 100 * p[0] / m[0],
               "model_cpu_ms_per_batch": 1e3 * m[1] / len(chosen),
               "predict_plus_plan_cpu_ms_per_batch": 1e3 * p[1] / len(chosen), "share_percent_cpu": 100 * p[1] / m[1]}
        print(f"batch {b:>3}: model {row['model_ms_per_batch']:.2f} ms, predictor+plan "
              f"{row['predict_plus_plan_ms_per_batch']:.3f} ms -> {row['share_percent']:.2f}% of the model "
              f"(CPU time: {row['model_cpu_ms_per_batch']:.2f} vs {row['predict_plus_plan_cpu_ms_per_batch']:.3f} ms"
              f" -> {row['share_percent_cpu']:.2f}%)", flush=True)
        out["rows"].append(row)
    engine.close()
    tmp.cleanup()
    return out


def run_exit_table_bench(sizes: list[int], batch_sizes: list[int], repeats: int = 3, threads: int = 1,
                         parts: tuple[str, ...] = ("table", "model"), command: str = "",
                         model_backend: str = ONNXRUNTIME) -> dict[str, Any]:
    """The result JSON's record: the machine, then the ``table`` throughput and the ``model`` prediction share
    (each where named in ``parts``), and the load average at the end."""
    result: dict[str, Any] = {"machine": cpu_bench_machine_info(), "num_layers": L, "load_factor": 0.5,
                              "command": command}
    if "table" in parts:
        result["numpy_table"] = bench_numpy_table(sizes, repeats)
        result["cupy_table"] = bench_cupy_table(sizes, repeats)
    if "model" in parts:
        result["prediction_share"] = bench_prediction_share(batch_sizes, repeats, threads, model_backend)
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    return result
