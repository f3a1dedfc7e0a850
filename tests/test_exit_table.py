"""NumPy exit table: insert/lookup against a dict reference, capacity, sentinel, file format."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geep_deploy.errors import ConfigError, TableCapacityError, TableError
from runtime.exit_table import ExitHashTable, capacity_for, load_table, save_table
from runtime.keys import EMPTY_KEY

L = 4
# Small key ranges force duplicates; tiny capacities force home-slot collisions and long probe chains.
key_lists = st.lists(st.one_of(st.integers(0, 20), st.integers(2**63, 2**63 + 5), st.just(2**64 - 2)),
                     min_size=0, max_size=40)


def _reference(batches: list[tuple[list[int], list[int]]]) -> dict[int, Counter]:
    ref: dict[int, Counter] = {}
    for keys, exits in batches:
        for k, e in zip(keys, exits):
            ref.setdefault(k, Counter())[e] += 1
    return ref


@settings(max_examples=80, deadline=None)
@given(st.lists(key_lists, min_size=1, max_size=3), st.randoms(use_true_random=False))
def test_insert_lookup_match_dict_reference(batches_keys: list[list[int]], rnd) -> None:
    distinct = len({k for b in batches_keys for k in b})
    table = ExitHashTable(capacity_for(distinct, load_factor=0.9), L)  # near full on purpose
    batches = [(b, [rnd.randint(1, L) for _ in b]) for b in batches_keys]
    for keys, exits in batches:
        table.insert(np.array(keys, dtype=np.uint64), np.array(exits, dtype=np.int64))
    ref = _reference(batches)
    assert table.size == len(ref) and table.total == sum(len(b) for b in batches_keys)
    probe = sorted(ref) + [21, 22, 2**63 + 6, 12345]
    hist = table.histograms(np.array(probe, dtype=np.uint64))
    for k, h in zip(probe, hist):
        assert h.tolist() == [ref.get(k, Counter())[e] for e in range(1, L + 1)]
    slots = table.lookup(np.array(probe, dtype=np.uint64))
    assert (slots[: len(ref)] >= 0).all() and (slots[len(ref):] == -1).all()
    assert len(set(slots[: len(ref)].tolist())) == len(ref)
    table.check_consistent()


@settings(max_examples=40, deadline=None)
@given(key_lists.filter(bool), st.randoms(use_true_random=False))
def test_layout_is_independent_of_order_within_a_batch(keys: list[int], rnd) -> None:
    # The property that lets the CUDA twin (any thread order) produce the same slots as this one.
    exits = [rnd.randint(1, L) for _ in keys]
    perm = list(range(len(keys)))
    rnd.shuffle(perm)
    a, b = ExitHashTable(capacity_for(len(keys), 0.9), L), ExitHashTable(capacity_for(len(keys), 0.9), L)
    a.insert(np.array(keys, dtype=np.uint64), np.array(exits))
    b.insert(np.array([keys[i] for i in perm], dtype=np.uint64), np.array([exits[i] for i in perm]))
    assert np.array_equal(a.keys, b.keys) and np.array_equal(a.counts, b.counts)


def test_golden_layout_with_collisions() -> None:
    # Keys 1, 2**63, 12345678901234567, 9 share home slot 4; 2 and 10 share slot 1. Smallest key wins each round.
    t = ExitHashTable(8, 3)
    keys = np.array([1, 2, 3, 1, 2**63, 12345678901234567, 9, 10], dtype=np.uint64)
    t.insert(keys, np.array([1, 2, 3, 3, 2, 1, 1, 2]))
    assert [int(x) for x in t.keys] == [2**63, 2, 10, EMPTY_KEY, 1, 9, 3, 12345678901234567]
    assert t.counts.tolist() == [[0, 1, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1], [1, 0, 0], [0, 0, 1],
                                 [1, 0, 0]]


def test_full_table_raises_and_leaves_table_unchanged() -> None:
    t = ExitHashTable(8, 2)
    t.insert(np.arange(7, dtype=np.uint64), np.ones(7, dtype=np.int64))
    before = t.keys.copy(), t.counts.copy()
    with pytest.raises(TableCapacityError, match=r"full: 7 keys stored \+ 1 new keys > capacity 8"):
        t.insert(np.array([3, 100], dtype=np.uint64), np.array([1, 2]))
    assert np.array_equal(t.keys, before[0]) and np.array_equal(t.counts, before[1])
    t.insert(np.array([3, 3], dtype=np.uint64), np.array([2, 2]))  # existing keys still accumulate
    assert t.histograms(np.array([3], dtype=np.uint64)).tolist() == [[1, 2]]


def test_sentinel_and_bad_inputs_rejected() -> None:
    t = ExitHashTable(8, 2)
    with pytest.raises(TableError, match="empty-slot marker"):
        t.insert(np.array([1, EMPTY_KEY], dtype=np.uint64), np.array([1, 1]))
    with pytest.raises(TableError, match=r"exit layers must be in 1..2, got 0..3"):
        t.insert(np.array([1, 2], dtype=np.uint64), np.array([0, 3]))
    with pytest.raises(TableError, match="non-negative integers"):
        t.insert(np.array([-1]), np.array([1]))
    with pytest.raises(TableError, match="one per key"):
        t.insert(np.array([1, 2], dtype=np.uint64), np.array([1]))
    assert t.size == 0 and t.lookup(np.array([EMPTY_KEY], dtype=np.uint64)).tolist() == [-1]
    # EMPTY_KEY is a miss even when its home slot is occupied (found by the emulated CUDA lookup)
    t.insert(np.arange(7, dtype=np.uint64), np.ones(7, dtype=np.int64))
    assert t.lookup(np.array([EMPTY_KEY], dtype=np.uint64)).tolist() == [-1]
    with pytest.raises(ConfigError, match="power of two"):
        ExitHashTable(12, 2)


def test_capacity_for_is_next_pow2_of_n_over_load() -> None:
    assert capacity_for(1) == 8 and capacity_for(100, 0.5) == 256 and capacity_for(128, 0.5) == 256
    assert capacity_for(129, 0.5) == 512
    with pytest.raises(ConfigError, match="load_factor"):
        capacity_for(10, 1.0)


def _filled(tmp_path: Path) -> tuple[ExitHashTable, Path]:
    rng = np.random.default_rng(0)
    t = ExitHashTable.for_keys(50, 3, seed=7, orders=(1,))
    t.insert(rng.integers(0, 2**62, 60, dtype=np.uint64) % np.uint64(50), rng.integers(1, 4, 60))
    path = save_table(t, tmp_path / "t.npz", meta={"quantile": 0.4})
    return t, path


def test_round_trip(tmp_path: Path) -> None:
    t, path = _filled(tmp_path)
    u, meta = load_table(path)
    assert meta == {"quantile": 0.4}
    assert (u.capacity, u.num_layers, u.seed, u.orders, u.size, u.total) == (
        t.capacity, t.num_layers, 7, (1,), t.size, t.total)
    assert np.array_equal(u.keys, t.keys) and np.array_equal(u.counts, t.counts)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


def test_truncated_foreign_and_corrupted_files(tmp_path: Path) -> None:
    _, path = _filled(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TableError, match="cut.npz cannot be read"):
        load_table(cut)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(TableError, match="foreign.npz is not a geep-deploy exit table"):
        load_table(foreign)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(TableError, match="junk.npz cannot be read"):
        load_table(junk)
    with pytest.raises(TableError, match="does not exist"):
        load_table(tmp_path / "absent.npz")
    with np.load(path) as z:
        header, keys, counts = json.loads(bytes(z["header"])), z["keys"], z["counts"]
    newer = tmp_path / "newer.npz"
    np.savez(newer, header=np.frombuffer(json.dumps({**header, "format_version": 99}).encode(), np.uint8),
             keys=keys, counts=counts)
    with pytest.raises(TableError, match="format version 99"):
        load_table(newer)
    shuffled = tmp_path / "shuffled.npz"
    np.savez(shuffled, header=np.frombuffer(json.dumps(header).encode(), np.uint8), keys=keys[::-1].copy(),
             counts=counts)
    with pytest.raises(TableError, match="shuffled.npz: .* not reachable"):
        load_table(shuffled)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, header=np.frombuffer(json.dumps(header).encode(), np.uint8), keys=keys,
             counts=counts.astype(np.int64))
    with pytest.raises(TableError, match="do not match the header"):
        load_table(wrong)


def test_cuda_source_is_generated_from_the_shared_constants() -> None:
    # The CUDA twin cannot run here; at least its source must carry the NumPy twin's constants and kernels.
    from runtime.kernels.source import KERNEL_NAMES, SOURCE
    from runtime.keys import GOLDEN, M1, M2

    for const in (EMPTY_KEY, GOLDEN, M1, M2):
        assert f"0x{const:016x}ull" in SOURCE
    for name in KERNEL_NAMES:
        assert f'extern "C" __global__ void {name}(' in SOURCE
    assert "atomicMin" in SOURCE and "atomicAdd" in SOURCE and "claim[" not in SOURCE  # no table-sized claim array
