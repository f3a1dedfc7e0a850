"""TensorRT engine: one execution context per depth plan, CuPy device buffers and one CUDA stream.

Each call sets the input shapes (``set_input_shape``), binds device addresses (``set_tensor_address``) and runs
``execute_async_v3`` on the stream. Contexts of one export share a single scratch ("device memory") block: they
are created with ``ExecutionContextAllocationStrategy.USER_MANAGED`` (``create_execution_context_without_device_
memory`` on older TensorRT) and handed the shared block with ``set_device_memory``; sharing scratch means two
contexts may not run at once, so `TrtScratch` also owns the lock that serialises them.

Batches above the plan's optimisation profile are cut into chunks of the profile's largest batch (a longer
sequence than the profile allows is an `EngineRunError`). ``infer_states`` returns CuPy device arrays and takes
them as inputs (bound by device pointer), so the probe dispatch keeps states on the GPU.

Written against the TensorRT 10/11 Python API documentation; it has not run in this project (TensorRT cannot be
installed here), and its tests are marked ``trt``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BaseEngine, EngineOptions, TensorMeta
from geep_deploy.errors import ConfigError, EngineBuildError, EngineRunError
from geep_deploy.names import TENSORRT
from geep_deploy.optional import require


def import_trt() -> tuple[Any, Any]:
    """Import ``tensorrt`` and ``cupy`` (device buffers) lazily, naming the extra to install when either is missing."""
    return require("tensorrt", "tensorrt"), require("cupy", "tensorrt", "for device buffers")


class TrtScratch:
    """One scratch block, one stream and one lock shared by the contexts of several plans."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._buf: Any = None
        self.stream: Any = None
        self.size = 0

    def ensure(self, cp: Any, nbytes: int) -> tuple[int, int]:
        """Grow the block to at least ``nbytes``; returns (pointer, size). Callers re-bind after growth."""
        if self.stream is None:
            self.stream = cp.cuda.Stream(non_blocking=True)
        if nbytes > self.size:
            self.stream.synchronize()
            self._buf = cp.cuda.alloc(max(nbytes, 256))
            self.size = max(nbytes, 256)
        return int(self._buf.ptr), self.size

    def release(self) -> None:
        """Free the block and the stream (after every context using them is closed)."""
        self._buf, self.stream, self.size = None, None, 0

    close = release


class TrtEngine(BaseEngine):
    """One serialized TensorRT plan.

    Args:
        path: the ``.plan`` file built by ``geep-deploy export --format tensorrt``.
        options: precision (the plan's, recorded; TensorRT fixed it at build time), check_inputs, name
            (`EngineOptions`); the device is CUDA.
        scratch: share device scratch memory, the stream and the execution lock with other engines.
            Defaults to a private one.
    """

    backend = TENSORRT
    device_resident = True  # outputs are CuPy arrays on the GPU until copied to the host

    def __init__(self, path: str | Path, options: EngineOptions | None = None, *,
                 scratch: TrtScratch | None = None) -> None:
        o = EngineOptions.coerce(options)
        if o.device not in (None, "cuda"):
            raise ConfigError(f"tensorrt | TensorRT runs on CUDA only, got device={o.device!r}.")
        super().__init__(o.name or f"tensorrt {Path(path).name}", o.precision, "cuda", o.check_inputs)
        self.path = Path(path)
        self.scratch = scratch or TrtScratch()
        self._engine: Any = None
        self._context: Any = None
        self._bound: tuple[int, int] | None = None
        self.max_batch: int | None = None  # the profile's largest batch (set at load)

    def _load(self) -> None:
        trt, cp = import_trt()
        if not self.path.is_file():
            raise EngineBuildError(f"{self.name} | {self.path} does not exist.")
        self._trt, self._cp = trt, cp
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise EngineBuildError(
                f"{self.name} | TensorRT could not deserialize {self.path}: it was built by another TensorRT "
                "version or for another GPU. Rebuild it with `geep-deploy export` on this machine."
            )
        strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
        if strategy is not None:
            self._context = self._engine.create_execution_context(strategy.USER_MANAGED)
        else:
            self._context = self._engine.create_execution_context_without_device_memory()
        if self._context is None:
            raise EngineBuildError(f"{self.name} | could not create an execution context (out of GPU memory?).")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        self.max_batch = _profile_max_batch(self._engine, self._inputs)

    def _scratch_bytes(self) -> int:
        ctx = self._context
        if hasattr(ctx, "update_device_memory_size_for_shapes"):
            return int(ctx.update_device_memory_size_for_shapes())
        eng = self._engine
        # lazily: TensorRT 11 removed device_memory_size, and getattr's default would be evaluated first
        size = eng.device_memory_size_v2 if hasattr(eng, "device_memory_size_v2") else eng.device_memory_size
        return int(size)

    def _bind_scratch(self) -> None:
        ptr, size = self.scratch.ensure(self._cp, self._scratch_bytes())
        if self._bound != (ptr, size):
            if hasattr(self._context, "set_device_memory"):
                self._context.set_device_memory(ptr, size)
            else:
                self._context.device_memory = ptr
            self._bound = (ptr, size)

    def _infer(self, feed: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return self._chunked(feed, host=True)

    def infer_states(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        """Run on ``feed`` (NumPy or CuPy arrays) and return CuPy arrays on the GPU (nothing copied to the host)."""
        self._require_loaded()
        return self._chunked(feed, host=False)

    @staticmethod
    def to_host(x: Any) -> np.ndarray:
        import cupy as cp

        return cp.asnumpy(x).astype(np.float32, copy=False)

    def _chunked(self, feed: Mapping[str, Any], host: bool) -> dict[str, Any]:
        """One run, or one run per chunk of at most the profile's largest batch, concatenated."""
        b = int(next(iter(feed.values())).shape[0])
        step = self.max_batch or b
        if b <= step:
            return self._run(feed, host)
        parts = [self._run({k: v[i: i + step] for k, v in feed.items()}, host) for i in range(0, b, step)]
        cat = np.concatenate if host else self._cp.concatenate
        return {k: cat([p[k] for p in parts]) for k in parts[0]}

    def _run(self, feed: Mapping[str, Any], host: bool) -> dict[str, Any]:
        cp, ctx = self._cp, self._context
        with self.scratch.lock:
            self.scratch.ensure(cp, 0)
            stream = self.scratch.stream
            keep = []
            # device inputs (the probe dispatch's gathered states) were written on the caller's stream
            stream.wait_event(cp.cuda.get_current_stream().record())
            with stream:
                for name in self._inputs:
                    x = cp.asarray(feed[name], dtype=self._dtypes[name])
                    x = cp.ascontiguousarray(x)
                    keep.append(x)
                    if not ctx.set_input_shape(name, tuple(x.shape)):
                        raise EngineRunError(
                            f"{self.name} | input {name!r} shape {tuple(x.shape)} is outside the plan's "
                            "optimization profile. Rebuild with a larger max shape or use shorter inputs."
                        )
                    self._bind(name, x)
                outs = {}
                for name in self._outputs:
                    y = cp.empty(tuple(ctx.get_tensor_shape(name)), dtype=self._dtypes[name])
                    self._bind(name, y)
                    outs[name] = y
                self._bind_scratch()
                if not ctx.execute_async_v3(stream.ptr):
                    raise EngineRunError(f"{self.name} | execute_async_v3 failed; see TensorRT's log above.")
                result = {n: cp.asnumpy(y, stream=stream) for n, y in outs.items()} if host else outs
            stream.synchronize()  # device results are complete before another stream reads them
            del keep
            return result

    def _bind(self, name: str, x: Any) -> None:
        if not self._context.set_tensor_address(name, int(x.data.ptr)):
            raise EngineRunError(f"{self.name} | TensorRT refused the device address of {name!r} (misaligned or "
                                 "not a tensor of this plan); see TensorRT's log above.")

    def _input_metadata(self) -> dict[str, TensorMeta]:
        meta = {}
        for n in self._inputs:
            shape = tuple(None if d < 0 else int(d) for d in self._engine.get_tensor_shape(n))
            meta[n] = TensorMeta(self._dtypes[n], shape)
        return meta

    def _close(self) -> None:
        if self.scratch.stream is not None:
            self.scratch.stream.synchronize()
        self._context = None
        self._engine = None
        self._runtime = None
        self._bound = None


def _profile_max_batch(engine: Any, inputs: list[str]) -> int | None:
    """The largest batch optimisation profile 0 accepts (the first input's max shape), or None if unknown."""
    if not inputs or not hasattr(engine, "get_tensor_profile_shape"):
        return None
    try:
        return int(engine.get_tensor_profile_shape(inputs[0], 0)[2][0])
    except (IndexError, TypeError, ValueError, RuntimeError):
        return None
