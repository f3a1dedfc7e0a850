"""Export compiler: per-depth ONNX with shared weights, precision variants, TensorRT plans and a checked manifest.

``load_export`` and ``export_checkpoint`` are re-exported lazily, so ``import export`` imports neither torch nor onnx.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Artifact", "ExportBundle", "ExportOptions", "export_checkpoint", "load_export"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from export import bundle

        return getattr(bundle, name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")
