"""Backend name -> engine class, imported only when asked for (so ``import engines`` pulls in no backend).

Every place that runs a graph (export validation, ``GeepEngine``, the baselines, the benchmarks) opens its engines
through ``open_engine``, so there is one way to build a runner per backend.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from engines.base import BaseEngine
from geep_deploy.names import AUTO, ONNX_REFERENCE, ONNXRUNTIME, TENSORRT, TORCH, canonical_backend

BACKENDS: dict[str, tuple[str, str, str]] = {
    # name: (module, class, the library whose presence makes it available)
    ONNXRUNTIME: ("engines.ort", "OrtEngine", "onnxruntime"),
    TORCH: ("engines.torch_engine", "TorchEngine", "torch"),
    TENSORRT: ("engines.trt", "TrtEngine", "tensorrt"),
    ONNX_REFERENCE: ("engines.onnx_reference", "ReferenceEngine", "onnx"),
}

__all__ = ["BACKENDS", "available_backends", "canonical_backend", "engine_class", "open_engine", "resolve_backend"]


def engine_class(name: str) -> type[BaseEngine]:
    """The engine class of backend ``name`` (imports its module, not its library)."""
    module, cls, _ = BACKENDS[canonical_backend(name)]
    return getattr(importlib.import_module(module), cls)


def open_engine(backend: str, source: Any, **options: Any) -> BaseEngine:
    """Build and load one engine: ``source`` is a graph/plan path (or, for torch, an ``ExitBert``).

    ``options`` go to the backend's constructor (precision, device, pool, kind/depth for torch, ...).
    """
    return engine_class(backend)(source, **options).load()


def available_backends() -> list[str]:
    """Backends whose library is importable here (does not import them)."""
    return [b for b, (_, _, lib) in BACKENDS.items() if importlib.util.find_spec(lib) is not None]


def resolve_backend(backend: str, device: str, *, has_plans: bool, has_onnx: bool, precision: str = "fp32") -> str:
    """``auto`` -> tensorrt (CUDA, plans of this precision, library) > onnxruntime (graphs of this precision,
    library) > torch; tf32 (TF32 matmuls on fp32 weights) is torch's alone. Else the canonical name."""
    backend = canonical_backend(backend, allow_auto=True)
    if backend != AUTO:
        return backend
    if precision == "tf32":
        return TORCH
    if device == "cuda" and has_plans and importlib.util.find_spec("tensorrt") is not None:
        return TENSORRT
    if has_onnx and importlib.util.find_spec("onnxruntime") is not None:
        return ONNXRUNTIME
    return TORCH
