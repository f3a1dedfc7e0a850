"""Shared fixtures and the skip markers, one per thing a test needs.

``cuda``: torch with a visible CUDA GPU. ``cupy``: CuPy with a visible GPU. ``trt``: ``import tensorrt`` works.
``ort_cuda``: onnxruntime offers the CUDA execution provider. ``gpu`` (older tests): torch CUDA or CuPy.
``serve``: Ray Serve, opt-in with ``GEEP_RAY_TESTS=1``.
A partial install (CUDA torch without CuPy, TensorRT without CuPy) skips what it lacks, with the reason.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@functools.cache
def has_torch_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@functools.cache
def has_cupy_gpu() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # any CUDA driver failure means "no usable GPU"
        return False


@functools.cache
def has_trt() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


@functools.cache
def has_ort_cuda() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


# marker -> (is it available here, why it is skipped); checked in this order, so the first missing need is reported
NEEDS = {
    "trt": (has_trt, "needs TensorRT; `import tensorrt` fails here"),
    "cuda": (has_torch_cuda, "needs torch with a CUDA GPU; torch sees none here"),
    "cupy": (has_cupy_gpu, "needs CuPy with a CUDA GPU (pip install 'geep-deploy[gpu]'); not usable here"),
    "ort_cuda": (has_ort_cuda, "needs onnxruntime-gpu's CUDAExecutionProvider; not offered here"),
    "gpu": (lambda: has_torch_cuda() or has_cupy_gpu(), "needs a CUDA GPU; none is visible to torch/CuPy here"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if importlib.util.find_spec("ray") is None:
        no_ray = pytest.mark.skip(
            reason="needs Ray Serve; `import ray` fails here (pip install 'geep-deploy[serve]' to run it)"
        )
    elif os.environ.get("GEEP_RAY_TESTS") != "1":  # Ray takes ~1 min to start twice: opt in
        no_ray = pytest.mark.skip(reason="starts Ray clusters (0.5-3.5 min per test here); run with GEEP_RAY_TESTS=1 pytest -m serve")
    else:
        no_ray = None
    for item in items:
        for marker, (available, reason) in NEEDS.items():
            if item.get_closest_marker(marker) is not None and not available():  # not `keywords`: ids match
                item.add_marker(pytest.mark.skip(reason=reason))
                break
        if item.get_closest_marker("serve") is not None and no_ray is not None:
            item.add_marker(no_ray)


@pytest.fixture(scope="session")
def tiny_ckpt_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 3-layer checkpoint (geep method, 2 labels, real tokenizer)."""
    from models import tiny_checkpoint

    p = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    tiny_checkpoint(p)
    return p
