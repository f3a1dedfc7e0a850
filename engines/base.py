"""The one engine protocol every backend implements (Polygraphy-runner style).

`BaseEngine` owns the state machine (created -> loaded -> closed), the input checks and the timing, so a backend
module only writes ``_load``, ``_infer``, ``_close`` and ``_input_metadata``. Inputs and outputs at this boundary
are NumPy arrays; a backend converts at its own edge.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from geep_deploy.errors import DataError, GeepError
from geep_deploy.names import DEVICES, PRECISIONS


class EngineStateError(GeepError):
    """An engine was used before ``load()`` or after ``close()``."""


OptionsT = TypeVar("OptionsT", bound="EngineOptions")


@dataclass(frozen=True)
class EngineOptions:
    """What every runner takes besides its source (a graph, a plan, a model), as one value: a runner's constructor
    stays small, and `engines.registry.open_engine` builds it once from its keywords. A runner with settings of
    its own takes a subclass (`engines.torch_engine.TorchOptions`); its ``options_type`` names which.

    Args:
        device: ``"cpu"`` or ``"cuda"``. Defaults to the runner's own (TensorRT: cuda; the others: cpu).
        precision: the precision the artifact holds (recorded, not converted; torch casts its model to it).
        check_inputs: validate every feed against ``input_metadata()``; turn off on a hot path whose feeds are
            built by the runtime itself.
        name: label used in error messages and reports. Defaults to the backend and the file (or kind and depth).
    """

    device: str | None = None
    precision: str = "fp32"
    check_inputs: bool = True
    name: str | None = None

    @classmethod
    def coerce(cls: type[OptionsT], options: EngineOptions | None) -> OptionsT:
        """``options`` as this class: None gives the defaults; a plain `EngineOptions` given to a runner that
        takes a subclass keeps its fields (the subclass's own take their defaults).

        Raises:
            TypeError: ``options`` is no `EngineOptions`.
        """
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        if not isinstance(options, EngineOptions):
            raise TypeError(f"engine options must be a {cls.__name__}, got {type(options).__name__}.")
        return cls(**{f.name: getattr(options, f.name) for f in dataclasses.fields(EngineOptions)})


@dataclass(frozen=True)
class TensorMeta:
    """Dtype and shape of one input; ``None`` in ``shape`` marks a dynamic axis (batch, sequence)."""

    dtype: np.dtype
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{np.dtype(self.dtype).name}[{dims}]"


def check_feed(component: str, feed: Mapping[str, Any], meta: Mapping[str, TensorMeta]) -> None:
    """Reject a feed whose names, dtypes, ranks or static dims do not match ``meta``.

    Raises:
        DataError: naming the input and what was expected.
    """
    if not isinstance(feed, Mapping):
        raise DataError(f"{component} | feed must be a dict of name -> np.ndarray, got {type(feed).__name__}.")
    missing = sorted(set(meta) - set(feed))
    extra = sorted(set(feed) - set(meta))
    if missing or extra:
        raise DataError(
            f"{component} | feed names do not match the engine inputs. Missing {missing}, unexpected {extra}. "
            f"Expected {sorted(meta)}."
        )
    for name, m in meta.items():
        x = feed[name]
        if not isinstance(x, np.ndarray):
            raise DataError(f"{component} | input {name!r} is a {type(x).__name__}, expected np.ndarray.")
        if x.dtype != m.dtype:
            raise DataError(
                f"{component} | input {name!r} has dtype {x.dtype}, expected {m.describe()}. "
                f"Cast with .astype(np.{np.dtype(m.dtype).name})."
            )
        if x.ndim != len(m.shape) or any(d is not None and d != s for d, s in zip(m.shape, x.shape)):
            raise DataError(f"{component} | input {name!r} has shape {x.shape}, expected {m.describe()}.")


class BaseEngine:
    """One loaded artifact (a depth graph, a segment graph or a plan) that maps named arrays to named arrays.

    Args:
        name: label used in error messages and reports, e.g. ``"onnxruntime depth 3"``.
        precision: one of ``PRECISIONS``.
        device: ``"cpu"`` or ``"cuda"``.
        check_inputs: validate every feed against ``input_metadata()``; turn off on a hot path whose feeds are
            built by the runtime itself.

    Example:
        >>> with OrtEngine("depth3.onnx") as eng:  # doctest: +SKIP
        ...     logits = eng.infer(feed)["logits"]
    """

    backend = "base"
    device_resident = False  # True: ``infer_states`` keeps outputs on the device (see `infer_states`)
    options_type: type[EngineOptions] = EngineOptions  # what the constructor's ``options`` is (`open_engine`)

    def __init__(self, name: str, precision: str = "fp32", device: str = "cpu", check_inputs: bool = True) -> None:
        if precision not in PRECISIONS:
            raise GeepError(f"{name} | unknown precision {precision!r}. Expected one of {PRECISIONS}.")
        if device not in DEVICES:
            raise GeepError(f"{name} | unknown device {device!r}. Expected one of {DEVICES}.")
        self.name, self.precision, self.device = name, precision, device
        self.check_inputs = check_inputs
        self.is_loaded = False
        self.is_closed = False
        self.last_inference_time: float | None = None
        self.inference_seconds = 0.0  # summed over every infer() call: what a dispatch spent inside this engine
        self._meta: dict[str, TensorMeta] | None = None

    # -- public API; subclasses do not override these -------------------------------------------------------
    def load(self) -> BaseEngine:
        """Build or deserialize the backend object. Returns ``self`` so ``eng = X(...).load()`` works."""
        if self.is_closed:
            raise EngineStateError(f"{self.name} | engine was closed; create a new one instead of reloading.")
        if self.is_loaded:
            raise EngineStateError(f"{self.name} | engine is already loaded.")
        self._load()
        self.is_loaded = True
        return self

    def infer(self, feed: Mapping[str, np.ndarray], check_inputs: bool | None = None) -> dict[str, np.ndarray]:
        """Run once on ``feed`` and return every output as a host NumPy array.

        ``last_inference_time`` is set to the seconds the backend took, measured after its results are on the
        host (so device work is included), and added to ``inference_seconds``.
        """
        self._require_loaded()
        if self.check_inputs if check_inputs is None else check_inputs:
            check_feed(self.name, feed, self.input_metadata())
        t0 = time.perf_counter()
        out = self._infer(feed)
        self.last_inference_time = time.perf_counter() - t0
        self.inference_seconds += self.last_inference_time
        return out

    def infer_states(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        """Device-resident engines (``device_resident``): run on ``feed`` (host arrays, or this backend's device
        arrays) and return its device arrays (torch tensors, CuPy arrays), nothing copied to the host."""
        raise GeepError(f"{self.name} | this engine has no device-resident path; use infer().")

    @staticmethod
    def to_host(x: Any) -> np.ndarray:
        """A host NumPy copy of one ``infer_states`` output."""
        return np.asarray(x)

    def input_metadata(self) -> dict[str, TensorMeta]:
        """Input names with dtype and shape (``None`` = dynamic axis)."""
        self._require_loaded()
        if self._meta is None:
            self._meta = self._input_metadata()
        return self._meta

    def close(self) -> None:
        """Free what ``load()`` created. Closing twice is harmless."""
        if self.is_loaded and not self.is_closed:
            self._close()
        self.is_closed = True
        self.is_loaded = False
        self._meta = None

    def __enter__(self) -> BaseEngine:
        if not self.is_loaded:
            self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "loaded" if self.is_loaded else "not loaded"
        return f"<{type(self).__name__} {self.name} {self.precision} {self.device} ({state})>"

    def _require_loaded(self) -> None:
        if self.is_closed:
            raise EngineStateError(f"{self.name} | engine is closed.")
        if not self.is_loaded:
            raise EngineStateError(f"{self.name} | engine is not loaded. Call load() or use it as a context manager.")

    # -- what a backend writes -------------------------------------------------------------------------------
    def _load(self) -> None:
        raise NotImplementedError

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _input_metadata(self) -> dict[str, TensorMeta]:
        raise NotImplementedError
