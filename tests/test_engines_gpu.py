"""CUDA paths of the engines (skipped without a GPU; not yet run in this project)."""

from __future__ import annotations

import numpy as np
import pytest
from models import tiny_model
from runtime_helpers import export_depth_graphs
from test_engines import make_feed, reference

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision,atol", [("fp32", 1e-4), ("tf32", 5e-3), ("fp16", 5e-2), ("bf16", 1e-1)])
def test_torch_cuda_graphs_agree_with_cpu(precision, atol):
    from engines.torch_engine import TorchEngine

    ref_model, model = tiny_model(), tiny_model()
    with TorchEngine(model, depth=2, device="cuda", precision=precision, cuda_graphs=True) as eng:
        for b, s in ((1, 5), (3, 9), (3, 9), (17, 40)):
            feed = make_feed(b, s, seed=b + s)
            np.testing.assert_allclose(eng.infer(feed)["logits"], reference(ref_model, feed, 2), atol=atol)
        assert eng.captured_buckets == sorted([(1, 8), (4, 16), (24, 64)])


def test_torch_cuda_without_graphs():
    from engines.torch_engine import TorchEngine

    ref_model, model = tiny_model(), tiny_model()
    feed = make_feed(4, 12)
    with TorchEngine(model, depth=3, device="cuda", cuda_graphs=False) as eng:
        np.testing.assert_allclose(eng.infer(feed)["logits"], reference(ref_model, feed, 3), atol=1e-4)


def test_ort_cuda_provider_in_use(tmp_path):
    import onnxruntime as ort

    from engines.ort import OrtEngine

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    model = tiny_model()
    paths = export_depth_graphs(model, tmp_path, depths=[3])
    with OrtEngine(paths[3], device="cuda") as eng:
        assert eng.provider == "CUDAExecutionProvider"
        feed = make_feed(4, 12)
        np.testing.assert_allclose(eng.infer(feed)["logits"], reference(model, feed, 3), atol=1e-3)
