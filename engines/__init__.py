"""Inference backends behind one protocol: ONNX Runtime, torch, TensorRT and ONNX's reference evaluator (each
imports its library lazily)."""

from engines.base import BaseEngine, EngineOptions, EngineStateError, TensorMeta
from engines.registry import BACKENDS, available_backends, canonical_backend, engine_class, open_engine

__all__ = ["BACKENDS", "BaseEngine", "EngineOptions", "EngineStateError", "TensorMeta", "available_backends",
           "canonical_backend", "engine_class", "open_engine"]
