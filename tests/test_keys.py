"""Keys: the vectorised hash equals the Python-int reference, and only real, non-special n-grams get keys."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geep_deploy.errors import ConfigError
from runtime.keys import (
    EMPTY_KEY,
    check_orders,
    mix64,
    mix64_int,
    ngram_key_int,
    pad_rows,
    padded_keys,
    row_keys,
)

SPECIALS = (0, 100, 101, 102, 103)  # [PAD], [UNK], [CLS], [SEP], [MASK] in the MiniLM vocabulary


def test_golden_hash_values() -> None:
    # Pinned: changing these changes every stored table (bump HASH_SCHEME in runtime/exit_table.py).
    assert mix64_int(0) == 0
    assert ngram_key_int([1996]) == 0x4E3C304114DC6E05
    assert ngram_key_int([1996, 3185]) == 0x446A1F53427FBB69
    assert ngram_key_int([0], seed=0) == 0x397AB29740681D9


@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=50))
def test_mix64_array_equals_int_reference(values: list[int]) -> None:
    got = mix64(np.array(values, dtype=np.uint64))
    assert [int(v) for v in got] == [mix64_int(v) for v in values]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0, 100, 101, 102, 103, 1996, 2023, 3185, 7, 29000]), max_size=9),
                min_size=1, max_size=5), st.integers(0, 2**64 - 1))
def test_padded_keys_match_reference(rows: list[list[int]], seed: int) -> None:
    arrays = [np.array(r, dtype=np.int64) for r in rows]
    ids, mask = pad_rows(arrays)
    keys = padded_keys(ids, mask, SPECIALS, (1, 2), seed)
    for b, r in enumerate(rows):
        for i in range(ids.shape[1]):
            for j, n in enumerate((1, 2)):
                gram = r[i : i + n]
                ok = len(gram) == n and not any(t in SPECIALS for t in gram)
                expected = ngram_key_int(gram, seed) if ok else EMPTY_KEY
                assert int(keys[b, i, j]) == expected


def test_specials_padding_and_segment_boundaries_make_no_keys() -> None:
    ids = np.array([[101, 1996, 102, 3185, 102, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 1, 0, 0]])
    keys = padded_keys(ids, mask, SPECIALS)
    present = keys != np.uint64(EMPTY_KEY)
    assert present[:, :, 0].sum() == 2  # unigrams 1996, 3185
    assert present[:, :, 1].sum() == 0  # no bigram spans [SEP]
    assert int(keys[0, 1, 0]) == ngram_key_int([1996])


def test_row_keys_are_flat_padded_keys_in_row_order() -> None:
    rows = [np.array([101, 7, 8, 9, 102]), np.array([101, 102]), np.array([101, 5, 102])]
    keys, row = row_keys(rows, SPECIALS)
    assert row.tolist() == [0, 0, 0, 0, 0, 2]
    assert int(keys[0]) == ngram_key_int([7]) and int(keys[1]) == ngram_key_int([7, 8])
    assert not (keys == np.uint64(EMPTY_KEY)).any()


def test_order_is_part_of_the_key() -> None:
    assert ngram_key_int([5]) != ngram_key_int([5, 5])
    assert ngram_key_int([5, 6]) != ngram_key_int([6, 5])


@pytest.mark.parametrize("orders", [(), (0,), (1, 1), (5,)])
def test_bad_orders_rejected(orders: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="n-gram orders"):
        check_orders(orders)
