"""Resident memory (RSS) of this process, for comparing engines that load one depth or all of them.

Measure in a fresh process per configuration (``bench/runtime_memory.py`` does): allocators keep freed memory,
so a second load in the same process reads low.
"""

from __future__ import annotations

import gc

from geep_deploy.optional import require


def rss_mb() -> float:
    """Resident set size of this process in MiB (needs psutil, part of the ``dev`` extra)."""
    psutil = require("psutil", "memory")
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def uss_mb() -> float:
    """Unique set size in MiB: memory only this process holds (excludes file pages shared with others)."""
    psutil = require("psutil", "memory")

    gc.collect()
    return psutil.Process().memory_full_info().uss / 2**20
