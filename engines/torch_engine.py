"""torch engine: one `ExitBert` holds the weights once and every depth (and segment) runs through it.

CPU or CUDA; fp32, tf32, fp16 and bf16 (weights cast once). TF32 is scoped to each call of a tf32 engine
(`engines.torch_cuda.fp32_precision_scope`), never left on for the process. On CUDA with ``cuda_graphs=True``
each depth engine captures one CUDA graph per (batch, length) bucket of a bounded set (`GraphBuckets`), all in
one memory pool per engine, at load (``capture="load"``, the default: nothing is captured on the request path)
or on first use (``capture="lazy"``, under a process-wide capture lock); inputs are padded up to the bucket
(masked positions and all-masked rows do not change the real rows' logits), and batches larger than every
bucket run eagerly. The probe dispatch's ``prefix`` and ``cont{d}`` engines capture and replay graphs the same way
(a ``cont`` graph's static input is the (batch, length, hidden) state buffer).

Device residency: an engine with ``resident=True`` (the default on CUDA) also offers ``infer_states``, which
takes and returns torch tensors on the engine's device, so the probe dispatch keeps layer-1 states on the GPU
between the prefix, the continuation groups and escalation (no host round trip of hidden states).

The CUDA path is written against torch's documented API (2.11) but has not run on a GPU in this project yet;
``make gpu-check`` asserts its behaviour on one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import BaseEngine, EngineOptions, TensorMeta
from engines.torch_cuda import (
    CAPTURE_ERROR_MODE,
    CAPTURE_LOCK,
    GraphBuckets,
    fill_static,
    fp32_precision_scope,
    static_buffers,
)
from geep_deploy.errors import BackendUnavailable, ConfigError
from geep_deploy.graphs import graph_module, io_spec, run_graph_module
from geep_deploy.names import CONT, DEPTH, DEPTHLESS_KINDS, PREFIX, STUDENT, TORCH
from geep_deploy.names import GRAPH_KINDS as KINDS
from geep_deploy.optional import require

GRAPHED_KINDS = (DEPTH, PREFIX, CONT)  # the kinds that capture CUDA graphs (segments run eagerly)


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
    return model.to(device=device, dtype=torch_dtype(precision)).eval()


@dataclass(frozen=True)
class TorchOptions(EngineOptions):
    """`EngineOptions` plus the torch runner's own settings (CUDA graphs, device residency), so that
    `TorchEngine` takes one options value instead of a dozen keywords; `open_engine` builds it from them.

    Args:
        cuda_graphs: capture CUDA graphs per shape bucket (depth, prefix and cont engines on CUDA only). Defaults to
            True on CUDA.
        max_len: the longest sequence a CUDA-graph length bucket may pad to. Defaults to the model's positions.
        graph_buckets: the bucket set. Defaults to ``GraphBuckets(max_batch=max_batch, max_len=max_len)``.
        capture: ``"load"`` (every bucket at load) or ``"lazy"`` (a bucket on its first use). Defaults to "load".
        max_batch: the largest graph batch bucket (the export's ``--max-batch``) when ``graph_buckets`` is not
            given. Defaults to 128.
        resident: offer ``infer_states`` (torch tensors in and out, kept on the device). Defaults to True on CUDA.

    Raises:
        ConfigError: an unknown ``capture``.
    """

    cuda_graphs: bool | None = None
    max_len: int | None = None
    graph_buckets: GraphBuckets | None = None
    capture: str = "load"
    max_batch: int = 128
    resident: bool | None = None

    def __post_init__(self) -> None:
        if self.capture not in ("load", "lazy"):
            raise ConfigError(f"torch | capture must be 'load' or 'lazy', got {self.capture!r}.")


class TorchEngine(BaseEngine):
    """One depth (or the ``embed`` / ``layer{k}`` segment) of a shared `ExitBert`.

    Args:
        model: the shared model; it is moved to the options' device and precision on load, in place.
        options: device, precision, check_inputs, name and the CUDA-graph settings (`TorchOptions`; a plain
            `EngineOptions` takes the CUDA-graph defaults). Defaults to CPU, fp32.
        kind: ``"depth"`` (input_ids, attention_mask, token_type_ids -> logits), ``"embed"`` (input_ids,
            token_type_ids -> hidden), ``"layer"`` (hidden, attention_mask -> hidden_out, logits), ``"prefix"``
            (input_ids, attention_mask, token_type_ids -> hidden, logits) or ``"cont"`` (hidden, attention_mask ->
            logits); see ``geep_deploy.graphs``.
        depth: the depth (``depth``, ``cont``), or the layer number for ``kind="layer"``.
        exit_mode: ``"student"`` or ``"skip"`` (see `ExitBert.forward`).
    """

    backend = TORCH
    options_type = TorchOptions

    def __init__(
        self,
        model: Any,
        options: EngineOptions | None = None,
        *,
        kind: str = DEPTH,
        depth: int | None = None,
        exit_mode: str = STUDENT,
    ) -> None:
        o = TorchOptions.coerce(options)
        if kind not in KINDS:
            raise ConfigError(f"torch | kind must be one of {KINDS}, got {kind!r}.")
        depth = model.num_layers if depth is None and kind == DEPTH else depth
        label = kind if kind in DEPTHLESS_KINDS else f"{kind} {depth}"
        device = o.device or "cpu"
        super().__init__(o.name or f"torch {label}", o.precision, device, o.check_inputs)
        if kind not in DEPTHLESS_KINDS:
            model._check_depth(depth)
        self.model, self.kind, self.depth, self.exit_mode = model, kind, depth, exit_mode
        self.cuda_graphs = (device == "cuda") if o.cuda_graphs is None else o.cuda_graphs
        self.max_len = o.max_len or model.shape.max_position_embeddings
        self.buckets = o.graph_buckets or GraphBuckets(max_batch=o.max_batch, max_len=self.max_len)
        self.device_resident = (device == "cuda") if o.resident is None else bool(o.resident)
        self.capture = o.capture
        self._graphs: dict[tuple[int, int], tuple[Any, dict[str, Any], dict[str, Any]]] = {}
        self._pool: Any = None
        self._lock = threading.Lock()
        self.eager_calls = 0  # CUDA-graph engines: calls larger than every bucket (ran without a graph)

    def _load(self) -> None:
        self._torch = import_torch()
        prepare_model(self.model, self.device, self.precision)
        self._module = graph_module(self.model, self.kind, self.depth, self.exit_mode)
        self._dtype = torch_dtype(self.precision)
        if self._uses_graphs and self.capture == "load":
            for key in self.buckets.all():
                self._graph(key)

    @property
    def _uses_graphs(self) -> bool:
        return self.cuda_graphs and self.device == "cuda" and self.kind in GRAPHED_KINDS

    def _to_dev(self, x: Any) -> Any:
        """A NumPy array (uploaded) or a torch tensor (used where it is, cast if needed) on the engine's device."""
        torch = self._torch
        t = x if torch.is_tensor(x) else torch.from_numpy(np.ascontiguousarray(x))
        if t.is_floating_point() and t.dtype != self._dtype:
            t = t.to(self._dtype)
        return t.to(self.device, non_blocking=True) if t.device.type != self.device else t

    def _run(self, t: dict[str, Any]) -> dict[str, Any]:
        return run_graph_module(self._module, self.kind, t)

    def _precision(self) -> Any:
        """The engine's float32 mode for the calls inside (CUDA only; CPU matmuls ignore the TF32 switch)."""
        if self.device != "cuda":
            return contextlib.nullcontext()
        return fp32_precision_scope(self._torch, self.precision)

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._forward(feed, host=True)

    def infer_states(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        """Run once on ``feed`` (NumPy arrays or torch tensors) and return torch tensors on the engine's device, in
        its dtype: nothing is copied to the host (``resident=True`` engines; the probe dispatch's device path)."""
        self._require_loaded()
        if not self.device_resident:
            raise ConfigError(f"{self.name} | infer_states needs an engine made with resident=True.")
        return self._forward(feed, host=False)

    @staticmethod
    def to_host(x: Any) -> np.ndarray:
        """A float32 NumPy copy of an ``infer_states`` output (small ones: logits)."""
        return x.float().cpu().numpy()

    def _forward(self, feed: Mapping[str, Any], host: bool) -> dict[str, Any]:
        torch = self._torch
        if self._uses_graphs:
            b, s = feed["attention_mask"].shape
            key = self.buckets.bucket_for(b, s)
            if key is not None:
                return self._replay(key, feed, host)
            self.eager_calls += 1
        with torch.inference_mode(), self._precision():
            out = self._run({k: self._to_dev(v) for k, v in feed.items()})
        return {k: self.to_host(v) for k, v in out.items()} if host else out

    # -- CUDA graphs ----------------------------------------------------------------------------------------
    def _replay(self, key: tuple[int, int], feed: Mapping[str, Any], host: bool) -> dict[str, Any]:
        b, s = feed["attention_mask"].shape
        with self._lock:  # static buffers and the pool are shared by every call of this engine
            graph, static_in, static_out = self._graph(key)
            fill_static(self._torch, static_in, feed)
            graph.replay()
            # cropped to the call's rows (and length), then copied out before the next replay overwrites them
            out = {k: v[:b, :s] if v.dim() == 3 else v[:b] for k, v in static_out.items()}
            return {k: self.to_host(v) if host else v.clone() for k, v in out.items()}

    def _graph(self, key: tuple[int, int]) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        g = self._graphs.get(key)
        if g is None:
            g = self._graphs[key] = self._capture(*key)
        return g

    def _capture(self, b: int, s: int) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """Warm up once on a side stream, then capture into the engine's one pool (process-wide lock)."""
        torch = self._torch
        with CAPTURE_LOCK, self._precision():
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            static_in = static_buffers(torch, b, s, "cuda", names=tuple(self._input_metadata()),
                                       hidden=self.model.shape.hidden_size, dtype=self._dtype)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                self._run(static_in)  # kernels, cuBLAS workspaces and allocator blocks exist before capture
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode=CAPTURE_ERROR_MODE), \
                    torch.inference_mode():
                static_out = self._run(static_in)
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
        self._pool = None
        self._torch = None
