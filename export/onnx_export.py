"""Per-depth and per-layer ("segment") ONNX graphs of an ``ExitBert``, as in-memory ``ModelProto`` stages.

Depth graphs (``DepthModel``) are what GEEP's dispatch runs; segment graphs (``embed``, ``layer{k}``) let the
runtime run the FastBERT/PABEE baselines layer by layer with a shrinking batch; ``prefix`` and ``cont{d}`` are the
probe dispatch's two halves. All use standard ONNX ops only.

The default exporter is the TorchScript one (much faster than dynamo on a small CPU box, though no committed bench
measures by how much, and a stable op set); ``exporter="dynamo"`` selects ``torch.export``. Either way initializer names are meaningless
across graphs (dynamo's ``val_N``, TorchScript's ``onnx::MatMul_N``), which is why ``weights.py`` shares by content.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import onnx
import torch
from torch import nn

from export.spec import DEFAULT_OPSET, EXPORTERS, BaseLoader, invoke_if_callable
from geep_deploy.errors import ConfigError, ExportError
from geep_deploy.graphs import graph_module, io_spec
from geep_deploy.model import ExitBert
from geep_deploy.names import DEPTH, DEPTHLESS_KINDS, STUDENT


def graph_name(kind: str, depth: int | None) -> str:
    """File stem of a graph: ``depth3``, ``embed``, ``layer2``, ``prefix``, ``cont3``."""
    return kind if kind in DEPTHLESS_KINDS else f"{kind}{depth}"


def _module_and_inputs(model: ExitBert, kind: str, depth: int | None, exit_mode: str) -> tuple[nn.Module, tuple]:
    """The module of a graph kind and example inputs in its input order, for tracing."""
    g = torch.Generator().manual_seed(0)
    b, s = 2, 8
    mask = torch.ones(b, s, dtype=torch.int64)
    mask[1, 5:] = 0
    example = {"input_ids": torch.randint(1000, 2000, (b, s), generator=g), "attention_mask": mask,
               "token_type_ids": torch.zeros(b, s, dtype=torch.int64),
               "hidden": torch.randn(b, s, model.shape.hidden_size, generator=g)}
    inputs, _ = io_spec(kind, model.shape.hidden_size, model.num_labels)
    return graph_module(model, kind, depth, exit_mode).eval(), tuple(example[n] for n in inputs)


def _set_symbolic_dims(proto: onnx.ModelProto, inputs: dict, outputs: dict) -> None:
    """Give every graph input/output the symbolic names of ``io_spec`` (exporters invent their own, e.g. ``s0``)."""
    for values, spec in ((proto.graph.input, inputs), (proto.graph.output, outputs)):
        for v in values:
            shape = spec[v.name]["shape"]
            dims = v.type.tensor_type.shape.dim
            for d, want in zip(dims, shape):
                if isinstance(want, str):
                    d.ClearField("dim_value")
                    d.dim_param = want
                else:
                    d.dim_value = int(want)


def export_graph(
    model: ExitBert, kind: str, depth: int | None, *, exit_mode: str = STUDENT, opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
) -> onnx.ModelProto:
    """Trace one graph of ``model`` to an in-memory ``ModelProto`` (weights embedded; ``weights.py`` moves them).

    Raises:
        ExportError: if the exporter fails, with its message.
    """
    if exporter not in EXPORTERS:
        raise ConfigError(f"export | exporter {exporter!r} is unknown. Expected one of {EXPORTERS}.")
    module, args = _module_and_inputs(model, kind, depth, exit_mode)
    inputs, outputs = io_spec(kind, model.shape.hidden_size, model.num_labels)
    in_names, out_names = list(inputs), list(outputs)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                buf = io.BytesIO()
                axes = {n: {i: a for i, a in enumerate(spec["shape"]) if isinstance(a, str)}
                        for n, spec in {**inputs, **outputs}.items()}
                torch.onnx.export(
                    module, args, buf, input_names=in_names, output_names=out_names, dynamic_axes=axes,
                    opset_version=opset, do_constant_folding=True, dynamo=False,
                )
                proto = onnx.load_from_string(buf.getvalue())
            else:
                batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=1, max=4096)
                dyn = {n: {i: {"batch": batch, "seq": seq}[a] for i, a in enumerate(inputs[n]["shape"])
                           if isinstance(a, str)} for n in in_names}
                prog = torch.onnx.export(
                    module, args, None, input_names=in_names, output_names=out_names, dynamic_shapes=dyn,
                    opset_version=max(opset, 18), dynamo=True, verbose=False, optimize=True,
                )
                proto = prog.model_proto
    except Exception as e:  # any exporter failure becomes one actionable error
        raise ExportError(
            f"onnx | exporting {graph_name(kind, depth)} with the {exporter} exporter failed: "
            f"{type(e).__name__}: {str(e)[:400]}. Try --exporter {'dynamo' if exporter == 'torchscript' else 'torchscript'}."
        ) from e
    _set_symbolic_dims(proto, inputs, outputs)
    proto.producer_name = "geep-deploy"
    del proto.metadata_props[:]
    proto.graph.name = graph_name(kind, depth)
    return proto


class OnnxFromCheckpoint(BaseLoader):
    """Stage: a checkpoint (or ``ExitBert``) to the in-memory ONNX graph of one depth or segment.

    Example:
        >>> proto = OnnxFromCheckpoint(ckpt, depth=3)()  # doctest: +SKIP
    """

    def __init__(self, ckpt: Any, depth: int | None = None, *, kind: str = DEPTH, exit_mode: str | None = None,
                 opset: int = DEFAULT_OPSET, exporter: str = "torchscript") -> None:
        self.ckpt, self.depth, self.kind = ckpt, depth, kind
        self.exit_mode, self.opset, self.exporter = exit_mode, opset, exporter

    def call_impl(self) -> onnx.ModelProto:
        ckpt, _ = invoke_if_callable(self.ckpt)
        model = ckpt if isinstance(ckpt, ExitBert) else ckpt.model
        mode = self.exit_mode or getattr(ckpt, "exit_mode", "student")
        if self.kind not in DEPTHLESS_KINDS and self.depth is None:
            raise ConfigError(f"export | a {self.kind} graph needs depth=1..{model.num_layers}.")
        return export_graph(model.eval(), self.kind, self.depth, exit_mode=mode, opset=self.opset,
                            exporter=self.exporter)
