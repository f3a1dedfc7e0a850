"""Shared fixtures and the gpu/trt/serve skip markers."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _has_cupy_gpu() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - any CUDA driver failure means "no usable GPU"
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none is visible to torch/CuPy on this machine")
    no_trt = pytest.mark.skip(
        reason="needs TensorRT; `import tensorrt` fails here (TensorRT cannot be installed in this workplace)"
    )
    if importlib.util.find_spec("ray") is None:
        no_ray = pytest.mark.skip(
            reason="needs Ray Serve; `import ray` fails here (pip install 'geep-deploy[serve]' to run it)"
        )
    elif os.environ.get("GEEP_RAY_TESTS") != "1":  # Ray takes ~1 min to start twice: opt in
        no_ray = pytest.mark.skip(reason="starts Ray clusters (~3 min per test here); run with GEEP_RAY_TESTS=1 pytest -m serve")
    else:
        no_ray = None
    has_gpu = _has_cuda() or _has_cupy_gpu()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "trt" in item.keywords and not has_trt:  # first, so TensorRT's reason is the one reported
            item.add_marker(no_trt)
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(no_gpu)
        if item.get_closest_marker("serve") is not None and no_ray is not None:  # not `keywords`: ids match
            item.add_marker(no_ray)


@pytest.fixture(scope="session")
def tiny_ckpt_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 3-layer checkpoint (geep method, 2 labels, real tokenizer)."""
    from models import tiny_checkpoint

    p = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    tiny_checkpoint(p)
    return p
