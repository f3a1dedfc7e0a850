"""BERT with an exit classifier at every depth.

The encoder mirrors Hugging Face's ``BertModel`` parameter names exactly, so any BERT ``model.safetensors`` loads
without renaming, and it is written with plain ops only (matmul, softmax, erf-GELU, LayerNorm) so every depth
exports to standard ONNX that TensorRT can parse.

Heads: ``heads[k-1]`` classifies the pooled states after layer ``k`` (masked mean over real tokens by default,
or the ``[CLS]`` state); ``heads[L-1]`` is the teacher ``T``.
Depth ``k < L`` runs layers 1..k and ``heads[k-1]`` (student ``S_k``); with ``exit_mode="skip"`` it runs layers
1..k, then layer L, then ``T`` (the path GEEP's shared exit loss trains). With ``shared_head=True`` one head serves
every depth.

Why mean pooling by default: all-MiniLM-L6-v2 was trained with mean pooling, not with a ``[CLS]`` objective, so its
``[CLS]`` state in the early layers carries little of the input, and student heads on it learn far less than the
same heads on mean-pooled states. (That comparison was made with an uncommitted script; no figure is quoted.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from geep_deploy.config import BertShape
from geep_deploy.errors import CheckpointError, ConfigError
from geep_deploy.names import EXIT_MODES, STUDENT, exits_through_teacher

POOLINGS = ("mean", "cls")


class _Embeddings(nn.Module):
    def __init__(self, s: BertShape) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(s.vocab_size, s.hidden_size, padding_idx=s.pad_token_id)
        self.position_embeddings = nn.Embedding(s.max_position_embeddings, s.hidden_size)
        self.token_type_embeddings = nn.Embedding(s.type_vocab_size, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)
        self.dropout = nn.Dropout(s.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class _SelfAttention(nn.Module):
    def __init__(self, s: BertShape) -> None:
        super().__init__()
        self.heads, self.head_dim = s.num_attention_heads, s.head_dim
        self.query = nn.Linear(s.hidden_size, s.hidden_size)
        self.key = nn.Linear(s.hidden_size, s.hidden_size)
        self.value = nn.Linear(s.hidden_size, s.hidden_size)
        self.dropout = nn.Dropout(s.attention_probs_dropout_prob)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim)) + mask_bias
        probs = self.dropout(torch.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).transpose(1, 2)
        return ctx.reshape(x.shape)


class _DenseNorm(nn.Module):
    """``LayerNorm(dropout(dense(x)) + residual)``: BERT's attention output and layer output blocks."""

    def __init__(self, d_in: int, s: BertShape) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)
        self.dropout = nn.Dropout(s.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    def __init__(self, s: BertShape) -> None:
        super().__init__()
        self.self = _SelfAttention(s)
        self.output = _DenseNorm(s.hidden_size, s)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask_bias), x)


class _Intermediate(nn.Module):
    def __init__(self, s: BertShape) -> None:
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.intermediate_size)
        self.act = s.hidden_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dense(x)
        if self.act == "relu":
            return F.relu(x)
        return F.gelu(x, approximate="tanh" if self.act == "gelu_new" else "none")


class BertLayer(nn.Module):
    """One Transformer layer with Hugging Face's parameter names."""

    def __init__(self, s: BertShape) -> None:
        super().__init__()
        self.attention = _Attention(s)
        self.intermediate = _Intermediate(s)
        self.output = _DenseNorm(s.intermediate_size, s)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        a = self.attention(x, mask_bias)
        return self.output(self.intermediate(a), a)


class _Encoder(nn.Module):
    def __init__(self, s: BertShape) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(s) for _ in range(s.num_hidden_layers))


class ExitHead(nn.Module):
    """Classifier on a pooled state: dense, tanh, dropout, linear (BERT's pooler plus a classifier)."""

    def __init__(self, hidden: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.tanh(self.dense(pooled))))


@dataclass
class AllDepths:
    """Outputs of one pass through every layer: ``hidden[k-1]`` is h_k (B, S, H), ``logits[k-1]`` is depth k's."""

    hidden: list[torch.Tensor]
    logits: list[torch.Tensor]
    mask_bias: torch.Tensor
    attention_mask: torch.Tensor


def mask_to_bias(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, S) 0/1 mask to an additive (B, 1, 1, S) bias; -10000 is finite in fp16 and bf16 too."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * -10000.0


class ExitBert(nn.Module):
    """BERT encoder with one exit head per depth (or one shared head)."""

    def __init__(self, shape: BertShape, num_labels: int, shared_head: bool = False, pooling: str = "mean") -> None:
        super().__init__()
        if num_labels < 2:
            raise ConfigError(f"model | num_labels must be >= 2, got {num_labels}.")
        if pooling not in POOLINGS:
            raise ConfigError(f"model | pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.shape, self.num_labels, self.shared_head, self.pooling = shape, num_labels, shared_head, pooling
        self.embeddings = _Embeddings(shape)
        self.encoder = _Encoder(shape)
        n_heads = 1 if shared_head else shape.num_hidden_layers
        self.heads = nn.ModuleList(
            ExitHead(shape.hidden_size, num_labels, shape.hidden_dropout_prob) for _ in range(n_heads)
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @property
    def num_layers(self) -> int:
        return self.shape.num_hidden_layers

    def head(self, depth: int) -> ExitHead:
        """The classifier of ``depth`` (1-based); the teacher is ``head(L)``."""
        self._check_depth(depth)
        return self.heads[0 if self.shared_head else depth - 1]

    def pool(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, S, H) states to (B, H): masked mean over real tokens, or the ``[CLS]`` state."""
        if self.pooling == "cls":
            return h[:, 0]
        m = attention_mask.to(h.dtype).unsqueeze(-1)
        return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)

    def classify(self, depth: int, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits of ``depth``'s classifier on hidden states ``h`` (pooling, then the head)."""
        return self.head(depth)(self.pool(h, attention_mask))

    def _check_depth(self, depth: int) -> None:
        if not isinstance(depth, int) or not 1 <= depth <= self.num_layers:
            raise ConfigError(f"model | depth must be an int in 1..{self.num_layers}, got {depth!r}.")

    def run_layers(self, h: torch.Tensor, bias: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Apply layers ``start+1 .. stop`` (1-based, inclusive) to hidden states ``h``."""
        for layer in self.encoder.layer[start:stop]:
            h = layer(h, bias)
        return h

    def _prepare(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        h = self.embeddings(input_ids, token_type_ids)
        return h, mask_to_bias(attention_mask, h.dtype)

    def teacher_from(self, h: torch.Tensor, bias: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The shared exit path: last layer applied to ``h`` (any depth's states), then the teacher."""
        L = self.num_layers
        return self.classify(L, self.run_layers(h, bias, L - 1, L), attention_mask)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        depth: int | None = None,
        exit_mode: str = STUDENT,
    ) -> torch.Tensor:
        """Logits at ``depth`` (defaults to L), computing only the layers that depth needs."""
        depth = self.num_layers if depth is None else depth
        self._check_depth(depth)
        if exit_mode not in EXIT_MODES:
            raise ConfigError(f"model | exit_mode must be one of {EXIT_MODES}, got {exit_mode!r}.")
        h, bias = self._prepare(input_ids, attention_mask, token_type_ids)
        h = self.run_layers(h, bias, 0, depth)
        if exits_through_teacher(exit_mode, depth, self.num_layers):
            return self.teacher_from(h, bias, attention_mask)
        return self.classify(depth, h, attention_mask)

    def forward_all(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> AllDepths:
        """One pass through all layers, returning every depth's hidden states and student/teacher logits."""
        h, bias = self._prepare(input_ids, attention_mask, token_type_ids)
        hidden, logits = [], []
        for k, layer in enumerate(self.encoder.layer, start=1):
            h = layer(h, bias)
            hidden.append(h)
            logits.append(self.classify(k, h, attention_mask))
        return AllDepths(hidden=hidden, logits=logits, mask_bias=bias, attention_mask=attention_mask)

    def load_backbone(self, weights: Path | dict[str, torch.Tensor]) -> None:
        """Load encoder weights from a Hugging Face ``model.safetensors`` (heads keep their initialisation)."""
        if not isinstance(weights, dict):
            from safetensors.torch import load_file

            weights = load_file(str(weights))
        state = {k.removeprefix("bert."): v for k, v in weights.items()}
        own = {k for k in self.state_dict() if not k.startswith("heads.")}
        missing = sorted(own - state.keys())
        if missing:
            raise CheckpointError(
                f"backbone | weights lack {len(missing)} encoder tensors, e.g. {missing[:3]}. "
                "Expected a Hugging Face BERT model.safetensors matching config.json."
            )
        sub = {k: state[k] for k in own}
        for k, v in sub.items():
            expected = self.state_dict()[k].shape
            if v.shape != expected:
                raise CheckpointError(
                    f"backbone | tensor {k} has shape {tuple(v.shape)}, expected {tuple(expected)} from config.json."
                )
        self.load_state_dict(sub, strict=False)


class DepthModel(nn.Module):
    """``ExitBert`` fixed to one depth and exit mode: the module exported as that depth's engine."""

    def __init__(self, model: ExitBert, depth: int, exit_mode: str = STUDENT) -> None:
        super().__init__()
        model._check_depth(depth)
        self.model, self.depth, self.exit_mode = model, depth, exit_mode

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        return self.model(input_ids, attention_mask, token_type_ids, depth=self.depth, exit_mode=self.exit_mode)
