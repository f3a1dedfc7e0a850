"""Backend name -> engine class, imported only when asked for (so ``import engines`` pulls in no backend).

Every place that runs a graph (export validation, ``GeepEngine``, the baselines, the benchmarks) opens its engines
through ``open_engine``, so there is one way to build a runner per backend.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from typing import Any

from engines.base import BaseEngine, EngineOptions
from geep_deploy.names import AUTO, ONNX_REFERENCE, ONNXRUNTIME, TENSORRT, TORCH, canonical_backend
from geep_deploy.options import build_options

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


def open_engine(backend: str, source: Any, options: EngineOptions | None = None, **keywords: Any) -> BaseEngine:
    """Build and load one engine: ``source`` is a graph/plan path (or, for torch, an ``ExitBert``).

    ``keywords`` that are fields of the backend's options (`EngineOptions`: device, precision, check_inputs,
    name; torch's `TorchOptions` adds cuda_graphs, max_len, graph_buckets, capture, max_batch, resident) build
    ``options`` (or replace its fields); the rest go to the constructor (pool, threads, disable_prepacking,
    strict_provider for onnxruntime, scratch for tensorrt, kind/depth/exit_mode for torch).

    Raises:
        TypeError: a keyword the backend does not take.
    """
    cls = engine_class(backend)
    kind = cls.options_type
    names = {f.name for f in dataclasses.fields(kind)}
    fields = {k: v for k, v in keywords.items() if k in names}
    rest = {k: v for k, v in keywords.items() if k not in names}
    opts = build_options(kind, kind.coerce(options), fields, f"open_engine({backend!r})")
    return cls(source, opts, **rest).load()


def available_backends() -> list[str]:
    """Backends whose library is importable here (does not import them)."""
    return [b for b, (_, _, lib) in BACKENDS.items() if importlib.util.find_spec(lib) is not None]


def backend_conflict(backend: str, device: str, precision: str) -> str | None:
    """Why ``backend`` cannot run ``precision`` on ``device`` whatever the export holds, or None: one statement of
    these rules for the loader (`runtime.loading`, an error) and the bench (a refused cell)."""
    if backend == TENSORRT and device != "cuda":
        return "TensorRT runs on CUDA only; use device cuda (--device cuda) or another backend."
    if precision == "tf32" and backend != TORCH:
        return (f"tf32 (TF32 matmuls on fp32 weights) runs on the torch backend only; {backend} would run fp32 or "
                "its own TF32 setting. Use the torch backend (--backend torch), or fp32.")
    if precision == "int8" and backend == TORCH:
        return "the torch backend has no int8; int8 runs on onnxruntime (QDQ/dynamic) or tensorrt plans."
    return None


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
