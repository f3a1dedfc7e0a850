"""What machine a measurement ran on: recorded next to every benchmark figure."""

from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path
from typing import Any

LIBRARIES = ("torch", "onnxruntime", "onnx", "tensorrt", "cupy", "numpy", "transformers")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (falls back to ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU model, cores, platform, versions of the libraries present, and the GPU name on CUDA.

    The one record of "where was this measured" that every benchmark JSON carries.
    """
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpu_count": os.cpu_count(), "cpu": cpu_model(), "device": device}
    for mod in LIBRARIES:
        try:
            info[mod] = importlib.import_module(mod).__version__
        except Exception:  # absent or broken libraries are simply not recorded
            pass
    if device == "cuda":
        try:
            import torch

            info["gpu"] = torch.cuda.get_device_name(0)
        except Exception:  # machine info is best effort; the run itself reports real failures
            info["gpu"] = "unknown"
    return info
