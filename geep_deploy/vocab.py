"""Give a pretrained BERT another WordPiece vocabulary: the backbone for Chinese text.

all-MiniLM-L6-v2 is the only pretrained encoder here, and its (bert-base-uncased) vocabulary holds 244 CJK
characters: on Chinese text most of its tokens are ``[UNK]`` (67% on THUCNews titles, 72% on AFQMC:
``vocab_ablation`` in bench/results/multi_dataset/). ``transplant_vocab`` keeps every Transformer weight, swaps the
vocabulary (e.g. bert-base-chinese, 21,128 tokens), copies the embedding row of every token the two vocabularies share, and draws the rows of new tokens
from a normal distribution with the old rows' mean and standard deviation (seeded), so fine-tuning starts from
distinct, in-scale vectors. The result is an ordinary backbone directory that ``load_backbone_dir`` reads.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geep_deploy.backbone import Backbone, load_backbone_dir
from geep_deploy.errors import ConfigError

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"


@dataclass(frozen=True)
class TransplantReport:
    """How much of the new vocabulary kept a pretrained embedding."""

    new_vocab_size: int
    copied: int
    drawn: int

    def to_dict(self) -> dict[str, int]:
        return {"new_vocab_size": self.new_vocab_size, "copied": self.copied, "drawn": self.drawn}


def read_vocab(path: Path) -> list[str]:
    """Tokens of a ``vocab.txt`` in id order; it must hold the BERT special tokens."""
    if not path.is_file():
        raise ConfigError(f"vocab | {path} is missing. Expected a BERT WordPiece vocab.txt (one token per line).")
    tokens = path.read_text(encoding="utf-8").split("\n")
    while tokens and tokens[-1] == "":
        tokens.pop()
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in tokens]
    if missing:
        raise ConfigError(f"vocab | {path} lacks the special tokens {missing}; it is not a BERT vocabulary.")
    return tokens


def tokenizer_vocab(tokenizer_json: str) -> list[str]:
    """Tokens of a WordPiece ``tokenizers`` JSON in id order (what the backbone's embedding rows mean)."""
    try:
        vocab = json.loads(tokenizer_json)["model"]["vocab"]
        tokens = [""] * len(vocab)
        for t, i in vocab.items():
            tokens[i] = t
    except (KeyError, TypeError, IndexError, json.JSONDecodeError):
        raise ConfigError("vocab | the backbone's tokenizer is not a WordPiece vocabulary; cannot map its "
                          "embedding rows to tokens.") from None
    return tokens


def transplanted_embeddings(old: np.ndarray, old_vocab: list[str], new_vocab: list[str],
                            seed: int = 0) -> tuple[np.ndarray, TransplantReport]:
    """Embedding matrix for ``new_vocab``: shared tokens keep their row, new ones are drawn (pure function)."""
    if old.shape[0] != len(old_vocab):
        raise ConfigError(f"vocab | the embedding matrix has {old.shape[0]} rows but the vocabulary "
                          f"{len(old_vocab)} tokens.")
    index = {t: i for i, t in enumerate(old_vocab)}
    rng = np.random.default_rng(seed)
    new = rng.normal(float(old.mean()), float(old.std()), size=(len(new_vocab), old.shape[1])).astype(old.dtype)
    pairs = [(j, index[t]) for j, t in enumerate(new_vocab) if t in index]
    if pairs:
        dst, src = map(np.asarray, zip(*pairs))
        new[dst] = old[src]
    return new, TransplantReport(len(new_vocab), len(pairs), len(new_vocab) - len(pairs))


def transplant_vocab(backbone: Backbone, vocab_txt: Path, out_dir: Path, lowercase: bool = True,
                     seed: int = 0) -> tuple[Backbone, TransplantReport]:
    """Write ``out_dir``: ``backbone`` with the vocabulary of ``vocab_txt`` (written to a temp dir, then renamed).

    Raises:
        ConfigError: a missing or non-BERT vocabulary, or a backbone without ``vocab.txt``.
    """
    from safetensors.numpy import load_file, save_file
    from tokenizers import BertWordPieceTokenizer

    new_vocab = read_vocab(Path(vocab_txt))
    old_vocab = tokenizer_vocab(backbone.tokenizer_json)
    weights = load_file(str(backbone.weights))
    key = next((k for k in weights if k.removeprefix("bert.") == WORD_EMBEDDINGS), None)
    if key is None:
        raise ConfigError(f"vocab | {backbone.weights} has no {WORD_EMBEDDINGS}.")
    weights[key], report = transplanted_embeddings(weights[key], old_vocab, new_vocab, seed)
    cfg = json.loads((backbone.path / "config.json").read_text(encoding="utf-8"))
    cfg["vocab_size"] = len(new_vocab)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_file(weights, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(cfg, indent=1), encoding="utf-8")
        shutil.copyfile(vocab_txt, tmp / "vocab.txt")
        tok = BertWordPieceTokenizer(str(tmp / "vocab.txt"), lowercase=lowercase)
        (tmp / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
        (tmp / "transplant.json").write_text(json.dumps(
            {"from": str(backbone.path), "vocab": str(vocab_txt), "lowercase": lowercase, "seed": seed,
             **report.to_dict()}, indent=1), encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return load_backbone_dir(out_dir), report
