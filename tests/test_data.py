"""TSV reader errors, tokenizer sanity (real words get real ids), padding and length bucketing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from models import real_tokenizer_json

from geep_deploy.data import bundled_data_dir, label_names, load_split, read_labels, read_tsv
from geep_deploy.encoding import TextEncoder, check_texts, length_sorted_batches, pad_batch
from geep_deploy.errors import DataError

LABELS = ["neg", "pos"]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "x.tsv"
    p.write_text(text, encoding="utf-8")
    return p


def test_bundled_slice_is_complete() -> None:
    train = load_split(bundled_data_dir(), "train")
    dev = load_split(bundled_data_dir(), "dev")
    assert (len(train), len(dev)) == (2000, 872)
    assert train.label_names == ["0", "1"] or len(train.label_names) == 2
    assert not train.is_pair and (bundled_data_dir() / "SOURCE.md").is_file()


def test_pairs(tmp_path: Path) -> None:
    ds = read_tsv(_write(tmp_path, "label\ta\tb\n1\tone\ttwo\n0\tthree\tfour\n"), LABELS)
    assert ds.is_pair and ds.texts_b == ["two", "four"] and ds.labels == [1, 0]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "is empty"),
        ("1\tfine\n0\tx\ty\n", r"x\.tsv:2 has 3 columns"),
        ("text\tlabel\n1\tx\n", "header"),
        ("label\ttext\n1\tfine\n0\tx\ty\n", r"x\.tsv:3 has 3 columns"),
        ("label\ttext\nyes\tfine\n", r"x\.tsv:2 label 'yes' is neither a name in labels.txt \(neg, pos\)"),
        ("label\ttext\n2\tfine\n", r"x\.tsv:2 label 2 is unknown"),
        ("label\ttext\n1\t  \n", r"x\.tsv:2 has an empty text"),
        ("label\ttext\n", "no rows"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, content: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        read_tsv(_write(tmp_path, content), LABELS)


def test_missing_files_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is missing"):
        read_labels(tmp_path / "labels.txt")
    with pytest.raises(DataError, match="not a directory"):
        load_split(tmp_path / "none", "train")
    with pytest.raises(DataError, match="unknown split"):
        load_split(tmp_path, "validation")
    (tmp_path / "bad.tsv").write_bytes(b"label\ttext\n1\t\xff\xfe\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_tsv(tmp_path / "bad.tsv", LABELS)


@pytest.mark.parametrize(
    ("train", "match"),
    [
        ("label\ttext\n", "has a header but no rows"),  # no labels.txt: the labels come from train.tsv's rows
        ("\n\n", "is empty"),
        ("0\ta\n7\tb\n", r"label ids skip 1, 2, 3, 4, 5, 6 \(ids run 0..K-1\); write .*labels.txt"),
        ("-1\ta\n1\tb\n", "negative label id"),
        ("pos\ta\npos\tb\n", "1 distinct label"),
    ],
)
def test_labels_read_from_train_rows_refuse_what_would_train_wrong(tmp_path: Path, train: str, match: str) -> None:
    (tmp_path / "train.tsv").write_text(train, encoding="utf-8")
    with pytest.raises(DataError, match=match):
        label_names(tmp_path)


def test_a_split_without_labels_txt_or_train_rows_reads_against_known_labels(tmp_path: Path) -> None:
    (tmp_path / "dev.tsv").write_text("pos\tgood\nneg\tbad\n", encoding="utf-8")
    assert load_split(tmp_path, "dev", known_labels=LABELS).labels == [1, 0]
    with pytest.raises(DataError, match="labels.txt is missing"):  # nothing to read them against
        load_split(tmp_path, "dev")
    (tmp_path / "train.tsv").write_text("pos\ta\nneg\tb\nmaybe\tc\n", encoding="utf-8")
    assert load_split(tmp_path, "dev", known_labels=LABELS).label_names == LABELS  # the model's, not train.tsv's
    (tmp_path / "dev.tsv").write_text("pos\tgood\nmaybe\tunsure\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"label 'maybe' is neither one of the model's labels \(neg, pos\).*"
                                        "trained on these labels only"):
        load_split(tmp_path, "dev", known_labels=LABELS)
    (tmp_path / "labels.txt").write_text("pos\nneg\nmaybe\n", encoding="utf-8")  # the folder's own names win
    assert load_split(tmp_path, "dev", known_labels=LABELS).label_names == ["pos", "neg", "maybe"]


def test_labels_read_from_train_rows(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("label\ttext\n1\ta\n0\tb\n2\tc\n", encoding="utf-8")
    assert label_names(tmp_path) == ["0", "1", "2"]
    (tmp_path / "train.tsv").write_text("sports\ta\ntech\tb\n", encoding="utf-8")
    assert label_names(tmp_path) == ["sports", "tech"]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(real_tokenizer_json(), max_len=16)


def test_real_words_get_real_ids(encoder: TextEncoder) -> None:
    enc = encoder.encode(["a charming and affecting journey"])
    unk = encoder._tok.token_to_id("[UNK]")
    assert unk not in enc.ids[0].tolist() and len(enc.ids[0]) >= 7
    assert encoder._tok.decode(enc.ids[0].tolist()) == "a charming and affecting journey"


def test_truncation_and_pairs(encoder: TextEncoder) -> None:
    enc = encoder.encode(["word " * 500], None)
    assert len(enc.ids[0]) == 16  # huge text: truncated to max_len, documented behaviour
    pair = encoder.encode(["first part"], ["second part here"])
    assert set(pair.type_ids[0].tolist()) == {0, 1} and len(pair.ids[0]) == len(pair.type_ids[0])


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ("just a string", None, "must be a list"),
        ([], None, "empty list"),
        (["ok", ""], None, r"text #1 is empty"),
        (["ok", 3], None, r"text #1 is a int"),
        (["ok"], ["x", "y"], "1 first texts but 2 second"),
        (["ok"], [None], r"text_b #0 is a NoneType"),
    ],
)
def test_bad_inputs(a, b, match) -> None:
    with pytest.raises(DataError, match=match):
        check_texts(a, b)


def test_broken_tokenizer_is_detected() -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece

    tiny = Tokenizer(WordPiece({"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3, "[MASK]": 4}, unk_token="[UNK]"))
    with pytest.raises(DataError, match=r"\[UNK\]"):
        TextEncoder(tiny.to_str(), 16)


def test_pad_batch(encoder: TextEncoder) -> None:
    enc = encoder.encode(["short", "a somewhat longer sentence here"])
    b = pad_batch(enc)
    assert b["input_ids"].shape == (2, int(enc.lengths.max()))
    assert b["attention_mask"].sum(1).tolist() == enc.lengths.tolist()
    assert (b["input_ids"][0, enc.lengths[0]:] == 0).all()


@given(st.lists(st.integers(1, 512), min_size=1, max_size=300), st.integers(1, 70))
def test_length_sorted_batches_partition_and_sort(lengths: list[int], bs: int) -> None:
    batches = length_sorted_batches(np.array(lengths), bs)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert all(len(b) == bs for b in batches[:-1])
    assert (np.diff(np.array(lengths)[flat]) >= 0).all()
