"""CUDA twin of the exit table: kernel source generated from ``runtime.keys`` constants, and a CuPy table.

CuPy is imported lazily (only ``cupy_table`` imports it), so ``import runtime.kernels`` works without the
``gpu`` extra. ``require_cupy()`` gives the one error message that names the install command.
"""

from __future__ import annotations

from types import ModuleType

from geep_deploy.errors import BackendUnavailable

GPU_PIP = "pip install 'geep-deploy[gpu]'"


def require_cupy() -> ModuleType:
    """Import CuPy or raise ``BackendUnavailable`` naming the extra to install."""
    try:
        import cupy
    except ImportError as e:
        raise BackendUnavailable(
            f"exit table | the CUDA table needs CuPy, which does not import here ({e}). Try: {GPU_PIP}."
        ) from None
    return cupy


def is_cupy_array(x: object) -> bool:
    """True for a ``cupy.ndarray``, without importing CuPy."""
    return type(x).__module__.startswith("cupy")
