"""TensorRT build: the plain-data parts run everywhere; real builds are marked ``trt`` and skip without it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from export.spec import BuildSpec, ExportSpec, Profile, parse_depths, parse_list, profiles_from_flags
from export.trt_build import SOURCE_GRAPH, plan_for, require_tensorrt
from geep_deploy.errors import BackendUnavailable, ConfigError, EngineBuildError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_profiles_from_flags() -> None:
    (p,) = profiles_from_flags(["input_ids", "attention_mask"], max_batch=32, max_len=128)
    assert p.to_dict()["input_ids"] == {"min": [1, 1], "opt": [32, 64], "max": [32, 128]}
    (q,) = profiles_from_flags(["input_ids"], max_batch=256, max_len=48, min_len=4)
    assert q.shapes["input_ids"].opt == (64, 48) and q.shapes["input_ids"].min == (1, 4)
    with pytest.raises(ConfigError, match="max-batch"):
        profiles_from_flags(["input_ids"], max_batch=0, max_len=8)
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        Profile().add("x", (1, 8), (4, 4), (8, 16))


@pytest.mark.parametrize("version", ["10.13.0", "11.1.0"])
def test_fp32_disables_tf32(version: str) -> None:
    plan = plan_for("fp32", version)
    assert plan.clear_flags == ("TF32",) and plan.set_flags == () and plan.source_graph == "fp32"
    assert plan_for("fp32", version, tf32=True).clear_flags == ()


def test_trt10_uses_flags_and_trt11_strong_typing() -> None:
    assert plan_for("fp16", "10.9.0").set_flags == ("FP16",) and not plan_for("fp16", "10.9.0").strongly_typed
    assert plan_for("bf16", "10.9.0").set_flags == ("BF16",)
    # int8 has one meaning on 10 and 11 (INT8_MEANING): Q/DQ MatMuls, the rest as typed (fp32), strongly typed
    assert plan_for("int8", "10.9.0").strongly_typed and plan_for("int8", "10.9.0").set_flags == ()
    weak = plan_for("int8", "10.0.0", has_strongly_typed=False)
    assert not weak.strongly_typed and weak.set_flags == ("INT8",)  # never FP16: no silent fp16 elsewhere
    for p in ("fp16", "bf16", "int8"):
        plan = plan_for(p, "11.0.0")
        assert plan.strongly_typed and plan.set_flags == ()  # precision comes from the graph's casts / Q/DQ
        assert plan.source_graph == SOURCE_GRAPH[p]
    assert plan_for("int8", "11.0.0").source_graph == "int8_qdq"
    assert plan_for("fp16", "10.9.0", strongly_typed=True).set_flags == ()
    with pytest.raises(EngineBuildError, match="too old"):
        plan_for("fp32", "8.6.1")


def test_specs_and_parsers_validate() -> None:
    assert parse_depths("all", 6) == (1, 2, 3, 4, 5, 6) and parse_depths("3,1,3", 6) == (1, 3)
    with pytest.raises(ConfigError, match="outside 1..6"):
        parse_depths("0,7", 6)
    with pytest.raises(ConfigError, match="integers"):
        parse_depths("a,b", 6)
    assert parse_list("fp32, FP16,fp32", ("fp32", "fp16"), "precision") == ("fp32", "fp16")
    with pytest.raises(ConfigError, match="unknown precision"):
        parse_list("fp8", ("fp32",), "precision")
    with pytest.raises(ConfigError, match="fp32 is the reference"):
        ExportSpec(depths=(1,), precisions=("fp16",))
    with pytest.raises(ConfigError, match="unknown format"):
        ExportSpec(depths=(1,), formats=("tvm",))
    assert BuildSpec(precision="int8").tf32 is False


@pytest.mark.skipif(HAS_TRT, reason="tensorrt imports here; the unavailable path cannot be exercised")
def test_require_tensorrt_names_pip_extra() -> None:
    with pytest.raises(BackendUnavailable, match=r"pip install 'geep-deploy\[tensorrt\]'"):
        require_tensorrt()


@pytest.mark.trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_real_plan_build_validates(tiny_ckpt_path: Path, tmp_path: Path, precision: str) -> None:
    from export import export_checkpoint

    b = export_checkpoint(tiny_ckpt_path, tmp_path / "e", depths="1,3", precisions=("fp32", precision),
                          formats=("onnx", "tensorrt"), max_batch=8, max_len=64, segments=False, progress=False)
    for k in (1, 3):
        art = b.find(depth=k, format="tensorrt", precision=precision)
        assert art.path.stat().st_size > 0
    entry = next(a for a in b.manifest["artifacts"] if a["file"] == f"tensorrt/{precision}/depth3.plan")
    if entry["validation"] is None:  # TensorRT without CuPy: the plan is built but cannot be run here
        assert any(n["file"] == entry["file"] for n in b.manifest["not_validated"])
    elif precision == "fp32":
        assert entry["validation"]["outputs"]["logits"]["argmax_agree"] == 1.0
    assert (b.root / b.manifest["tensorrt"]["timing_cache"]["file"]).stat().st_size > 0
