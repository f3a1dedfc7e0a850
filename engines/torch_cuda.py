"""What the torch engine needs to run safely on CUDA: per-engine float32 precision, a bounded CUDA-graph bucket
set and the static buffers a graph reads.

Why each piece exists:

- TF32 is a process-wide torch switch. An engine must not leave it on for every other engine (or a later graph
  capture), so `fp32_precision_scope` sets it for one call and restores it, under one process lock (the switch
  is read when a matmul is dispatched, so two threads must not flip it under each other). torch 2.9+ has
  ``torch.backends.cuda.matmul.fp32_precision`` ("ieee"/"tf32") and raises when it is mixed with the deprecated
  ``allow_tf32``; older torch only has ``allow_tf32``. The scope uses the new API where it exists.
- `GraphBuckets` is the finite set of (batch, length) shapes a depth engine captures, ahead of time at load:
  no capture on the request path, and memory bounded by the set (larger requests run eagerly).
- `static_buffers` are created with inference mode off: a graph's inputs are updated in place on every call,
  which torch forbids on tensors created inside ``torch.inference_mode()`` once outside it.
- `CAPTURE_LOCK` serialises graph captures process-wide; captures use ``capture_error_mode="thread_local"`` so
  another thread's CUDA work (another engine, the CuPy predictor, TensorRT) does not invalidate them.

Every function here runs on the CPU build of torch too (the tests use that); only capture needs a GPU.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from geep_deploy.errors import ConfigError

CAPTURE_LOCK = threading.Lock()
_PRECISION_LOCK = threading.RLock()
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
CAPTURE_ERROR_MODE = "thread_local"


def _pow2_upto(lo: int, hi: int) -> tuple[int, ...]:
    out, v = [], lo
    while v < hi:
        out.append(v)
        v *= 2
    return (*out, hi)


@dataclass(frozen=True)
class GraphBuckets:
    """The (batch, length) shapes a depth engine captures: powers of two up to the maxima (each included).

    Args:
        max_batch: the largest batch captured. Larger batches run eagerly (same results, no graph).
        max_len: the longest sequence captured (the engine's max length).
        min_len: the shortest length bucket.
    """

    max_batch: int = 128
    max_len: int = 128
    min_len: int = 16

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_len < 1 or self.min_len < 1:
            raise ConfigError(f"torch | graph buckets need positive sizes, got {self}.")

    @property
    def batches(self) -> tuple[int, ...]:
        return _pow2_upto(1, self.max_batch)

    @property
    def lengths(self) -> tuple[int, ...]:
        return _pow2_upto(min(self.min_len, self.max_len), self.max_len)

    def all(self) -> list[tuple[int, int]]:
        """Every bucket, largest first (captured in that order, later graphs reuse the pool's freed blocks)."""
        return sorted(((b, s) for b in self.batches for s in self.lengths), key=lambda k: (-k[0] * k[1], k))

    def bucket_for(self, b: int, s: int) -> tuple[int, int] | None:
        """The smallest bucket holding a (b, s) batch, or None when it is larger than every bucket."""
        bb = next((x for x in self.batches if x >= b), None)
        ss = next((x for x in self.lengths if x >= s), None)
        return None if bb is None or ss is None else (bb, ss)


def _has_new_api(torch: Any) -> bool:
    return hasattr(torch.backends.cuda.matmul, "fp32_precision")


def _read(torch: Any) -> tuple[Any, Any]:
    if _has_new_api(torch):
        return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def _write(torch: Any, state: tuple[Any, Any]) -> None:
    if _has_new_api(torch):
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = state
    else:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = state


def tf32_state(torch: Any) -> bool:
    """Whether CUDA float32 matmuls currently run in TF32 (either API)."""
    if _has_new_api(torch):
        return torch.backends.cuda.matmul.fp32_precision == "tf32"
    return bool(torch.backends.cuda.matmul.allow_tf32)


@contextlib.contextmanager
def fp32_precision_scope(torch: Any, precision: str) -> Iterator[None]:
    """CUDA float32 matmuls/convs in TF32 (``precision="tf32"``) or IEEE fp32 (``"fp32"``) inside the block only.

    Holds a process-wide lock for the block, so engines of different precision do not see each other's setting;
    other precisions (fp16/bf16) do not need the scope.
    """
    if precision not in ("fp32", "tf32"):
        yield
        return
    want = ("tf32", "tf32") if precision == "tf32" else ("ieee", "ieee")
    if not _has_new_api(torch):
        want = (precision == "tf32", precision == "tf32")
    with _PRECISION_LOCK:
        saved = _read(torch)
        _write(torch, want)
        try:
            yield
        finally:
            _write(torch, saved)


def static_buffers(torch: Any, b: int, s: int, device: str, names: tuple[str, ...] = INPUT_NAMES,
                   hidden: int | None = None, dtype: Any = None) -> dict[str, Any]:
    """Zeroed (b, s) graph inputs (int64 ids and masks; ``hidden`` is (b, s, hidden) in ``dtype``), created outside
    inference mode whatever the caller's mode.

    Row 0 gets one unmasked position so a warm-up/capture batch is never all-masked.
    """
    with torch.inference_mode(False):
        bufs = {}
        for n in names:
            if n == "hidden":
                if hidden is None:
                    raise ConfigError("torch | a graph with a hidden-state input needs its width (hidden=...).")
                bufs[n] = torch.zeros((b, s, hidden), dtype=dtype or torch.float32, device=device)
            else:
                bufs[n] = torch.zeros((b, s), dtype=torch.int64, device=device)
        bufs["attention_mask"][:, 0] = 1
    return bufs


def fill_static(torch: Any, bufs: dict[str, Any], feed: dict[str, Any]) -> None:
    """Copy a (b, s[, h]) feed (host NumPy arrays, or torch tensors already on the device) into the top-left of
    each larger static buffer; the rest is zero (masked). Device tensors are copied device to device."""
    for name, buf in bufs.items():
        x = feed[name]
        x = x if torch.is_tensor(x) else torch.from_numpy(np.ascontiguousarray(x))
        buf.zero_()
        buf[: x.shape[0], : x.shape[1]].copy_(x, non_blocking=True)
