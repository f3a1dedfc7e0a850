"""fp16/bf16 graphs with the precision carried in the graph itself (a strongly typed TensorRT 11 network gets it).

A graph pass over the fp32 export: float weights and constants become the low type, every ``Cast(to=float)`` casts
to the low type instead, and the ops whose accuracy needs fp32 (``LayerNormalization`` and ``Softmax`` by
default) run in an fp32 island: ``Cast`` up before, ``Cast`` down after, with their scale/bias kept fp32. Graph
inputs and outputs stay float32, so every precision has the same I/O contract for the runtime.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from geep_deploy.errors import ConfigError, ExportError

FP32_OPS = ("LayerNormalization", "Softmax")
LOW_TYPES = {"fp16": onnx.TensorProto.FLOAT16, "bf16": onnx.TensorProto.BFLOAT16}
F32 = onnx.TensorProto.FLOAT


def _to_low(t: onnx.TensorProto, precision: str, name: str | None = None) -> onnx.TensorProto:
    arr = numpy_helper.to_array(t).astype(np.float32)
    if precision == "fp16":
        low = arr.astype(np.float16)
    else:
        import ml_dtypes

        low = arr.astype(ml_dtypes.bfloat16)
    out = numpy_helper.from_array(low, name or t.name)
    if out.data_type != LOW_TYPES[precision]:
        raise ExportError(f"precision | could not store {t.name} as {precision} (got data type {out.data_type}).")
    return out


def _float_values(proto: onnx.ModelProto) -> set[str]:
    """Names of every float32 tensor in the graph, from ONNX type inference."""
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    g = inferred.graph
    vals = [*g.value_info, *g.input, *g.output]
    names = {v.name for v in vals if v.type.tensor_type.elem_type == F32}
    names |= {t.name for t in g.initializer if t.data_type == F32}
    return names


def convert_precision(proto: onnx.ModelProto, precision: str, fp32_ops: Iterable[str] = FP32_OPS) -> onnx.ModelProto:
    """Return a copy of the fp32 graph ``proto`` (weights loaded) computing in ``precision``.

    Args:
        proto: an fp32 graph with its initializers in memory.
        precision: ``fp16`` or ``bf16``.
        fp32_ops: op types kept in fp32. Defaults to LayerNormalization and Softmax.

    Raises:
        ConfigError: for another precision. ExportError: if the result fails the ONNX checker.
    """
    if precision not in LOW_TYPES:
        raise ConfigError(f"precision | {precision!r} is not a cast precision. Expected one of {list(LOW_TYPES)}.")
    low = LOW_TYPES[precision]
    keep = set(fp32_ops)
    src = onnx.ModelProto()
    src.CopyFrom(proto)
    floats = _float_values(src)
    g = src.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    new_inits: list[onnx.TensorProto] = []
    renamed_low: dict[str, str] = {}  # fp32 initializer -> its low copy, for low consumers of a kept initializer
    for name, t in inits.items():
        if t.data_type != F32:
            new_inits.append(t)
            continue
        users = consumers.get(name, [])
        kept_only = users and all(u.op_type in keep for u in users)
        if kept_only:
            new_inits.append(t)
        elif any(u.op_type in keep for u in users):
            new_inits.append(t)
            renamed_low[name] = f"{name}__{precision}"
            new_inits.append(_to_low(t, precision, renamed_low[name]))
        else:
            new_inits.append(_to_low(t, precision))
    fp32_inits = {t.name for t in new_inits if t.data_type == F32}

    nodes: list[onnx.NodeProto] = []
    counter = [0]

    def cast(src_name: str, to: int, dst: str | None = None) -> str:
        counter[0] += 1
        out = dst or f"{src_name}__cast{counter[0]}"
        nodes.append(helper.make_node("Cast", [src_name], [out], to=to, name=f"geep_cast_{counter[0]}"))
        return out

    graph_in_low: dict[str, str] = {}
    for v in g.input:
        if v.name in floats and v.name not in inits:
            graph_in_low[v.name] = cast(v.name, low)
    out_names = {v.name for v in g.output if v.name in floats}

    def out_name(name: str) -> str:
        return f"{name}__{precision}" if name in out_names else name

    for n in g.node:
        n = _copy(n)
        is_float = [bool(i) and i in floats for i in n.input]
        for idx, i in enumerate(n.input):
            if i in graph_in_low:
                n.input[idx] = graph_in_low[i]
            elif i in out_names:
                n.input[idx] = out_name(i)
            elif i in renamed_low and n.op_type not in keep:
                n.input[idx] = renamed_low[i]
        if n.op_type in keep:
            for idx, i in enumerate(n.input):
                if is_float[idx] and i not in fp32_inits:
                    n.input[idx] = cast(i, F32)
            outs = list(n.output)
            for idx, o in enumerate(outs):
                n.output[idx] = f"{o}__fp32"
            nodes.append(n)
            for o in outs:
                if o:
                    cast(f"{o}__fp32", low, out_name(o))
            continue
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == F32:
                a.i = low
            elif a.type == onnx.AttributeProto.TENSOR and a.t.data_type == F32:
                a.t.CopyFrom(_to_low(a.t, precision, a.t.name))
        for idx, o in enumerate(n.output):
            n.output[idx] = out_name(o)
        nodes.append(n)
    for name in out_names:
        cast(out_name(name), F32, name)

    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    del g.value_info[:]
    g.name = f"{g.name}_{precision}"
    try:
        checked = onnx.shape_inference.infer_shapes(src, strict_mode=True)
        onnx.checker.check_model(checked, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"precision | the {precision} graph of {proto.graph.name} is invalid: {str(e)[:400]}") from e
    del checked
    return src


def _copy(n: onnx.NodeProto) -> onnx.NodeProto:
    c = onnx.NodeProto()
    c.CopyFrom(n)
    return c
