"""The graph kinds an ``ExitBert`` is cut into, as torch modules with named inputs and outputs.

``depth`` k runs layers 1..k and exit head k (what GEEP's dispatch runs); ``embed`` and ``layer{k}`` are the
segments the layer-by-layer baselines chain; ``prefix`` (embeddings + layer 1 -> layer-1 states and head 1's
logits) and ``cont{d}`` (layer-1 states -> layers 2..d and exit d) are the two halves of the probe dispatch, so
that ``cont{d}(prefix(x).hidden)`` is ``depth{d}(x)``. The ONNX exporter traces these modules, the torch engine
runs them, and the manifest records ``io_spec``: one definition of each kind for every backend.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from geep_deploy.errors import ConfigError
from geep_deploy.model import DepthModel, ExitBert, mask_to_bias
from geep_deploy.names import (
    CONT,
    DEPTH,
    EMBED,
    EXIT_MODES,
    GRAPH_KINDS,
    LAYER,
    PREFIX,
    STUDENT,
    exits_through_teacher,
    first_continuation,
)

BS = ["batch", "seq"]


def io_spec(kind: str, hidden: int, num_labels: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Input and output names of a graph kind, with dtype and symbolic shape (the manifest records these)."""

    def t(dtype: str, shape: list[Any]) -> dict[str, Any]:
        return {"dtype": dtype, "shape": shape}

    ids = t("int64", BS)
    if kind == DEPTH:
        return (
            {"input_ids": ids, "attention_mask": ids, "token_type_ids": ids},
            {"logits": t("float32", ["batch", num_labels])},
        )
    if kind == EMBED:
        return {"input_ids": ids, "token_type_ids": ids}, {"hidden": t("float32", [*BS, hidden])}
    states, logits = t("float32", [*BS, hidden]), t("float32", ["batch", num_labels])
    if kind == LAYER:
        return {"hidden": states, "attention_mask": ids}, {"hidden_out": states, "logits": logits}
    if kind == PREFIX:
        return {"input_ids": ids, "attention_mask": ids, "token_type_ids": ids}, {"hidden": states, "logits": logits}
    if kind == CONT:
        return {"hidden": states, "attention_mask": ids}, {"logits": logits}
    raise ConfigError(f"graph | unknown graph kind {kind!r}. Expected one of {GRAPH_KINDS}.")


class EmbedModule(nn.Module):
    """``embed`` segment: token and segment ids to the hidden states entering layer 1."""

    def __init__(self, model: ExitBert) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embeddings(input_ids, token_type_ids)


class LayerModule(nn.Module):
    """``layer{k}`` segment: layer k on the hidden states, plus the logits of layer k's own (student) head."""

    def __init__(self, model: ExitBert, k: int) -> None:
        super().__init__()
        model._check_depth(k)
        self.model, self.k = model, k

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bias = mask_to_bias(attention_mask, hidden.dtype)
        h = self.model.run_layers(hidden, bias, self.k - 1, self.k)
        return h, self.model.classify(self.k, h, attention_mask)


class PrefixModule(nn.Module):
    """``prefix``: embeddings and layer 1 -> the layer-1 states (kept for the continuation) and head 1's logits.

    The logits are always the student head's: they are what the probe reads, whatever the export's exit mode.
    """

    def __init__(self, model: ExitBert) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.model.embeddings(input_ids, token_type_ids)
        h = self.model.run_layers(h, mask_to_bias(attention_mask, h.dtype), 0, 1)
        return h, self.model.classify(1, h, attention_mask)


class ContinuationModule(nn.Module):
    """``cont{d}``: layers 2..d on cached layer-1 states, then exit d as ``depth{d}`` takes it (the student head,
    or with ``exit_mode="skip"`` layer L and the teacher), so it equals ``depth{d}`` on the same rows.

    With the student exit ``d >= 2`` (depth 1 answers from the prefix graph's head); with ``"skip"`` also
    ``d = 1``: layer L and the teacher straight on the layer-1 states.
    """

    def __init__(self, model: ExitBert, depth: int, exit_mode: str = STUDENT) -> None:
        super().__init__()
        model._check_depth(depth)
        if exit_mode not in EXIT_MODES:
            raise ConfigError(f"graph | exit_mode must be one of {EXIT_MODES}, got {exit_mode!r}.")
        first = first_continuation(exit_mode)
        if depth < first:
            raise ConfigError(f"graph | a continuation starts after layer 1, so with the {exit_mode} exit its depth "
                              f"must be {first}..{model.num_layers}, got {depth}. Depth 1 answers from the prefix "
                              "graph's logits.")
        self.model, self.depth, self.exit_mode = model, depth, exit_mode

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        bias = mask_to_bias(attention_mask, hidden.dtype)
        h = self.model.run_layers(hidden, bias, 1, self.depth)
        if exits_through_teacher(self.exit_mode, self.depth, self.model.num_layers):
            return self.model.teacher_from(h, bias, attention_mask)
        return self.model.classify(self.depth, h, attention_mask)


def graph_module(model: ExitBert, kind: str, depth: int | None = None, exit_mode: str = STUDENT) -> nn.Module:
    """The module of one graph kind; its ``forward`` takes ``io_spec``'s inputs in order."""
    if kind == DEPTH:
        return DepthModel(model, model.num_layers if depth is None else int(depth), exit_mode)
    if kind == EMBED:
        return EmbedModule(model)
    if kind == LAYER:
        return LayerModule(model, int(depth))
    if kind == PREFIX:
        return PrefixModule(model)
    if kind == CONT:
        return ContinuationModule(model, int(depth), exit_mode)
    raise ConfigError(f"graph | unknown graph kind {kind!r}. Expected one of {GRAPH_KINDS}.")


def run_graph_module(module: nn.Module, kind: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Call a graph module on named tensors and name its outputs as ``io_spec`` does."""
    m = getattr(module, "model", module)
    inputs, outputs = io_spec(kind, m.shape.hidden_size, m.num_labels)
    out = module(*(tensors[n] for n in inputs))
    return dict(zip(outputs, out if isinstance(out, tuple) else (out,)))
