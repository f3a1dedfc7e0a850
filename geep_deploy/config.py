"""Backbone configuration: the few numbers of a BERT that the model, FLOPs and export need.

Read from a Hugging Face ``config.json`` dict, so any BERT checkpoint directory works, and written back as a
plain dict so checkpoints and manifests stay JSON-serialisable.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from geep_deploy.errors import ConfigError

SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "relu")


@dataclass(frozen=True)
class BertShape:
    """Architecture of a BERT encoder (names follow Hugging Face's ``BertConfig``)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"config | hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}."
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(
                f"config | hidden_act {self.hidden_act!r} is not supported. Expected one of {SUPPORTED_ACTIVATIONS}."
            )
        if self.num_hidden_layers < 1:
            raise ConfigError(f"config | num_hidden_layers must be >= 1, got {self.num_hidden_layers}.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> BertShape:
        """Build from a Hugging Face config dict; unknown keys are ignored, missing required keys named."""
        model_type = cfg.get("model_type", "bert")
        if model_type != "bert":
            raise ConfigError(f"config | model_type {model_type!r} is not supported. Expected 'bert'.")
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING}
        missing = sorted(n for n in required if n not in cfg)
        if missing:
            raise ConfigError(f"config | backbone config lacks {missing}. Is this a BERT config.json?")
        return cls(**{k: v for k, v in cfg.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": "bert", **asdict(self)}
