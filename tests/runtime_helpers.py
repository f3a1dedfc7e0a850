"""Graphs for the runtime tests, built from the tiny fixture model with torch's own ONNX exporter.

Depth graphs (``depth{k}.onnx``) and segment graphs (``embed.onnx``, ``layer{k}.onnx``) use the export contract's
input/output names, and all graphs written by one call keep their weights in one shared external-data file,
content-addressed, like the real export does.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from geep_deploy.model import DepthModel, ExitBert, mask_to_bias

DEPTH_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
_DYN = {0: "batch", 1: "seq"}


class EmbedSegment(nn.Module):
    def __init__(self, model: ExitBert) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embeddings(input_ids, token_type_ids)


class LayerSegment(nn.Module):
    def __init__(self, model: ExitBert, k: int) -> None:
        super().__init__()
        self.model, self.k = model, k

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.model.run_layers(hidden, mask_to_bias(attention_mask, hidden.dtype), self.k - 1, self.k)
        return h, self.model.classify(self.k, h, attention_mask)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dyn: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dyn,
            dynamo=False, opset_version=17,
        )


def _share_weights(paths: list[Path], out_dir: Path, weights_name: str = "weights.bin") -> None:
    """Move every sizeable initializer into one file, each distinct tensor stored once (by content hash)."""
    offsets: dict[str, tuple[int, int]] = {}
    with open(out_dir / weights_name, "ab") as f:
        for p in paths:
            m = onnx.load(str(p))
            for t in m.graph.initializer:
                if len(t.raw_data) < 1024:
                    continue
                digest = hashlib.sha1(t.raw_data).hexdigest()
                if digest not in offsets:
                    pos = f.tell()
                    pad = (-pos) % 64
                    f.write(b"\0" * pad)
                    offsets[digest] = (pos + pad, len(t.raw_data))
                    f.write(t.raw_data)
                off, length = offsets[digest]
                t.ClearField("raw_data")
                t.data_location = onnx.TensorProto.EXTERNAL
                del t.external_data[:]
                for k, v in (("location", weights_name), ("offset", str(off)), ("length", str(length))):
                    e = t.external_data.add()
                    e.key, e.value = k, v
            onnx.save(m, str(p))


def export_depth_graphs(model: ExitBert, out_dir: Path, depths: list[int] | None = None,
                        exit_mode: str = "student") -> dict[int, Path]:
    """Write ``depth{k}.onnx`` for each depth (default all), sharing ``weights.bin``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    depths = depths or list(range(1, model.num_layers + 1))
    ids = torch.randint(1000, 2000, (2, 7))
    args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    dyn = {n: _DYN for n in DEPTH_INPUTS} | {"logits": {0: "batch"}}
    paths = {}
    for k in depths:
        paths[k] = out_dir / f"depth{k}.onnx"
        _export(DepthModel(model, k, exit_mode).eval(), args, paths[k], DEPTH_INPUTS, ["logits"], dyn)
    _share_weights(list(paths.values()), out_dir)
    return paths


def export_segment_graphs(model: ExitBert, out_dir: Path) -> dict[str, Path]:
    """Write ``embed.onnx`` and ``layer{k}.onnx`` for k = 1..L, sharing ``segments.bin``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = torch.randint(1000, 2000, (2, 7))
    paths = {"embed": out_dir / "embed.onnx"}
    _export(EmbedSegment(model).eval(), (ids, torch.zeros_like(ids)), paths["embed"],
            ["input_ids", "token_type_ids"], ["hidden"], {"input_ids": _DYN, "token_type_ids": _DYN, "hidden": _DYN})
    hidden = model.embeddings(ids, torch.zeros_like(ids)).detach()
    for k in range(1, model.num_layers + 1):
        paths[f"layer{k}"] = out_dir / f"layer{k}.onnx"
        _export(LayerSegment(model, k).eval(), (hidden, torch.ones_like(ids)), paths[f"layer{k}"],
                ["hidden", "attention_mask"], ["hidden_out", "logits"],
                {"hidden": _DYN, "attention_mask": _DYN, "hidden_out": _DYN, "logits": {0: "batch"}})
    _share_weights(list(paths.values()), out_dir, "segments.bin")
    return paths
