"""TensorRT engine on plans built here from the tiny model's ONNX (skipped where TensorRT does not import)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from models import tiny_model
from runtime_helpers import export_depth_graphs
from test_engines import make_feed, reference

pytestmark = [pytest.mark.trt, pytest.mark.gpu]


def build_plan(onnx_path: Path, out: Path) -> Path:
    """A minimal fp32 build with one profile (batch 1..32, length 1..64); TF32 off for a true fp32 plan."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(onnx_path)), [parser.get_error(i) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        profile.set_shape(name, (1, 1), (8, 32), (32, 64))
    config.add_optimization_profile(profile)
    out.write_bytes(bytes(builder.build_serialized_network(network, config)))
    return out


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
    from geep_deploy.errors import EngineBuildError

    model = tiny_model()
    p = export_depth_graphs(model, tmp_path, depths=[1])[1]
    with TrtEngine(build_plan(p, tmp_path / "d1.plan")) as eng:
        with pytest.raises(EngineBuildError, match="optimization profile"):
            eng.infer(make_feed(2, 100))
