"""Engines: the base protocol, ONNX Runtime (plain and weight-shared) and torch agree with the torch model."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from models import tiny_model
from runtime_helpers import export_depth_graphs, export_segment_graphs

from engines import EngineOptions, EngineStateError, available_backends, canonical_backend, engine_class
from engines.ort import OrtEngine, OrtWeightPool
from engines.torch_engine import TorchEngine
from geep_deploy.errors import BackendUnavailable, ConfigError, DataError, GeepError

L = 3


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def graphs(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("graphs")
    return export_depth_graphs(model, d), export_segment_graphs(model, d / "seg")


def make_feed(b: int = 4, s: int = 9, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 5000, size=(b, s)).astype(np.int64)
    mask = np.ones((b, s), dtype=np.int64)
    for i in range(b):  # ragged rows: padding at the end, as pad_batch makes it
        n = int(rng.integers(2, s + 1))
        mask[i, n:] = 0
        ids[i, n:] = 0
    types = np.zeros((b, s), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def reference(model, feed, depth):
    with torch.no_grad():
        t = {k: torch.from_numpy(v) for k, v in feed.items()}
        return model(t["input_ids"], t["attention_mask"], t["token_type_ids"], depth=depth).numpy()


@pytest.mark.parametrize("shared", [False, True])
def test_ort_depths_agree_with_torch(model, graphs, shared):
    pool = OrtWeightPool() if shared else None
    for k, path in graphs[0].items():
        with OrtEngine(path, pool=pool, threads=1) as eng:
            assert eng.provider == "CPUExecutionProvider"
            spent = 0.0
            for b, s in ((1, 5), (4, 9), (7, 16)):
                feed = make_feed(b, s, seed=b)
                np.testing.assert_allclose(eng.infer(feed)["logits"], reference(model, feed, k), atol=1e-4)
                spent += eng.last_inference_time
            assert eng.last_inference_time is not None and eng.last_inference_time > 0
            assert eng.inference_seconds == pytest.approx(spent)  # every call's time, summed


def test_weight_pool_loads_each_tensor_once(graphs):
    paths = graphs[0]
    pool = OrtWeightPool()
    engines = [OrtEngine(p, pool=pool, threads=1).load() for p in paths.values()]
    weights_file = next(iter(paths.values())).parent / "weights.bin"
    # every shared tensor is read once: at most the file's size, although three graphs use the embeddings
    assert 0 < pool.bytes_loaded <= weights_file.stat().st_size
    n_before = len(pool)
    OrtEngine(paths[L], pool=pool, threads=1).load()
    assert len(pool) == n_before
    for e in engines:
        e.close()


def test_torch_engine_depths_and_bf16(model):
    feed = make_feed(5, 11)
    for k in range(1, L + 1):
        with TorchEngine(model, depth=k) as eng:
            np.testing.assert_allclose(eng.infer(feed)["logits"], reference(model, feed, k), atol=1e-5)
    m16 = tiny_model()
    with TorchEngine(m16, EngineOptions(precision="bf16"), depth=L) as eng:
        np.testing.assert_allclose(eng.infer(feed)["logits"], reference(model, feed, L), atol=5e-2)


def test_segments_chain_to_every_depth(model, graphs):
    seg = graphs[1]
    feed = make_feed(3, 8)
    with torch.no_grad():
        t = {k: torch.from_numpy(v) for k, v in feed.items()}
        want = [x.numpy() for x in model.forward_all(t["input_ids"], t["attention_mask"], t["token_type_ids"]).logits]
    for backend in ("onnxruntime", "torch"):
        if backend == "onnxruntime":
            embed = OrtEngine(seg["embed"]).load()
            layers = [OrtEngine(seg[f"layer{k}"]).load() for k in range(1, L + 1)]
        else:
            embed = TorchEngine(model, kind="embed").load()
            layers = [TorchEngine(model, kind="layer", depth=k).load() for k in range(1, L + 1)]
        h = embed.infer({"input_ids": feed["input_ids"], "token_type_ids": feed["token_type_ids"]})["hidden"]
        for k, eng in enumerate(layers):
            out = eng.infer({"hidden": h, "attention_mask": feed["attention_mask"]})
            h = out["hidden_out"]
            np.testing.assert_allclose(out["logits"], want[k], atol=1e-4, err_msg=f"{backend} layer {k + 1}")


def test_state_machine_and_input_checks(graphs):
    eng = OrtEngine(graphs[0][1])
    with pytest.raises(EngineStateError, match="not loaded"):
        eng.infer(make_feed())
    eng.load()
    with pytest.raises(EngineStateError, match="already loaded"):
        eng.load()
    meta = eng.input_metadata()
    assert set(meta) == {"input_ids", "attention_mask", "token_type_ids"}
    assert meta["input_ids"].shape == (None, None) and meta["input_ids"].dtype == np.int64
    bad = make_feed()
    bad["input_ids"] = bad["input_ids"].astype(np.int32)
    with pytest.raises(DataError, match=r"input 'input_ids' has dtype int32.*astype\(np.int64\)"):
        eng.infer(bad)
    with pytest.raises(DataError, match="Missing \\['token_type_ids'\\]"):
        eng.infer({k: v for k, v in make_feed().items() if k != "token_type_ids"})
    with pytest.raises(DataError, match="shape"):
        eng.infer({k: v[0] for k, v in make_feed().items()})
    with pytest.raises(DataError, match="expected np.ndarray"):
        eng.infer({k: v.tolist() for k, v in make_feed().items()})
    eng.close()
    eng.close()
    with pytest.raises(EngineStateError, match="closed"):
        eng.infer(make_feed())
    with pytest.raises(EngineStateError, match="closed"):
        eng.load()


def test_missing_file_and_unknown_options(tmp_path, model):
    with pytest.raises(GeepError, match="does not exist"):
        OrtEngine(tmp_path / "nope.onnx").load()
    with pytest.raises(GeepError, match="unknown precision"):
        OrtEngine(tmp_path / "x.onnx", EngineOptions(precision="fp8"))
    with pytest.raises(ConfigError, match="int8 needs"):
        TorchEngine(model, EngineOptions(precision="int8")).load()
    with pytest.raises(ConfigError, match="unknown backend 'tvm'"):
        engine_class("tvm")


def test_registry():
    assert canonical_backend("ort") == "onnxruntime" and canonical_backend("trt") == "tensorrt"
    assert engine_class("onnxruntime") is OrtEngine and engine_class("torch") is TorchEngine
    assert {"onnxruntime", "torch"} <= set(available_backends())
    # the TensorRT module imports without TensorRT; only load() needs it
    assert engine_class("tensorrt").backend == "tensorrt"


def test_open_engine_builds_the_options_from_its_keywords(graphs, model):
    """The keywords that are option fields become the runner's options; the rest reach its constructor."""
    from engines import open_engine
    from engines.torch_engine import TorchOptions
    from engines.trt import TrtEngine

    with open_engine("onnxruntime", graphs[0][1], threads=1, check_inputs=False, name="d1") as eng:
        assert (eng.name, eng.check_inputs, eng.threads, eng.device) == ("d1", False, 1, "cpu")
    with open_engine("torch", model, EngineOptions(check_inputs=False), depth=2, max_batch=32) as eng:
        assert not eng.check_inputs and eng.depth == 2 and max(eng.buckets.batches) == 32
    assert TorchOptions.coerce(EngineOptions(precision="bf16")).precision == "bf16"  # a plain one keeps its fields
    with pytest.raises(TypeError, match="threads"):
        open_engine("torch", model, threads=2)
    with pytest.raises(ConfigError, match="capture"):
        open_engine("torch", model, capture="sometimes")
    with pytest.raises(ConfigError, match="CUDA only"):
        TrtEngine("unused.plan", EngineOptions(device="cpu"))
    assert TrtEngine("unused.plan").device == "cuda"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_absent_names_the_extra(tmp_path):
    from engines.trt import TrtEngine

    plan = tmp_path / "depth1.plan"
    plan.write_bytes(b"not a plan")
    with pytest.raises(BackendUnavailable, match=r"pip install 'geep-deploy\[tensorrt\]'"):
        TrtEngine(plan).load()


def test_cuda_requests_fail_clearly_without_gpu(graphs, model):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(BackendUnavailable, match="ort-gpu"):
        OrtEngine(graphs[0][1], EngineOptions(device="cuda")).load()
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="torch sees no GPU"):
            TorchEngine(tiny_model(), EngineOptions(device="cuda")).load()


def test_ort_cuda_options_turn_tf32_off_for_fp32():
    from engines.ort import cuda_provider_options

    assert cuda_provider_options("fp32") == {"use_tf32": "0"}
    assert cuda_provider_options("tf32") == {"use_tf32": "1"}
    assert cuda_provider_options("fp16") == {}
    assert cuda_provider_options("int8") == {"use_tf32": "0"}  # int8's float ops are IEEE fp32 (INT8_MEANING)


def test_auto_backend_follows_the_precision_asked_for() -> None:
    from engines.registry import resolve_backend

    assert resolve_backend("auto", "cpu", has_plans=False, has_onnx=True) == "onnxruntime"
    assert resolve_backend("auto", "cpu", has_plans=False, has_onnx=True, precision="tf32") == "torch"
    # no ONNX graphs of the precision asked for: torch, which casts the fp32 weights itself
    assert resolve_backend("auto", "cpu", has_plans=False, has_onnx=False, precision="bf16") == "torch"
    assert resolve_backend("ort", "cpu", has_plans=False, has_onnx=False) == "onnxruntime"


def test_cpu_sessions_turn_off_the_skip_layernorm_rewrite(graphs):
    """The rewrite matches in hidden-state graphs only (so it would slow the layer-wise walk and the probe's
    continuations against `full`); CPU sessions turn it off by default, the same for every graph kind."""
    from engines.ort import CPU_DISABLED_OPTIMIZERS, default_disabled_optimizers
    from geep_deploy.bench.fusion_bench import fused_nodes

    depth, layer = graphs[0][L], graphs[1]["layer2"]
    assert fused_nodes(layer, ()) > 0 and fused_nodes(depth, ()) == 0
    assert fused_nodes(layer, CPU_DISABLED_OPTIMIZERS) == 0
    assert default_disabled_optimizers("cpu") == CPU_DISABLED_OPTIMIZERS and default_disabled_optimizers("cuda") == ()
    assert OrtEngine(layer).disabled_optimizers == CPU_DISABLED_OPTIMIZERS
    feed = make_feed(3, 8)
    h = np.random.default_rng(0).standard_normal((3, 8, 32)).astype(np.float32)  # tiny_model: 32 wide
    with OrtEngine(layer) as plain, OrtEngine(layer, disabled_optimizers=()) as fused:
        a = plain.infer({"hidden": h, "attention_mask": feed["attention_mask"]})
        b = fused.infer({"hidden": h, "attention_mask": feed["attention_mask"]})
    np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-4)  # a speed setting, not a numerics one
