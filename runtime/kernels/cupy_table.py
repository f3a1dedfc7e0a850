"""CuPy twin of the exit table: same layout, slots and results as ``runtime.exit_table.ExitHashTable``.

Imports CuPy at module level; import this module only where the ``gpu`` extra is installed (callers of
``CupyExitHashTable.from_host`` and the predictor import it lazily). Kernels come from one ``RawModule`` compiled
once per device (``cupy.memoize(for_each_device=True)``); `compile_kernels()` compiles them ahead of the first request (a
service calls it at load). Compiling needs NVRTC and the CUDA headers: the ``gpu`` extra installs them with
``cupy-cuda13x[ctk]``; a failed compile raises ``BackendUnavailable`` saying so.

Calls are asynchronous on the current stream except where a host decision needs device values: one sync for the
input checks and the capacity check before an insert (all read back together), then one per chunk of probe
rounds (chunks double: 1, 2, 4, ... rounds), so an insert that needs r rounds syncs about log2(r) + 2 times.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geep_deploy.errors import BackendUnavailable, GeepInternalError, TableError
from runtime.exit_table import MISS, ExitHashTable, as_keys, check_insert
from runtime.kernels import GPU_PIP, require_cupy
from runtime.kernels.source import KERNEL_NAMES, SOURCE
from runtime.keys import EMPTY_KEY, initial_state

cupy = require_cupy()

_BLOCK = 256
_MAX_CHUNK = 64  # probe rounds between two syncs, at most
_NVRTC_HINT = (
    "CuPy compiles the exit-table kernels with NVRTC, which needs the CUDA runtime headers. Install them with "
    f"{GPU_PIP} (it asks for cupy-cuda13x[ctk]), or `pip install 'cupy-cuda13x[ctk]'`, or point CUDA_PATH at a "
    "CUDA toolkit."
)


@cupy.memoize(for_each_device=True)
def _module() -> Any:
    try:
        mod = cupy.RawModule(code=SOURCE, options=("--std=c++11",))
        mod.compile()
    except Exception as e:  # NVRTC / header lookup errors come in several types
        raise BackendUnavailable(f"exit table | compiling the CUDA kernels failed ({type(e).__name__}: "
                                 f"{str(e)[:300]}). {_NVRTC_HINT}") from e
    return mod


@cupy.memoize(for_each_device=True)
def _kernel(name: str) -> Any:
    """Compiled kernel ``name`` from the shared module (compiled once per device)."""
    return _module().get_function(name)


def compile_kernels() -> None:
    """Compile every kernel on the current device now, so no request pays for NVRTC."""
    for name in KERNEL_NAMES:
        _kernel(name)


def _launch(name: str, n: int, args: tuple[Any, ...]) -> None:
    if n > 0:
        _kernel(name)(((n + _BLOCK - 1) // _BLOCK,), (_BLOCK,), args)


def _device_keys(keys: object) -> Any:
    if isinstance(keys, cupy.ndarray):
        if keys.dtype != cupy.uint64:
            if keys.dtype.kind not in "iu" or (keys.size and keys.dtype.kind == "i" and bool((keys < 0).any())):
                raise TableError(f"exit table | keys must be non-negative integers (uint64), got dtype {keys.dtype}.")
            keys = keys.astype(cupy.uint64)
        return cupy.ascontiguousarray(keys.ravel())
    return cupy.asarray(as_keys(keys))


class CupyExitHashTable:
    """Owning device table with bulk ``insert(keys, exits)`` / ``lookup(keys)`` (cuco ``static_map`` style)."""

    def __init__(self, capacity: int, num_layers: int, **kw: Any) -> None:
        host = ExitHashTable(capacity, num_layers, **kw)  # validates the arguments once, in one place
        self._adopt(host)

    def _adopt(self, host: ExitHashTable) -> None:
        self.capacity, self.num_layers, self.seed, self.orders = host.capacity, host.num_layers, host.seed, host.orders
        self.shift, self.size, self.total = host.shift, host.size, host.total
        self.keys = cupy.asarray(host.keys)
        self.counts = cupy.asarray(host.counts)

    @classmethod
    def from_host(cls, host: ExitHashTable) -> CupyExitHashTable:
        obj = cls.__new__(cls)
        obj._adopt(host)
        return obj

    def to_host(self) -> ExitHashTable:
        """A NumPy copy (for saving, or comparing with the NumPy twin)."""
        host = ExitHashTable(self.capacity, self.num_layers, seed=self.seed, orders=self.orders)
        host.keys, host.counts = cupy.asnumpy(self.keys), cupy.asnumpy(self.counts)
        host.size, host.total = self.size, self.total
        return host

    def lookup(self, keys: object) -> Any:
        """Device int64 slots, -1 where absent; asynchronous on the current stream."""
        q = _device_keys(keys)
        out = cupy.empty(q.size, dtype=cupy.int64)
        _launch("table_lookup", q.size, (self.keys, np.int64(self.capacity), np.int32(self.shift), q,
                                         np.int64(q.size), out))
        return out

    def histograms(self, keys: object) -> Any:
        slots = self.lookup(keys)
        hist = self.counts[cupy.maximum(slots, 0)]
        hist[slots < 0] = 0
        return hist

    def _insert_stats(self, k: Any, e: Any) -> Any:
        """[has EMPTY_KEY, min exit, max exit, distinct new keys] on the device, without a sync."""
        srt = cupy.sort(k)
        first = cupy.ones(srt.size, dtype=cupy.bool_)
        first[1:] = srt[1:] != srt[:-1]
        n_new = (first & (self.lookup(srt) < 0)).sum(dtype=cupy.int64)
        return cupy.stack([(k == cupy.uint64(EMPTY_KEY)).any().astype(cupy.int64), e.min(), e.max(), n_new])

    def insert(self, keys: object, exits: object) -> None:
        """Insert-or-accumulate, same contract and same resulting slots as ``ExitHashTable.insert``."""
        k = _device_keys(keys)
        e = cupy.asarray(exits)
        if e.shape != (k.size,) or (k.size and e.dtype.kind not in "iu"):
            raise TableError(
                f"exit table | exits must be {k.size} integers (one per key), got shape {e.shape} dtype {e.dtype}."
            )
        if k.size == 0:
            return
        e = e.astype(cupy.int64)
        bad_key, lo, hi, n_new = (int(v) for v in self._insert_stats(k, e).get())  # the one pre-insert sync
        if bad_key:
            raise TableError(f"exit table | key 0x{EMPTY_KEY:016x} is the empty-slot marker and cannot be stored.")
        if lo < 1 or hi > self.num_layers:
            raise TableError(f"exit table | exit layers must be in 1..{self.num_layers}, got {lo}..{hi}.")
        check_insert(self.size, self.capacity, n_new, self.total, k.size)
        n = k.size
        pos = cupy.empty(n, dtype=cupy.int64)
        state = cupy.empty(n, dtype=cupy.int32)
        pending = cupy.zeros(1, dtype=cupy.uint32)
        _launch("insert_init", n, (k, np.int64(n), np.int32(self.shift), pos, state))
        limit, done, chunk = self.capacity + n + 1, 0, 1
        while True:
            for _ in range(chunk):
                pending.fill(0)  # the flag reflects the chunk's last probe
                _launch("insert_probe", n, (self.keys, np.int64(self.capacity), k, pos, state, np.int64(n), pending))
                _launch("insert_claim", n, (self.keys, k, pos, state, np.int64(n)))
            done += chunk
            if int(pending.get()[0]) == 0:
                break
            if done >= limit:
                raise GeepInternalError("exit table | CUDA insert did not finish within capacity + n rounds (a bug).")
            chunk = min(2 * chunk, _MAX_CHUNK)
        _launch("accumulate_counts", n, (self.counts, np.int32(self.num_layers), pos, e, np.int64(n)))
        self.size += n_new
        self.total += int(n)


def device_padded_keys(input_ids: Any, attention_mask: Any, special_ids: tuple[int, ...],
                       orders: tuple[int, ...], seed: int) -> Any:
    """CUDA twin of ``runtime.keys.padded_keys``: (B, S, len(orders)) uint64 keys on the device."""
    ids = cupy.ascontiguousarray(cupy.asarray(input_ids, dtype=cupy.int64))
    if ids.ndim != 2:
        raise TableError(f"exit table | input_ids must be a (batch, seq) array, got shape {ids.shape}.")
    mask = (cupy.ones_like(ids) if attention_mask is None
            else cupy.ascontiguousarray(cupy.asarray(attention_mask, dtype=cupy.int64)))
    b, s = ids.shape
    specials = cupy.asarray(np.asarray(special_ids, dtype=np.int64).reshape(-1))
    out = cupy.empty((b, s, len(orders)), dtype=cupy.uint64)
    for j, order in enumerate(orders):
        _launch("ngram_keys", b * s, (ids, mask, np.int64(b), np.int32(s), specials, np.int32(specials.size),
                                      np.int32(order), np.uint64(initial_state(order, seed)),
                                      np.int32(len(orders)), np.int32(j), out))
    return out


__all__ = ["CupyExitHashTable", "MISS", "compile_kernels", "device_padded_keys"]
