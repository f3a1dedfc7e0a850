"""The machine record of a CPU bench script: the shared record plus the load and torch threads its figures depend on."""

from __future__ import annotations

import os
from typing import Any


def cpu_bench_machine_info() -> dict[str, Any]:
    """The shared machine record plus the load and torch threads this script's figures depend on."""
    import torch

    from geep_deploy.machine import machine_info

    return {**machine_info("cpu"), "load_average_at_start": list(os.getloadavg()),
            "torch_threads": torch.get_num_threads()}
