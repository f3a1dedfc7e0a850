"""Optional libraries: one import helper and one install hint per library, so every message says the same.

A backend's library is imported when it is first used, never at package import, and a missing one raises
``BackendUnavailable`` naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from geep_deploy.errors import BackendUnavailable

INSTALL_HINTS = {
    "torch": "pip install geep-deploy",
    "onnxruntime": "pip install 'geep-deploy[cpu]' (or 'geep-deploy[ort-gpu]' for the CUDA execution provider; "
                   "never both)",
    "tensorrt": "pip install 'geep-deploy[tensorrt]' (TensorRT needs an NVIDIA GPU and driver)",
    "cupy": "pip install 'geep-deploy[gpu]'",
    "psutil": "pip install 'geep-deploy[dev]'",
    "filelock": "pip install 'geep-deploy[tensorrt]'",
    "fastapi": "pip install 'geep-deploy[service]'",
    "uvicorn": "pip install 'geep-deploy[service]'",
    "aiohttp": "pip install 'geep-deploy[dev]'",
    "ray": "pip install 'geep-deploy[serve]'",
}


def require(module: str, component: str, purpose: str = "") -> ModuleType:
    """Import ``module`` (e.g. ``onnxruntime.quantization``) or raise ``BackendUnavailable`` with the install hint.

    Args:
        module: dotted module name; its top-level package picks the hint.
        component: the prefix of the message (``"onnxruntime"``, ``"int8"``, ...).
        purpose: what it is needed for, e.g. ``"for device buffers"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        need = f" {purpose}" if purpose else ""
        raise BackendUnavailable(
            f"{component} | `import {module}`{need} fails here ({e}). Try: {INSTALL_HINTS.get(top, f'pip install {top}')}."
        ) from None
