"""CUDA twin of the exit table: kernel source generated from ``runtime.keys`` constants, and a CuPy table.

CuPy is imported lazily (only ``cupy_table`` imports it), so ``import runtime.kernels`` works without the
``gpu`` extra. ``require_cupy()`` gives the one error message that names the install command.
"""

from __future__ import annotations

from types import ModuleType

from geep_deploy.optional import INSTALL_HINTS, require

GPU_PIP = INSTALL_HINTS["cupy"]


def require_cupy() -> ModuleType:
    """Import CuPy or raise ``BackendUnavailable`` naming the extra to install."""
    return require("cupy", "exit table", "for the CUDA table")


def is_cupy_array(x: object) -> bool:
    """True for a ``cupy.ndarray``, without importing CuPy."""
    return type(x).__module__.startswith("cupy")
