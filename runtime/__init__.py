"""Runtime: exit table, exit predictor, exit-sorted dispatch and ``GeepEngine``.

Names are re-exported lazily (PEP 562), so ``import runtime`` imports no backend library (torch, onnxruntime,
tensorrt, cupy); ``runtime.GeepEngine`` imports its module on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GeepEngine": "runtime.engine",
    "PredictResult": "runtime.engine",
    "Prediction": "runtime.engine",
    "EngineView": "runtime.engine",
    "EngineParts": "runtime.engine",
    "FixedDepth": "runtime.predictor",
    "LoadOptions": "runtime.options",
    "KEEP": "geep_deploy.options",
    "load_export": "runtime.artifacts",
    "ExportBundle": "runtime.artifacts",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
