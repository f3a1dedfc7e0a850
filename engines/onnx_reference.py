"""ONNX's NumPy reference evaluator behind the engine protocol.

It runs every standard op in every precision (bf16 included, which ONNX Runtime's CPU provider cannot), slowly:
export validation uses it as the independent comparator for graphs ONNX Runtime cannot run here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BaseEngine, EngineOptions, TensorMeta
from geep_deploy.errors import ConfigError, EngineBuildError
from geep_deploy.names import ONNX_REFERENCE


class ReferenceEngine(BaseEngine):
    """One ONNX graph run by ``onnx.reference.ReferenceEvaluator`` (CPU only).

    Args:
        path: the ``.onnx`` file (its external-data file next to it).
        options: precision (the graph's, recorded, not converted), check_inputs, name (`EngineOptions`); the
            device is the CPU.
    """

    backend = ONNX_REFERENCE

    def __init__(self, path: str | Path, options: EngineOptions | None = None) -> None:
        o = EngineOptions.coerce(options)
        if o.device not in (None, "cpu"):
            raise ConfigError(f"onnx-reference | the reference evaluator runs on the CPU only, not {o.device!r}.")
        super().__init__(o.name or f"onnx-reference {Path(path).name}", o.precision, "cpu", o.check_inputs)
        self.path = Path(path)
        self._ev: Any = None
        self._proto: Any = None

    def _load(self) -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        if not self.path.is_file():
            raise EngineBuildError(f"{self.name} | {self.path} does not exist.")
        try:
            self._proto = onnx.load(str(self.path))
            self._ev = ReferenceEvaluator(self._proto)
        except Exception as e:  # onnx raises protobuf, OSError and its own errors
            raise EngineBuildError(f"{self.name} | onnx.reference cannot load {self.path}: {e}") from e

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = list(self._ev.output_names)
        return dict(zip(names, self._ev.run(names, dict(feed))))

    def _input_metadata(self) -> dict[str, TensorMeta]:
        import onnx

        meta = {}
        for v in self._proto.graph.input:
            t = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
            meta[v.name] = TensorMeta(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)), dims)
        return meta

    def _close(self) -> None:
        self._ev = self._proto = None
