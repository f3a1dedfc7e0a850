"""Precision variants: fp16/bf16 cast graphs, int8 dynamic (ORT CPU) and Q/DQ (TensorRT) graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from export import export_checkpoint, load_export
from export.onnx_export import export_graph
from export.precision import convert_precision
from export.validate import run_graph
from export.weights import external_locations
from geep_deploy.errors import ConfigError


@pytest.fixture(scope="module")
def exported(tiny_ckpt_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prec") / "tiny"
    export_checkpoint(tiny_ckpt_path, out, precisions=("fp32", "fp16", "bf16", "int8"), progress=False)
    return out


def test_every_precision_has_its_graphs_and_one_weights_file(exported: Path) -> None:
    b = load_export(exported)
    assert b.precisions() == ["bf16", "fp16", "fp32", "int8"]
    assert {a.variant for a in b.artifacts if a.precision == "int8"} == {"", "qdq"}
    for p in ("fp16", "bf16", "int8"):
        d = exported / "onnx" / p
        assert {g.stem for g in d.glob("*.onnx")} == {"depth1", "depth2", "depth3", "embed", "layer1", "layer2",
                                                      "layer3"}
        for g in d.glob("*.onnx"):
            assert external_locations(g) <= {"weights.bin"}, g
    fp32 = (exported / "onnx" / "fp32" / "weights.bin").stat().st_size
    assert (exported / "onnx" / "fp16" / "weights.bin").stat().st_size < 0.6 * fp32
    qdq = b.find(depth=2, precision="int8", variant="qdq")
    assert qdq.path.parent.name == "int8_qdq" and qdq.inputs == b.find(depth=2).inputs


def test_variants_agree_with_fp32_and_record_what_was_not_validated(exported: Path) -> None:
    m = load_export(exported).manifest
    by_file = {a["file"]: a for a in m["artifacts"]}
    for p in ("fp16", "bf16", "int8", "int8_qdq"):
        v = by_file[f"onnx/{p}/depth3.onnx"]["validation"]
        assert v["outputs"]["logits"]["argmax_agree"] == 1.0, p
        assert v["outputs"]["logits"]["max_abs"] < 5e-3, p
    assert by_file["onnx/fp16/depth3.onnx"]["validation"]["runner"] == "onnxruntime"
    # ONNX Runtime's CPU provider has no bf16 kernels: recorded, and checked with onnx.reference instead
    assert by_file["onnx/bf16/depth3.onnx"]["validation"]["runner"] == "onnx-reference"
    not_validated = {n["file"] for n in m["not_validated"]}
    assert "onnx/bf16/depth3.onnx" in not_validated and not any("fp16" in f for f in not_validated)


def test_fp16_graph_keeps_layernorm_and_softmax_in_fp32(exported: Path) -> None:
    proto = onnx.load(str(exported / "onnx" / "fp16" / "depth2.onnx"))
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    inits = {t.name: t.data_type for t in proto.graph.initializer}
    kept = [n for n in proto.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert kept
    for n in kept:
        for i in n.input:
            assert types.get(i, inits.get(i)) == onnx.TensorProto.FLOAT, (n.op_type, i)
    mm = [n for n in proto.graph.node if n.op_type == "MatMul"]
    assert all(types.get(n.output[0]) == onnx.TensorProto.FLOAT16 for n in mm)
    assert types["logits"] == onnx.TensorProto.FLOAT  # I/O stays fp32 for every precision


def test_qdq_graph_is_standard_onnx_for_tensorrt(exported: Path) -> None:
    proto = onnx.load(str(exported / "onnx" / "int8_qdq" / "depth1.onnx"), load_external_data=False)
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    dyn = onnx.load(str(exported / "onnx" / "int8" / "depth1.onnx"), load_external_data=False)
    assert "MatMulInteger" in {n.op_type for n in dyn.graph.node}


def test_int8_runs_on_ort_at_new_shapes(exported: Path) -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 5000, size=(6, 21))
    mask = np.ones_like(ids)
    mask[2, 9:] = 0
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    ref = run_graph("onnxruntime", exported / "onnx" / "fp32" / "depth3.onnx", [feed])[0]["logits"]
    got = run_graph("onnxruntime", exported / "onnx" / "int8" / "depth3.onnx", [feed])[0]["logits"]
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-2


def test_convert_precision_rejects_unknown(tiny_ckpt_path: Path) -> None:
    from geep_deploy.checkpoint import load_checkpoint

    proto = export_graph(load_checkpoint(tiny_ckpt_path).model, "embed", None)
    with pytest.raises(ConfigError, match="not a cast precision"):
        convert_precision(proto, "int8")


def test_qdq_calibration_uses_a_few_hundred_train_rows() -> None:
    from models import real_tokenizer_json

    from export.validate import calibration_feeds

    feeds = calibration_feeds(real_tokenizer_json(), 64)
    assert sum(f["input_ids"].shape[0] for f in feeds) == 256  # not the 8 validation rows
    widths = [f["input_ids"].shape[1] for f in feeds]
    assert widths == sorted(widths) and max(widths) <= 64  # length-sorted batches: little padding
    assert all(f["attention_mask"][:, 0].all() for f in feeds)
