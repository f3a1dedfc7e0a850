"""Run the CUDA kernel source on the CPU (for tests on machines without a GPU).

The source of ``runtime/kernels/source.py`` is compiled as C++ with a small shim: ``__global__``/``__device__``
vanish, ``blockIdx``/``threadIdx``/``blockDim`` are globals, and ``atomicMin``/``atomicAdd`` are
plain read-modify-writes. A launch runs every thread of the grid one after another, **in a shuffled order**
(seeded), which is one legal schedule of the GPU. The host loop below mirrors ``CupyExitHashTable.insert``; it
checks the kernels' logic (and that the layout does not depend on thread order), not CuPy or the GPU.
"""

from __future__ import annotations

import ctypes
import hashlib
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from geep_deploy.errors import GeepInternalError
from runtime.exit_table import ExitHashTable
from runtime.kernels.source import SOURCE
from runtime.keys import initial_state

_SHIM = r"""
#include <cstdint>
#include <vector>
#include <random>
#include <algorithm>
struct dim3_t { unsigned int x; };
static dim3_t blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __forceinline__ inline
static unsigned long long atomicMin(unsigned long long* a, unsigned long long v) { auto o = *a; if (v < o) *a = v; return o; }
static unsigned int atomicAdd(unsigned int* a, unsigned int v) { auto o = *a; *a = o + v; return o; }
"""

_LAUNCH = r"""
static std::mt19937_64 rng_state(0);
extern "C" void set_seed(unsigned long long s) { rng_state.seed(s); }
template <class F> static void grid(long long n, F f) {
    std::vector<long long> order(n);
    for (long long i = 0; i < n; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng_state);
    blockDim.x = 256;
    for (long long t : order) { blockIdx.x = (unsigned)(t / 256); threadIdx.x = (unsigned)(t % 256); f(); }
}
extern "C" void run_ngram_keys(const long long* ids, const long long* mask, long long B, int S,
        const long long* sp, int nsp, int order, u64 h0, int no, int j, u64* out) {
    grid(B * S, [&] { ngram_keys(ids, mask, B, S, sp, nsp, order, h0, no, j, out); }); }
extern "C" void run_table_lookup(const u64* tk, long long cap, int shift, const u64* q, long long n, long long* out) {
    grid(n, [&] { table_lookup(tk, cap, shift, q, n, out); }); }
extern "C" void run_insert_init(const u64* k, long long n, int shift, long long* pos, int* st) {
    grid(n, [&] { insert_init(k, n, shift, pos, st); }); }
extern "C" void run_insert_probe(const u64* tk, long long cap, const u64* k, long long* pos, int* st, long long n,
        unsigned int* pend) { grid(n, [&] { insert_probe(tk, cap, k, pos, st, n, pend); }); }
extern "C" void run_insert_claim(u64* tk, const u64* k, const long long* pos, const int* st, long long n) {
    grid(n, [&] { insert_claim(tk, k, pos, st, n); }); }
extern "C" void run_accumulate_counts(unsigned int* c, int L, const long long* pos, const long long* e, long long n) {
    grid(n, [&] { accumulate_counts(c, L, pos, e, n); }); }
"""

_LIB: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _LIB
    if _LIB is None:
        code = _SHIM + SOURCE + _LAUNCH
        tag = hashlib.sha256(code.encode()).hexdigest()[:16]
        out = Path(tempfile.gettempdir()) / f"geep_kernels_cpu_{tag}.so"
        if not out.is_file():
            src = out.with_suffix(".cpp")
            src.write_text(code)
            tmp = out.with_suffix(f".{np.random.randint(1 << 30)}.tmp")
            subprocess.run(["g++", "-O1", "-std=c++17", "-shared", "-fPIC", "-o", str(tmp), str(src)], check=True,
                           capture_output=True)
            tmp.replace(out)
        _LIB = ctypes.CDLL(str(out))
    return _LIB


def _p(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


def emulated_insert(table: ExitHashTable, keys: np.ndarray, exits: np.ndarray, seed: int = 0) -> None:
    """``CupyExitHashTable.insert``'s kernel sequence on ``table``'s arrays (no input checks: tests only)."""
    lib = _lib()
    lib.set_seed(ctypes.c_ulonglong(seed))
    k = np.ascontiguousarray(keys, dtype=np.uint64)
    e = np.ascontiguousarray(exits, dtype=np.int64)
    n, cap = k.size, table.capacity
    new = np.unique(k[table.lookup(k) < 0]).size
    pos, state = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int32)
    pending = np.zeros(1, dtype=np.uint32)
    lib.run_insert_init(_p(k), ctypes.c_longlong(n), ctypes.c_int(table.shift), _p(pos), _p(state))
    for _ in range(cap + n + 1):
        pending[:] = 0
        lib.run_insert_probe(_p(table.keys), ctypes.c_longlong(cap), _p(k), _p(pos), _p(state), ctypes.c_longlong(n),
                             _p(pending))
        lib.run_insert_claim(_p(table.keys), _p(k), _p(pos), _p(state), ctypes.c_longlong(n))
        if pending[0] == 0:
            break
    else:
        raise GeepInternalError("emulated insert did not finish")
    lib.run_accumulate_counts(_p(table.counts), ctypes.c_int(table.num_layers), _p(pos), _p(e),
                              ctypes.c_longlong(n))
    table.size += int(new)
    table.total += int(n)


def emulated_lookup(table: ExitHashTable, keys: np.ndarray, seed: int = 0) -> np.ndarray:
    lib = _lib()
    lib.set_seed(ctypes.c_ulonglong(seed))
    q = np.ascontiguousarray(keys, dtype=np.uint64)
    out = np.empty(q.size, dtype=np.int64)
    lib.run_table_lookup(_p(table.keys), ctypes.c_longlong(table.capacity), ctypes.c_int(table.shift), _p(q),
                         ctypes.c_longlong(q.size), _p(out))
    return out


def emulated_padded_keys(ids: np.ndarray, mask: np.ndarray, special_ids: tuple[int, ...],
                         orders: tuple[int, ...], seed: int) -> np.ndarray:
    lib = _lib()
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    mask = np.ascontiguousarray(mask, dtype=np.int64)
    sp = np.ascontiguousarray(np.asarray(special_ids, dtype=np.int64).reshape(-1))
    b, s = ids.shape
    out = np.empty((b, s, len(orders)), dtype=np.uint64)
    for j, n in enumerate(orders):
        lib.run_ngram_keys(_p(ids), _p(mask), ctypes.c_longlong(b), ctypes.c_int(s), _p(sp), ctypes.c_int(sp.size),
                           ctypes.c_int(n), ctypes.c_ulonglong(initial_state(n, seed)), ctypes.c_int(len(orders)),
                           ctypes.c_int(j), _p(out))
    return out
