"""CUDA twin vs NumPy twin: same slots, counts, lookups and keys.

The CuPy tests are marked ``cupy`` (skipped where no GPU is visible). Two checks run without a GPU: the kernel
source compiles with nvcc (where the CUDA toolkit is installed), and the kernels, compiled as C++ and run
thread by thread in shuffled orders (``runtime/kernels/cpu_emulation.py``), build the NumPy twin's tables.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geep_deploy.errors import TableCapacityError, TableError
from runtime.exit_table import ExitHashTable, capacity_for
from runtime.keys import EMPTY_KEY, pad_rows, padded_keys

L = 5


def _to_device(host: ExitHashTable):  # CuPy is imported only where a GPU test runs
    from runtime.kernels.cupy_table import CupyExitHashTable

    return CupyExitHashTable.from_host(host)


key_lists = st.lists(st.one_of(st.integers(0, 30), st.integers(2**63, 2**63 + 5), st.just(2**64 - 2)),
                     min_size=1, max_size=60)


@pytest.mark.cupy
@settings(max_examples=60, deadline=None)
@given(st.lists(key_lists, min_size=1, max_size=3), st.floats(0.3, 0.95), st.randoms(use_true_random=False))
def test_twins_build_identical_tables(batches: list[list[int]], load: float, rnd) -> None:
    import cupy

    distinct = len({k for b in batches for k in b})
    host = ExitHashTable(capacity_for(distinct, load), L)
    dev = _to_device(host)
    for keys in batches:
        k = np.array(keys, dtype=np.uint64)
        e = np.array([rnd.randint(1, L) for _ in keys], dtype=np.int64)
        host.insert(k, e)
        dev.insert(cupy.asarray(k), cupy.asarray(e))
    back = dev.to_host()
    assert np.array_equal(back.keys, host.keys) and np.array_equal(back.counts, host.counts)
    assert (back.size, back.total) == (host.size, host.total)
    probe = np.array(sorted({k for b in batches for k in b}) + [31, 32, EMPTY_KEY], dtype=np.uint64)
    assert np.array_equal(cupy.asnumpy(dev.lookup(cupy.asarray(probe))), host.lookup(probe))


@pytest.mark.cupy
def test_large_random_build_and_lookup_agree() -> None:
    import cupy

    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2**63, 200_000, dtype=np.uint64)
    exits = rng.integers(1, L + 1, keys.size)
    host = ExitHashTable.for_keys(keys.size, L)
    host.insert(keys, exits)
    dev = _to_device(ExitHashTable.for_keys(keys.size, L))
    dev.insert(cupy.asarray(keys), cupy.asarray(exits))
    assert np.array_equal(dev.to_host().keys, host.keys)
    assert np.array_equal(cupy.asnumpy(dev.histograms(cupy.asarray(keys))), host.histograms(keys))


@pytest.mark.cupy
def test_device_errors_match_host() -> None:
    import cupy

    dev = _to_device(ExitHashTable(8, 2))
    with pytest.raises(TableError, match="empty-slot marker"):
        dev.insert(cupy.asarray(np.array([EMPTY_KEY], dtype=np.uint64)), cupy.asarray([1]))
    dev.insert(cupy.arange(7, dtype=cupy.uint64), cupy.ones(7, dtype=cupy.int64))
    with pytest.raises(TableCapacityError, match="full"):
        dev.insert(cupy.asarray(np.array([100], dtype=np.uint64)), cupy.asarray([1]))


@pytest.mark.cupy
def test_device_keys_equal_numpy_keys() -> None:
    import cupy

    from runtime.kernels.cupy_table import device_padded_keys

    rows = [np.array([101, 1996, 2023, 102, 3185, 7, 102]), np.array([101, 100, 5, 102]), np.array([101, 102])]
    ids, mask = pad_rows(rows)
    specials = (0, 100, 101, 102, 103)
    want = padded_keys(ids, mask, specials, (1, 2, 3), seed=11)
    got = device_padded_keys(cupy.asarray(ids), cupy.asarray(mask), specials, (1, 2, 3), seed=11)
    assert np.array_equal(cupy.asnumpy(got), want)


needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to compile the kernels for the CPU")


@needs_gxx
@settings(max_examples=40, deadline=None)
@given(st.lists(key_lists, min_size=1, max_size=3), st.floats(0.3, 0.95), st.integers(0, 2**32),
       st.randoms(use_true_random=False))
def test_cuda_kernels_emulated_on_cpu_build_identical_tables(batches: list[list[int]], load: float, seed: int,
                                                             rnd) -> None:
    from runtime.kernels.cpu_emulation import emulated_insert, emulated_lookup

    distinct = len({k for b in batches for k in b})
    host = ExitHashTable(capacity_for(distinct, load), L)
    emu = ExitHashTable(host.capacity, L)
    for keys in batches:
        k = np.array(keys, dtype=np.uint64)
        e = np.array([rnd.randint(1, L) for _ in keys], dtype=np.int64)
        host.insert(k, e)
        emulated_insert(emu, k, e, seed=seed)
    assert np.array_equal(emu.keys, host.keys) and np.array_equal(emu.counts, host.counts)
    assert (emu.size, emu.total) == (host.size, host.total)
    probe = np.array(sorted({k for b in batches for k in b}) + [31, 32, EMPTY_KEY], dtype=np.uint64)
    assert np.array_equal(emulated_lookup(host, probe, seed=seed), host.lookup(probe))


@needs_gxx
def test_cuda_key_kernel_emulated_on_cpu_equals_numpy_keys() -> None:
    from runtime.kernels.cpu_emulation import emulated_padded_keys

    rows = [np.array([101, 1996, 2023, 102, 3185, 7, 102]), np.array([101, 100, 5, 102]), np.array([101, 102])]
    ids, mask = pad_rows(rows)
    specials = (0, 100, 101, 102, 103)
    for orders in ((1,), (1, 2), (1, 2, 3)):
        want = padded_keys(ids, mask, specials, orders, seed=11)
        assert np.array_equal(emulated_padded_keys(ids, mask, specials, orders, seed=11), want)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs the CUDA toolkit (nvcc)")
def test_kernel_source_compiles_with_nvcc(tmp_path: Path) -> None:
    from runtime.kernels.source import KERNEL_NAMES, SOURCE

    src = tmp_path / "k.cu"
    src.write_text(SOURCE)
    subprocess.run(["nvcc", "-ptx", "-arch=sm_80", "-o", str(tmp_path / "k.ptx"), str(src)], check=True,
                   capture_output=True, timeout=120)
    ptx = (tmp_path / "k.ptx").read_text()
    assert all(f".entry {name}(" in ptx for name in KERNEL_NAMES)
