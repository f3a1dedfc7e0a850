"""One external-data file shared by every graph of a precision, with tensors keyed by content.

Exporters name initializers arbitrarily and inconsistently across graphs (dynamo's ``val_N`` is a different
tensor in each depth graph; see GEEP.md), so a tensor's identity here is the sha256 of its dtype, dims and bytes.
Each distinct tensor is written once, at a page-aligned offset, so ONNX Runtime can memory-map it and the L depth
graphs plus the segment graphs cost about one model on disk (and, mapped, in memory).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import onnx
from onnx import numpy_helper

from geep_deploy.errors import ExportError

PAGE = 4096
MIN_EXTERNAL_BYTES = 1024  # smaller tensors (biases of tiny models, scalars) stay inside the graph


def tensor_bytes(t: onnx.TensorProto) -> bytes:
    """The little-endian bytes of an in-memory initializer, whatever field holds them."""
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raise ExportError(f"weights | initializer {t.name} is already external; load the model with its data.")
    if t.HasField("raw_data"):
        return t.raw_data
    return numpy_helper.to_array(t).tobytes()


def content_key(data_type: int, dims: Sequence[int], data: bytes) -> str:
    """Identity of a tensor: ONNX dtype, dims and bytes (never its exported name)."""
    h = hashlib.sha256()
    h.update(f"{data_type}:{[int(d) for d in dims]}:".encode())
    h.update(data)
    return h.hexdigest()


def _rename_inputs(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_inputs(attr.g, mapping)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _rename_inputs(g, mapping)
    for v in list(graph.input) + list(graph.value_info):
        if v.name in mapping:
            v.name = mapping[v.name]


class SharedWeightsFile:
    """Append-only writer of one weights file; ``add(proto)`` moves a graph's large initializers into it.

    Example:
        >>> with SharedWeightsFile(out / "weights.bin") as w:  # doctest: +SKIP
        ...     for name, proto in graphs.items():
        ...         w.add(proto)
        ...         onnx.save(proto, out / f"{name}.onnx")
    """

    def __init__(self, path: str | Path, *, min_bytes: int = MIN_EXTERNAL_BYTES, align: int = PAGE) -> None:
        self.path = Path(path)
        self.min_bytes, self.align = min_bytes, align
        self._index: dict[str, tuple[int, int]] = {}
        self._f: BinaryIO | None = open(self.path, "wb")  # closed in close()

    def __enter__(self) -> SharedWeightsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None

    @property
    def num_tensors(self) -> int:
        return len(self._index)

    def _write(self, data: bytes) -> int:
        if self._f is None:
            raise ExportError(f"weights | {self.path} is already closed.")
        pos = self._f.tell()
        pad = (-pos) % self.align
        if pad:
            self._f.write(b"\0" * pad)
            pos += pad
        self._f.write(data)
        return pos

    def add(self, proto: onnx.ModelProto) -> onnx.ModelProto:
        """Rename ``proto``'s large initializers to ``w_<hash>`` and point them into this file (in place)."""
        graph = proto.graph
        mapping: dict[str, str] = {}
        keep: list[onnx.TensorProto] = []
        seen: set[str] = set()
        for t in graph.initializer:
            data = tensor_bytes(t)
            if len(data) < self.min_bytes:
                keep.append(t)
                continue
            key = content_key(t.data_type, t.dims, data)
            new_name = f"w_{key[:24]}"
            mapping[t.name] = new_name
            if new_name in seen:  # same content twice in one graph: keep one initializer
                continue
            seen.add(new_name)
            if key not in self._index:
                self._index[key] = (self._write(data), len(data))
            offset, length = self._index[key]
            t.name = new_name
            t.ClearField("raw_data")
            for f in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
                t.ClearField(f)
            del t.external_data[:]
            t.data_location = onnx.TensorProto.EXTERNAL
            for k, v in (("location", self.path.name), ("offset", str(offset)), ("length", str(length))):
                entry = t.external_data.add()
                entry.key, entry.value = k, v
            keep.append(t)
        del graph.initializer[:]
        graph.initializer.extend(keep)
        _rename_inputs(graph, mapping)
        if self._f is not None:
            self._f.flush()  # the graph may be loaded (validated) before this file is closed
        return proto


    def add_tensors(self, tensors: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        """Place named arrays (the torch state dict) in this file, reusing the bytes the graphs already hold.

        A matrix the graphs hold transposed (exporters fold ``Linear`` weights into ``MatMul`` by ``W.T``) is
        found in that layout and recorded as ``transposed``, so torch and ONNX Runtime read one copy.

        Returns:
            name -> ``{"offset", "dtype", "shape", "transposed"}`` (what ``runtime.artifacts.read_tensor`` reads).
        """
        index: dict[str, dict[str, Any]] = {}
        for name, value in tensors.items():
            arr = np.ascontiguousarray(value)
            dt = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
            layouts = [(arr, False)] + ([(np.ascontiguousarray(arr.T), True)] if arr.ndim == 2 else [])
            where = None
            for cand, transposed in layouts:
                key = content_key(dt, cand.shape, cand.tobytes())
                if key in self._index:
                    where = (self._index[key][0], transposed)
                    break
            if where is None:
                data = arr.tobytes()
                offset = self._write(data)
                self._index[content_key(dt, arr.shape, data)] = (offset, len(data))
                where = (offset, False)
            index[name] = {"offset": where[0], "dtype": arr.dtype.name, "shape": list(arr.shape),
                           "transposed": where[1]}
        if self._f is not None:
            self._f.flush()
        return index


def external_locations(path: str | Path) -> set[str]:
    """The external-data files a saved graph refers to (read without loading the data)."""
    proto = onnx.load(str(path), load_external_data=False)
    out: set[str] = set()
    for t in proto.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            out.update(e.value for e in t.external_data if e.key == "location")
    return out


def save_graph(proto: onnx.ModelProto, path: str | Path, check: bool = True) -> Path:
    """Write a graph whose large weights already point at a shared file, then run ``onnx.checker`` on it.

    Raises:
        ExportError: if the checker rejects the graph.
    """
    p = Path(path)
    onnx.save_model(proto, str(p), save_as_external_data=False)
    if check:
        try:
            onnx.checker.check_model(str(p))
        except onnx.checker.ValidationError as e:
            raise ExportError(f"onnx | {p.name} fails onnx.checker: {str(e)[:500]}") from None
    return p
