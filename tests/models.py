"""Tiny fixture models shared by every test: random-weight BERTs with exits, and checkpoints of them."""

from __future__ import annotations

from pathlib import Path

import torch

from geep_deploy.backbone import load_backbone_dir
from geep_deploy.checkpoint import Checkpoint, save_checkpoint
from geep_deploy.config import BertShape
from geep_deploy.model import ExitBert

TINY_SHAPE = BertShape(
    vocab_size=30522,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=128,
)


def real_tokenizer_json() -> str:
    """The packaged MiniLM tokenizer (real vocabulary, so real words get real ids)."""
    return load_backbone_dir().tokenizer_json


def tiny_model(num_labels: int = 2, seed: int = 0, shape: BertShape = TINY_SHAPE) -> ExitBert:
    torch.manual_seed(seed)
    return ExitBert(shape, num_labels).eval()


def tiny_checkpoint(
    path: Path, method: str = "geep", num_labels: int = 2, seed: int = 0, max_len: int = 64
) -> Checkpoint:
    """A random-weight checkpoint with the real tokenizer, saved at ``path``."""
    ckpt = Checkpoint(
        model=tiny_model(num_labels, seed),
        method=method,
        label_names=[f"label{i}" for i in range(num_labels)],
        tokenizer_json=real_tokenizer_json(),
        max_len=max_len,
        hparams={"seed": seed},
    )
    save_checkpoint(ckpt, path)
    return ckpt
