"""torch engine: one `ExitBert` holds the weights once and every depth (and segment) runs through it.

CPU or CUDA; fp32, tf32 (CUDA matmuls in TF32: a process-wide torch switch, set on load), fp16 and bf16 (weights
cast once). On CUDA with ``cuda_graphs=True`` each depth engine captures one CUDA graph per (batch bucket,
length bucket) on first use and replays it, so a small per-depth group does not pay kernel-launch overhead;
inputs are padded up to the bucket (masked positions and all-masked rows do not change the real rows' logits).
The CUDA path is written against torch's documented API but has not run on a GPU in this project yet.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from engines.base import BaseEngine, TensorMeta
from geep_deploy.errors import BackendUnavailable, ConfigError
from geep_deploy.graphs import graph_module, io_spec, run_graph_module
from geep_deploy.names import GRAPH_KINDS as KINDS
from geep_deploy.optional import require


def import_torch() -> Any:
    return require("torch", "torch")


def torch_dtype(precision: str) -> Any:
    torch = import_torch()
    table = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in table:
        raise ConfigError(f"torch | precision {precision!r} is not supported by the torch backend. "
                          f"Expected one of {sorted(table)}; int8 needs onnxruntime or tensorrt.")
    return table[precision]


def prepare_model(model: Any, device: str, precision: str) -> Any:
    """Move ``model`` to ``device`` in ``precision`` (idempotent, so engines sharing a model may each call it)."""
    torch = import_torch()
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("torch | device='cuda' but torch sees no GPU (is this the CPU build of torch?). "
                                 "Install a CUDA build of torch or use device='cpu'.")
    if precision == "tf32" and device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return model.to(device=device, dtype=torch_dtype(precision)).eval()


def _bucket(n: int, step: int, cap: int) -> int:
    """Next power of two up to ``step``, then multiples of ``step``, never above ``cap`` (unless ``n`` is)."""
    b = 1
    while b < min(n, step):
        b *= 2
    if n > step:
        b = -(-n // step) * step
    return max(n, min(b, cap))


class TorchEngine(BaseEngine):
    """One depth (or the ``embed`` / ``layer{k}`` segment) of a shared `ExitBert`.

    Args:
        model: the shared model; it is moved to ``device``/``precision`` on load, in place.
        kind: ``"depth"`` (input_ids, attention_mask, token_type_ids -> logits), ``"embed"`` (input_ids,
            token_type_ids -> hidden) or ``"layer"`` (hidden, attention_mask -> hidden_out, logits).
        depth: the depth, or the layer number for ``kind="layer"``.
        exit_mode: ``"student"`` or ``"skip"`` (see `ExitBert.forward`).
        cuda_graphs: capture CUDA graphs per shape bucket (depth engines on CUDA only). Defaults to True on CUDA.
        max_len: the longest sequence a CUDA-graph length bucket may pad to. Defaults to the model's positions.
    """

    backend = "torch"

    def __init__(
        self,
        model: Any,
        *,
        kind: str = "depth",
        depth: int | None = None,
        exit_mode: str = "student",
        device: str = "cpu",
        precision: str = "fp32",
        cuda_graphs: bool | None = None,
        max_len: int | None = None,
        check_inputs: bool = True,
    ) -> None:
        if kind not in KINDS:
            raise ConfigError(f"torch | kind must be one of {KINDS}, got {kind!r}.")
        depth = model.num_layers if depth is None and kind == "depth" else depth
        label = kind if kind == "embed" else f"{kind} {depth}"
        super().__init__(f"torch {label}", precision, device, check_inputs)
        if kind != "embed":
            model._check_depth(depth)
        self.model, self.kind, self.depth, self.exit_mode = model, kind, depth, exit_mode
        self.cuda_graphs = (device == "cuda") if cuda_graphs is None else cuda_graphs
        self.max_len = max_len or model.shape.max_position_embeddings
        self._graphs: dict[tuple[int, int], tuple[Any, dict[str, Any], Any]] = {}
        self._lock = threading.Lock()

    def _load(self) -> None:
        self._torch = import_torch()
        prepare_model(self.model, self.device, self.precision)
        self._module = graph_module(self.model, self.kind, self.depth, self.exit_mode)
        self._dtype = torch_dtype(self.precision)

    def _to_dev(self, x: np.ndarray) -> Any:
        t = self._torch.from_numpy(np.ascontiguousarray(x))
        if t.is_floating_point():
            t = t.to(self._dtype)
        return t.to(self.device, non_blocking=True) if self.device != "cpu" else t

    def _run(self, t: dict[str, Any]) -> dict[str, Any]:
        return run_graph_module(self._module, self.kind, t)

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        if self.cuda_graphs and self.device == "cuda" and self.kind == "depth":
            out = self._replay(feed)
        else:
            with torch.inference_mode():
                out = self._run({k: self._to_dev(v) for k, v in feed.items()})
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    # -- CUDA graphs ----------------------------------------------------------------------------------------
    def _replay(self, feed: Mapping[str, np.ndarray]) -> dict[str, Any]:
        torch = self._torch
        b, s = feed["input_ids"].shape
        key = (_bucket(b, 8, 256), _bucket(s, 32, self.max_len))
        with self._lock:  # static buffers are shared by every call of this bucket
            if key not in self._graphs:
                self._graphs[key] = self._capture(*key)
            graph, static_in, static_out = self._graphs[key]
            for name, x in feed.items():
                buf = static_in[name]
                buf.zero_()
                buf[:b, :s].copy_(torch.from_numpy(np.ascontiguousarray(x)), non_blocking=True)
            graph.replay()
            return {"logits": static_out.clone()[:b]}

    def _capture(self, b: int, s: int) -> tuple[Any, dict[str, Any], Any]:
        torch = self._torch
        static_in = {n: torch.zeros((b, s), dtype=torch.int64, device="cuda")
                     for n in ("input_ids", "attention_mask", "token_type_ids")}
        static_in["attention_mask"][:, 0] = 1
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # warm up kernels and allocator outside the capture
                self._run(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            static_out = self._run(static_in)["logits"]
        return graph, static_in, static_out

    @property
    def captured_buckets(self) -> list[tuple[int, int]]:
        """(batch, length) buckets with a captured CUDA graph."""
        return sorted(self._graphs)

    def _input_metadata(self) -> dict[str, TensorMeta]:
        inputs, _ = io_spec(self.kind, self.model.shape.hidden_size, self.model.num_labels)
        return {n: TensorMeta(np.dtype(spec["dtype"]), tuple(d if isinstance(d, int) else None for d in spec["shape"]))
                for n, spec in inputs.items()}

    def _close(self) -> None:
        self._graphs.clear()
        self._torch = None
