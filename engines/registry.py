"""Backend name -> engine class, imported only when asked for (so ``import engines`` pulls in no backend)."""

from __future__ import annotations

import importlib
import importlib.util

from engines.base import BaseEngine
from geep_deploy.errors import ConfigError

BACKENDS: dict[str, tuple[str, str, str]] = {
    # name: (module, class, the library whose presence makes it available)
    "onnxruntime": ("engines.ort", "OrtEngine", "onnxruntime"),
    "torch": ("engines.torch_engine", "TorchEngine", "torch"),
    "tensorrt": ("engines.trt", "TrtEngine", "tensorrt"),
}
ALIASES = {"ort": "onnxruntime", "trt": "tensorrt", "pytorch": "torch"}


def canonical_backend(name: str) -> str:
    """Resolve aliases (``ort``, ``trt``) and reject unknown names with the list of known ones."""
    key = ALIASES.get(name, name)
    if key not in BACKENDS:
        raise ConfigError(f"engines | unknown backend {name!r}. Expected one of {sorted(BACKENDS)}.")
    return key


def engine_class(name: str) -> type[BaseEngine]:
    """The engine class of backend ``name`` (imports its module, not its library)."""
    module, cls, _ = BACKENDS[canonical_backend(name)]
    return getattr(importlib.import_module(module), cls)


def available_backends() -> list[str]:
    """Backends whose library is importable here (does not import them)."""
    return [b for b, (_, _, lib) in BACKENDS.items() if importlib.util.find_spec(lib) is not None]
