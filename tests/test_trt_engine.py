"""TensorRT engine on plans built here from the tiny model's ONNX (skipped where TensorRT does not import)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from models import tiny_model
from runtime_helpers import export_depth_graphs
from test_engines import make_feed, reference

pytestmark = [pytest.mark.trt, pytest.mark.cupy]  # TrtEngine keeps its buffers in CuPy


def build_plan(onnx_path: Path, out: Path) -> Path:
    """An fp32 plan (TF32 off) with one profile (batch 1..32, length 1..64), built by the export's builder.

    The builder types the network as the installed TensorRT needs (TensorRT 11 builds strongly typed only).
    """
    from export.spec import BuildSpec, Profile
    from export.trt_build import EngineBytesFromOnnx, SaveEngine

    prof = Profile()
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        prof = prof.add(name, (1, 1), (8, 32), (32, 64))
    return SaveEngine(EngineBytesFromOnnx(onnx_path, BuildSpec(precision="fp32", profiles=(prof,))), out)()


def test_trt_depths_agree_with_torch_and_share_scratch(tmp_path):
    from engines.trt import TrtEngine, TrtScratch

    model = tiny_model()
    onnx_paths = export_depth_graphs(model, tmp_path)
    scratch = TrtScratch()
    engines = {k: TrtEngine(build_plan(p, tmp_path / f"depth{k}.plan"), scratch=scratch).load()
               for k, p in onnx_paths.items()}
    for k, eng in engines.items():
        for b, s in ((1, 5), (6, 17), (32, 64)):
            feed = make_feed(b, s, seed=k)
            np.testing.assert_allclose(eng.infer(feed)["logits"], reference(model, feed, k), atol=1e-3)
    assert scratch.size > 0
    for eng in engines.values():
        eng.close()


def test_trt_shape_outside_profile_is_a_clear_error(tmp_path):
    from engines.trt import TrtEngine
    from geep_deploy.errors import EngineRunError

    model = tiny_model()
    p = export_depth_graphs(model, tmp_path, depths=[1])[1]
    with TrtEngine(build_plan(p, tmp_path / "d1.plan")) as eng:
        with pytest.raises(EngineRunError, match="optimization profile"):  # a run-time shape, not a build
            eng.infer(make_feed(2, 100))
        assert eng.max_batch == 32
        np.testing.assert_allclose(eng.infer(make_feed(70, 8))["logits"],  # above the profile: cut, not fatal
                                   reference(model, make_feed(70, 8), 1), atol=1e-3)
