"""Tokenisation, padding and length bucketing: NumPy only, shared by training, export and the runtime.

Rows are kept unpadded (one int64 array per row) until a batch is formed, so each batch is padded only to its own
longest row (dynamic padding). Texts longer than ``max_len`` tokens are truncated (longest-first for pairs);
that is documented behaviour, not an error. Empty or non-string texts are errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geep_deploy.errors import DataError

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Encoded:
    """Unpadded token ids and segment ids of a list of inputs."""

    ids: list[np.ndarray]
    type_ids: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))

    def take(self, idx: Sequence[int] | np.ndarray) -> Encoded:
        return Encoded([self.ids[i] for i in idx], [self.type_ids[i] for i in idx])


def check_texts(texts_a: object, texts_b: object = None) -> None:
    """Reject what cannot be classified, naming the bad row."""
    if isinstance(texts_a, str) or not isinstance(texts_a, Sequence):
        raise DataError(
            f"input | texts must be a list of strings, got {type(texts_a).__name__}. Wrap one text as [text]."
        )
    if len(texts_a) == 0:
        raise DataError("input | got an empty list of texts; nothing to classify.")
    if texts_b is not None:
        if isinstance(texts_b, str) or not isinstance(texts_b, Sequence):
            raise DataError(f"input | texts_b must be a list of strings, got {type(texts_b).__name__}.")
        if len(texts_b) != len(texts_a):
            raise DataError(f"input | got {len(texts_a)} first texts but {len(texts_b)} second texts of pairs.")
    for name, texts in (("text", texts_a), ("text_b", texts_b or ())):
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataError(f"input | {name} #{i} is a {type(t).__name__}, expected str.")
            if not t.strip():
                raise DataError(f"input | {name} #{i} is empty or whitespace only.")
        _check_encodable(name, texts)


def _check_encodable(name: str, texts: Sequence[str]) -> None:
    """Reject lone surrogates (``"\\ud800"``: not text, and a tokenizer ``TypeError`` otherwise); one pass
    over the joined texts, the per-row search only when one is there."""
    try:
        "".join(texts).encode("utf-8")
    except UnicodeEncodeError:
        for i, t in enumerate(texts):
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as e:
                raise DataError(
                    f"input | {name} #{i} holds a lone surrogate U+{ord(t[e.start]):04X} at character {e.start}, "
                    "which is not valid Unicode text. Decode the input with errors='replace' or fix its source."
                ) from None


class TextEncoder:
    """A BERT tokenizer (``tokenizers`` JSON) with truncation to ``max_len`` and no padding."""

    def __init__(self, tokenizer_json: str, max_len: int) -> None:
        from tokenizers import Tokenizer

        if max_len < 8:
            raise DataError(f"input | max_len must be >= 8, got {max_len}.")
        self.tokenizer_json, self.max_len = tokenizer_json, max_len
        self._tok = Tokenizer.from_str(tokenizer_json)
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=max_len)
        self.pad_id = self._tok.token_to_id("[PAD]") or 0
        self.special_ids = frozenset(
            i for t in ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]") if (i := self._tok.token_to_id(t)) is not None
        )
        unk = self._tok.token_to_id("[UNK]")
        probe = self._tok.encode("the movie was good").ids
        if self._tok.get_vocab_size() < 100 or (unk is not None and unk in probe):
            raise DataError(
                "input | the tokenizer maps plain English words to [UNK] "
                f"(vocabulary of {self._tok.get_vocab_size()} tokens). The tokenizer files are broken."
            )

    def encode(self, texts_a: Sequence[str], texts_b: Sequence[str] | None = None) -> Encoded:
        check_texts(texts_a, texts_b)
        inputs = list(texts_a) if texts_b is None else list(zip(texts_a, texts_b))
        out = self._tok.encode_batch(inputs)
        enc = Encoded(
            [np.asarray(e.ids, dtype=np.int64) for e in out],
            [np.asarray(e.type_ids, dtype=np.int64) for e in out],
        )
        self._check_not_empty(enc, texts_b is not None, texts_a, texts_b)
        return enc

    def _check_not_empty(self, enc: Encoded, pair: bool, texts_a: Sequence[str],
                         texts_b: Sequence[str] | None) -> None:
        """A text of only invisible characters (zero-width space, NUL, control codes) tokenizes to nothing; a
        prediction for it would be a guess from [CLS][SEP], so it is an error naming the row."""
        for i, (ids, types) in enumerate(zip(enc.ids, enc.type_ids)):
            if not pair:
                if len(ids) > 2:  # [CLS] text [SEP]
                    continue
                n_a, n_b = 0, 1
            else:
                n_a, n_b = int((types == 0).sum()) - 2, int((types == 1).sum()) - 1
            if n_a < 1 or n_b < 1:
                name, text = ("text", texts_a[i]) if n_a < 1 else ("text_b", texts_b[i] if texts_b else "")
                raise DataError(f"input | {name} #{i} {text[:40]!r} has no visible characters the tokenizer "
                                "keeps (only zero-width, control or NUL characters); nothing to classify.")


def pad_batch(enc: Encoded, pad_id: int = 0, pad_to: int | None = None) -> dict[str, np.ndarray]:
    """Stack rows into (B, S) int64 arrays, S = longest row (or ``pad_to``); mask marks real tokens."""
    n = len(enc)
    width = int(max(len(x) for x in enc.ids)) if pad_to is None else pad_to
    ids = np.full((n, width), pad_id, dtype=np.int64)
    types = np.zeros((n, width), dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    for i, (a, t) in enumerate(zip(enc.ids, enc.type_ids)):
        if len(a) > width:
            raise DataError(f"input | row {i} has {len(a)} tokens, more than the padded width {width}.")
        ids[i, : len(a)] = a
        types[i, : len(t)] = t
        mask[i, : len(a)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices sorted by length (stable), cut into consecutive batches: the fair bucketing every method gets."""
    if batch_size < 1:
        raise DataError(f"input | batch_size must be >= 1, got {batch_size}.")
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def shuffled_bucket_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Training batches: shuffle, sort within windows of 50 batches by length, shuffle the batches."""
    perm = rng.permutation(len(lengths))
    window = batch_size * 50
    batches: list[np.ndarray] = []
    for s in range(0, len(perm), window):
        chunk = perm[s : s + window]
        chunk = chunk[np.argsort(np.asarray(lengths)[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches
