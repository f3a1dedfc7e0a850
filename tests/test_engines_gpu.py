"""CUDA paths of the engines (skipped without a GPU; not yet run in this project)."""

from __future__ import annotations

import numpy as np
import pytest
from models import tiny_model
from runtime_helpers import export_depth_graphs
from test_engines import make_feed, reference


@pytest.mark.cuda
@pytest.mark.parametrize("precision,atol", [("fp32", 1e-4), ("tf32", 5e-3), ("fp16", 5e-2), ("bf16", 1e-1)])
def test_torch_cuda_graphs_agree_with_cpu(precision, atol):
    from engines.torch_cuda import GraphBuckets
    from engines.torch_engine import TorchEngine, TorchOptions

    ref_model, model = tiny_model(), tiny_model()
    buckets = GraphBuckets(max_batch=16, max_len=64)
    opts = TorchOptions(device="cuda", precision=precision, graph_buckets=buckets)
    with TorchEngine(model, opts, depth=2) as eng:
        assert eng.captured_buckets == sorted(buckets.all())  # all captured at load
        for b, s in ((1, 5), (3, 9), (3, 9), (17, 40)):
            feed = make_feed(b, s, seed=b + s)
            np.testing.assert_allclose(eng.infer(feed)["logits"], reference(ref_model, feed, 2), atol=atol)
        assert eng.eager_calls == 1  # batch 17 is above every bucket
        assert eng.captured_buckets == sorted(buckets.all())


@pytest.mark.cuda
def test_tf32_engine_does_not_leak_into_fp32_engines():
    import torch

    from engines.torch_cuda import GraphBuckets, tf32_state
    from engines.torch_engine import TorchEngine, TorchOptions

    before = tf32_state(torch)
    small = GraphBuckets(max_batch=2, max_len=16)
    with TorchEngine(tiny_model(), TorchOptions(device="cuda", precision="tf32", graph_buckets=small), depth=1) as eng:
        eng.infer(make_feed(1, 5))
        assert tf32_state(torch) == before


@pytest.mark.cuda
def test_lazy_bucket_first_used_in_inference_mode_then_outside():
    import torch

    from engines.torch_cuda import GraphBuckets
    from engines.torch_engine import TorchEngine, TorchOptions

    ref_model = tiny_model()
    opts = TorchOptions(device="cuda", capture="lazy", graph_buckets=GraphBuckets(max_batch=4, max_len=16))
    eng = TorchEngine(tiny_model(), opts, depth=2).load()
    feed = make_feed(2, 7)
    with torch.inference_mode():
        eng.infer(feed)
    np.testing.assert_allclose(eng.infer(feed)["logits"], reference(ref_model, feed, 2), atol=1e-4)
    assert eng.captured_buckets == [(2, 16)]
    eng.close()


@pytest.mark.cuda
def test_torch_cuda_without_graphs():
    from engines.torch_engine import TorchEngine, TorchOptions

    ref_model, model = tiny_model(), tiny_model()
    feed = make_feed(4, 12)
    with TorchEngine(model, TorchOptions(device="cuda", cuda_graphs=False), depth=3) as eng:
        np.testing.assert_allclose(eng.infer(feed)["logits"], reference(ref_model, feed, 3), atol=1e-4)


@pytest.mark.ort_cuda
def test_ort_cuda_provider_in_use(tmp_path):
    from engines.base import EngineOptions
    from engines.ort import OrtEngine

    model = tiny_model()
    paths = export_depth_graphs(model, tmp_path, depths=[3])
    with OrtEngine(paths[3], EngineOptions(device="cuda")) as eng:
        assert eng.provider == "CUDAExecutionProvider"
        assert eng.provider_options.get("use_tf32") == "0"  # fp32 means IEEE fp32, as in the TensorRT build
        feed = make_feed(4, 12)
        np.testing.assert_allclose(eng.infer(feed)["logits"], reference(model, feed, 3), atol=1e-3)
