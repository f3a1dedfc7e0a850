"""Inference backends behind one protocol: ONNX Runtime, torch and TensorRT (each imports its library lazily)."""

from engines.base import BaseEngine, EngineStateError, TensorMeta
from engines.registry import BACKENDS, available_backends, canonical_backend, engine_class

__all__ = ["BACKENDS", "BaseEngine", "EngineStateError", "TensorMeta", "available_backends", "canonical_backend",
           "engine_class"]
