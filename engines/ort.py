"""ONNX Runtime engine: CPU, or the CUDA execution provider when ``onnxruntime-gpu`` is installed.

Loading all L depth graphs naively holds L copies of the weights and L memory arenas (``bench/runtime_memory.py``
measures it; figures in docs/runtime.md). `OrtWeightPool` fixes both: every initializer is read once into an
``OrtValue`` keyed by *where its bytes live* (external-data file, offset, length; or the hash of inline bytes,
never the exported name, which the dynamo exporter reuses for different tensors), handed to every session with
``SessionOptions.add_initializer``, and all sessions allocate from one arena registered on the environment
(``session.use_env_allocators``). ORT's MatMul pre-packing still makes a per-session packed copy of each weight;
``disable_prepacking=True`` removes it at a latency cost at small batches (``bench/padding_bench.py`` measures it;
figures in docs/runtime.md).

On the CUDA execution provider the pool's values are host arrays, so each session copies the weights it uses to
the GPU: L depth sessions hold up to L device copies (the pool still saves the host copies). ``make gpu-check``
measures the device memory per session; sharing device-side ``OrtValue``s is the fix to try if it matters.
The CUDA provider gets ``use_tf32=0`` for fp32 graphs: ONNX Runtime's default is TF32 on, which would make
"fp32" on ORT-CUDA a TF32 run while the TensorRT fp32 build turns TF32 off.

On the CPU every session turns off the graph rewrites in `CPU_DISABLED_OPTIMIZERS`, so that every graph kind runs
the same kernels for the same layer (see there; ``bench/fusion_bench.py`` measures it).
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BaseEngine, EngineOptions, TensorMeta
from geep_deploy.errors import ArtifactError, BackendUnavailable, EngineBuildError
from geep_deploy.names import ONNXRUNTIME
from geep_deploy.optional import require

_ORT_TYPES = {
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
    "tensor(float16)": np.float16, "tensor(double)": np.float64, "tensor(bool)": np.bool_,
}
_ARENA_LOCK = threading.Lock()
_ARENA_REGISTERED = False
_MIN_SHARED_BYTES = 1024  # smaller inline tensors (shapes, scalars) are not worth sharing

CPU_DISABLED_OPTIMIZERS: tuple[str, ...] = ("SkipLayerNormFusion",)
"""ONNX Runtime graph rewrites every CPU session turns off (``InferenceSession(disabled_optimizers=...)``).

``SkipLayerNormFusion`` fuses a residual Add with the LayerNormalization after it. It matches in the graphs that
start from hidden states (``layer{k}``, ``cont{d}``) but not in the depth graphs, whose shape arithmetic breaks the
pattern, and ORT's CPU SkipLayerNormalization kernel was about twice as slow as the Add + LayerNormalization it
replaces (ORT 1.32, profiled per node). So the same layer ran slower in FastBERT's and PABEE's layer-wise walk and
in the probe's continuations than in `full`. Turning it off gives every graph kind the same kernels per layer;
``bench/fusion_bench.py`` measures both settings."""


def import_ort() -> Any:
    return require("onnxruntime", "onnxruntime")


def register_shared_arena() -> None:
    """Register one CPU arena allocator on ORT's environment, once per process (ORT rejects a second one)."""
    global _ARENA_REGISTERED
    ort = import_ort()
    with _ARENA_LOCK:
        if _ARENA_REGISTERED:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
        _ARENA_REGISTERED = True


class OrtWeightPool:
    """Initializers loaded once and shared by every session built with this pool.

    Thread-safe; keep the pool alive as long as any session that used it (each `OrtEngine` holds a reference).

    Args:
        mmap: map external-data tensors read-only from their file instead of copying them (the export writes
            them page-aligned), so the weights live once in the page cache, shared even across processes.
    """

    def __init__(self, mmap: bool = True) -> None:
        self.mmap = mmap
        self._values: dict[tuple, tuple[np.ndarray, Any]] = {}
        self._lock = threading.Lock()
        self.bytes_loaded = 0

    def __len__(self) -> int:
        return len(self._values)

    def initializers_for(self, path: Path) -> dict[str, Any]:
        """Map each sizeable initializer name of the graph at ``path`` to a shared ``OrtValue``."""
        import onnx
        from onnx import numpy_helper

        ort = import_ort()
        model = onnx.load(str(path), load_external_data=False)
        out: dict[str, Any] = {}
        with self._lock:
            for t in model.graph.initializer:
                key, reader = self._locate(t, path.parent, numpy_helper, self.mmap)
                if key is None:
                    continue
                if key not in self._values:
                    arr = reader()
                    if not isinstance(arr, np.memmap):
                        arr = np.ascontiguousarray(arr)
                    if arr.dtype not in (np.float32, np.float16, np.int64, np.int32, np.int8, np.uint8):
                        continue  # e.g. bfloat16: let the session load it itself
                    self._values[key] = (arr, ort.OrtValue.ortvalue_from_numpy(arr))
                    self.bytes_loaded += arr.nbytes
                out[t.name] = self._values[key][1]
        return out

    @staticmethod
    def _locate(t: Any, base: Path, numpy_helper: Any, mmap: bool) -> tuple[tuple | None, Any]:
        import onnx

        dims = tuple(int(d) for d in t.dims)
        if t.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in t.external_data}
            file = _external_file(base, info.get("location"), t.name)
            offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)

            def read() -> np.ndarray:
                count = length // np.dtype(dtype).itemsize if length >= 0 else -1
                if mmap and offset % np.dtype(dtype).itemsize == 0 and count > 0:
                    # read-only file mapping: pages are shared with every other process mapping the file
                    return np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=dims)
                return np.fromfile(file, dtype=dtype, count=count, offset=offset).reshape(dims)

            return ("ext", str(file), offset, length, t.data_type, dims), read
        if len(t.raw_data) < _MIN_SHARED_BYTES:
            return None, None
        digest = hashlib.sha1(t.raw_data).hexdigest()
        return ("inline", digest, t.data_type, dims), lambda: numpy_helper.to_array(t)


def _external_file(base: Path, location: Any, tensor: str) -> Path:
    """The external-data file of one initializer: a regular file in the graph's own folder (no symlink out, no
    FIFO or device), checked before anything opens it."""
    from geep_deploy.safe_io import UnsafePath, member_path

    try:
        return member_path(base, location, f"tensor {tensor!r} of a graph in {base} keeps its data in").resolve()
    except (UnsafePath, OSError) as e:
        raise ArtifactError(f"export | {e}: the graph is damaged or not from this export. Re-export with "
                            "--force.") from None


def _check_external_files(path: Path) -> None:
    """Every external-data location of the graph at ``path`` passes `_external_file` (graph read without data)."""
    import onnx

    for t in onnx.load(str(path), load_external_data=False).graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            _external_file(path.parent, {e.key: e.value for e in t.external_data}.get("location"), t.name)


def default_disabled_optimizers(device: str) -> tuple[str, ...]:
    """The graph rewrites an `OrtEngine` on ``device`` turns off unless told otherwise."""
    return CPU_DISABLED_OPTIMIZERS if device == "cpu" else ()


def optimized_op_types(graph: Path, disabled_optimizers: tuple[str, ...]) -> list[str]:
    """The op types of ``graph`` after ONNX Runtime's CPU graph optimiser, with ``disabled_optimizers`` off: what a
    CPU session runs (e.g. whether a rewrite such as SkipLayerNormalization fused). The session is built here, with
    the same switches `OrtEngine` passes, so a count read from it describes the engines that are timed."""
    import tempfile

    import onnx

    ort = import_ort()
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name", "weights.bin")
        ort.InferenceSession(str(graph), so, providers=["CPUExecutionProvider"],
                             disabled_optimizers=list(disabled_optimizers))
        model = onnx.load(so.optimized_model_filepath, load_external_data=False)
    return [n.op_type for n in model.graph.node]


def cuda_provider_options(precision: str) -> dict[str, str]:
    """CUDA execution provider options: TF32 off for fp32 and int8 (ORT's default is on; int8's float ops are
    fp32, as in TensorRT's int8, ``export.trt_build.INT8_MEANING``), on for tf32."""
    if precision in ("fp32", "int8"):
        return {"use_tf32": "0"}
    if precision == "tf32":
        return {"use_tf32": "1"}
    return {}


class OrtEngine(BaseEngine):
    """One ONNX graph in one ``InferenceSession``.

    Args:
        path: the ``.onnx`` file (its external-data file next to it).
        options: device (``"cpu"``, or ``"cuda"`` for the CUDA execution provider, which needs
            ``onnxruntime-gpu``), precision (the graph's, recorded, not converted), check_inputs, name
            (`EngineOptions`). Defaults to CPU, fp32.
        pool: share weights and the arena with the other engines built with the same pool. Defaults to none.
        threads: intra-op threads. Defaults to ORT's choice (one per core).
        disable_prepacking: trade small-batch latency for no per-session packed weight copies.
        strict_provider: raise (True) or warn (False) when CUDA was asked but the session fell back to CPU.
        disabled_optimizers: graph rewrites to turn off. Defaults to `CPU_DISABLED_OPTIMIZERS` on the CPU and none
            on CUDA (not measured there).
    """

    backend = ONNXRUNTIME

    def __init__(
        self,
        path: str | Path,
        options: EngineOptions | None = None,
        *,
        pool: OrtWeightPool | None = None,
        threads: int | None = None,
        disable_prepacking: bool = False,
        strict_provider: bool = True,
        disabled_optimizers: tuple[str, ...] | None = None,
    ) -> None:
        o = EngineOptions.coerce(options)
        super().__init__(o.name or f"onnxruntime {Path(path).name}", o.precision, o.device or "cpu", o.check_inputs)
        self.path, self.pool, self.threads = Path(path), pool, threads
        self.disable_prepacking, self.strict_provider = disable_prepacking, strict_provider
        self.disabled_optimizers = tuple(disabled_optimizers if disabled_optimizers is not None
                                         else default_disabled_optimizers(self.device))
        self.provider: str | None = None
        self.provider_options: dict[str, str] = {}  # what the session reports for its provider (gpu-check reads it)
        self._session: Any = None

    def _load(self) -> None:
        ort = import_ort()
        if not self.path.is_file():
            raise EngineBuildError(f"{self.name} | {self.path} does not exist.")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
        if self.disable_prepacking:
            so.add_session_config_entry("session.disable_prepacking", "1")
        # Per-depth sessions take turns; each has its own intra-op pool whose threads otherwise spin after a run
        # and steal the cores the next depth's session needs (per-row dispatch across depths was measurably slower).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.pool is None:  # the pool checks each location as it reads it; ORT alone would open any path
            _check_external_files(self.path)
        else:
            if self.device == "cpu":
                register_shared_arena()
                so.add_session_config_entry("session.use_env_allocators", "1")
            for name, value in self.pool.initializers_for(self.path).items():
                so.add_initializer(name, value)
        providers: list[Any] = ["CPUExecutionProvider"]
        if self.device == "cuda":
            available = ort.get_available_providers()
            if "CUDAExecutionProvider" not in available:
                raise BackendUnavailable(
                    f"{self.name} | device='cuda' needs the CUDA execution provider, but this onnxruntime offers "
                    f"{available}. Try `pip uninstall onnxruntime && pip install geep-deploy[ort-gpu]`."
                )
            providers = [("CUDAExecutionProvider", cuda_provider_options(self.precision)), "CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=so, providers=providers,
                                                 disabled_optimizers=list(self.disabled_optimizers))
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types; name the file either way
            raise EngineBuildError(f"{self.name} | ONNX Runtime could not load {self.path}: {e}") from e
        self.provider = self._session.get_providers()[0]
        self.provider_options = dict(self._session.get_provider_options().get(self.provider, {}))
        if self.device == "cuda" and self.provider != "CUDAExecutionProvider":
            msg = (f"{self.name} | CUDA was asked but the session runs on {self.provider} (silent fallback; "
                   "check the CUDA/cuDNN libraries onnxruntime-gpu needs).")
            if self.strict_provider:
                self._session = None
                raise EngineBuildError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self._output_names
        return dict(zip(names, self._session.run(names, dict(feed))))

    @property
    def _output_names(self) -> list[str]:
        return [o.name for o in self._session.get_outputs()]

    def _input_metadata(self) -> dict[str, TensorMeta]:
        meta = {}
        for i in self._session.get_inputs():
            shape = tuple(d if isinstance(d, int) else None for d in i.shape)
            meta[i.name] = TensorMeta(np.dtype(_ORT_TYPES.get(i.type, np.float32)), shape)
        return meta

    def _close(self) -> None:
        self._session = None
        self.provider = None
        self.provider_options = {}
