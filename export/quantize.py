"""int8 graphs: ONNX Runtime dynamic quantisation for the CPU path, static Q/DQ for TensorRT.

Both quantise the MatMul/Gemm weights only (per-tensor symmetric int8), leaving LayerNorm, Softmax and GELU in
float. The dynamic graph (``DynamicQuantizeLinear`` + ``MatMulInteger``) is what ONNX Runtime on CPU runs fast;
TensorRT wants explicit ``QuantizeLinear``/``DequantizeLinear`` pairs with symmetric scales, calibrated here with
MinMax on real tokenised text. ``onnxruntime.quantization`` is imported lazily.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from geep_deploy.errors import ExportError
from geep_deploy.optional import require


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantiser logs advice ("consider pre-processing") on the root logger for every graph; mute it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantization() -> Any:
    return require("onnxruntime.quantization", "int8")


def quantize_dynamic_graph(fp32_path: str | Path) -> onnx.ModelProto:
    """Dynamic int8 (weights int8, activations quantised at run time) of a saved fp32 graph, weights in memory.

    Raises:
        ExportError: if ONNX Runtime's quantiser fails.
    """
    q = _quantization()
    with tempfile.TemporaryDirectory(prefix="geep-int8-") as d:
        out = Path(d) / "q.onnx"
        try:
            with _quiet_root_logger():
                q.quantize_dynamic(str(fp32_path), str(out), weight_type=q.QuantType.QInt8,
                                   op_types_to_quantize=["MatMul"], per_channel=False,
                                   extra_options={"MatMulConstBOnly": True})
        except Exception as e:  # the quantiser raises untyped errors
            raise ExportError(f"int8 | dynamic quantisation of {Path(fp32_path).name} failed: {str(e)[:300]}") from e
        return onnx.load(str(out))


class _Reader:
    """Calibration feeds for ``quantize_static`` (the CalibrationDataReader protocol)."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]], names: set[str]) -> None:
        self._it = iter([{k: v for k, v in f.items() if k in names} for f in feeds])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - part of the protocol
        pass


def quantize_qdq_graph(fp32_path: str | Path, calib_feeds: Sequence[dict[str, np.ndarray]]) -> onnx.ModelProto:
    """Static Q/DQ int8 of a saved fp32 graph (symmetric, TensorRT-style), calibrated on ``calib_feeds``.

    Raises:
        ExportError: if ONNX Runtime's quantiser fails.
    """
    q = _quantization()
    names = {i.name for i in onnx.load(str(fp32_path), load_external_data=False).graph.input}
    with tempfile.TemporaryDirectory(prefix="geep-qdq-") as d:
        out = Path(d) / "q.onnx"
        try:
            with _quiet_root_logger():
                q.quantize_static(
                    str(fp32_path), str(out), _Reader(calib_feeds, names), quant_format=q.QuantFormat.QDQ,
                    activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                    op_types_to_quantize=["MatMul"], per_channel=False, calibrate_method=q.CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "MatMulConstBOnly": True,
                                   "QuantizeBias": False},
                )
        except Exception as e:  # the quantiser raises untyped errors
            raise ExportError(f"int8 | Q/DQ quantisation of {Path(fp32_path).name} failed: {str(e)[:300]}") from e
        proto = onnx.load(str(out))
    bad = sorted({n.op_type for n in proto.graph.node if n.domain not in ("", "ai.onnx")})
    if bad:
        raise ExportError(f"int8 | the Q/DQ graph has non-standard ops {bad}; TensorRT cannot parse them.")
    return proto
