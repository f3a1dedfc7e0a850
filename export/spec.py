"""Plain-data build inputs: what to export and how to build engines, translated to ONNX/TensorRT objects only
inside the modules that use those libraries (so the CLI, the tests and the runtime share one vocabulary).

Also the base of the export stages: lazy loaders in Polygraphy's style, whose ``__init__`` only stores and whose
``__call__`` does the work; every argument may be a value or a zero-argument callable returning one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from geep_deploy.errors import ConfigError
from geep_deploy.names import EXPORT_FORMATS, EXPORT_PRECISIONS

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = 17  # LayerNormalization needs 17; TensorRT 10 and 11 parse it.

T = TypeVar("T")


def invoke_if_callable(obj: T | Callable[[], T]) -> tuple[T, bool]:
    """Resolve a loader argument; the flag says whether we made (and so own) the value.

    Modules (anything with a ``state_dict``) are callable but are values, not loaders.
    """
    if callable(obj) and not hasattr(obj, "state_dict"):
        return obj(), True
    return obj, False


class BaseLoader:
    """A lazy export stage: ``__init__`` stores its arguments, ``__call__`` runs ``call_impl``."""

    def __call__(self) -> Any:
        return self.call_impl()

    def call_impl(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class ShapeRange:
    """min/opt/max of one input's shape, e.g. ``(1, 8)``, ``(32, 64)``, ``(128, 128)``."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ConfigError(f"profile | min/opt/max have different ranks: {self.min}, {self.opt}, {self.max}.")
        for lo, mid, hi in zip(self.min, self.opt, self.max):
            if not (1 <= lo <= mid <= hi):
                raise ConfigError(
                    f"profile | need 1 <= min <= opt <= max per axis, got {self.min}, {self.opt}, {self.max}."
                )


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimisation profile as plain data: input name -> ShapeRange (chainable ``add``)."""

    shapes: dict[str, ShapeRange] = field(default_factory=dict)

    def add(self, name: str, min: Sequence[int], opt: Sequence[int], max: Sequence[int]) -> Profile:
        return Profile({**self.shapes, name: ShapeRange(tuple(min), tuple(opt), tuple(max))})

    def to_dict(self) -> dict[str, dict[str, list[int]]]:
        return {n: {"min": list(r.min), "opt": list(r.opt), "max": list(r.max)} for n, r in self.shapes.items()}


def profiles_from_flags(
    input_names: Iterable[str], max_batch: int, max_len: int, *, min_len: int = 1, opt_batch: int | None = None,
    opt_len: int | None = None, trailing: Mapping[str, Sequence[int]] | None = None,
) -> list[Profile]:
    """One profile over (batch, seq) for every (B, S, ...) input, from the CLI's ``--max-batch``/``--max-len``.

    Args:
        input_names: (batch, seq) inputs of the graph.
        max_batch: largest batch the engine must accept.
        max_len: longest sequence (tokens, special tokens included).
        min_len: shortest sequence. Defaults to 1.
        opt_batch: the batch TensorRT tunes for. Defaults to ``min(64, max_batch)``.
        opt_len: the length TensorRT tunes for. Defaults to ``min(64, max_len)``.
        trailing: static dims after (batch, seq) per input, e.g. ``{"hidden": (384,)}``. Defaults to none.

    Raises:
        ConfigError: if the numbers do not satisfy 1 <= min <= opt <= max.
    """
    if max_batch < 1 or max_len < 1:
        raise ConfigError(f"profile | --max-batch and --max-len must be >= 1, got {max_batch} and {max_len}.")
    ob = min(64, max_batch) if opt_batch is None else opt_batch
    ol = min(64, max_len) if opt_len is None else opt_len
    prof = Profile()
    for name in input_names:
        rest = tuple((trailing or {}).get(name, ()))
        prof = prof.add(name, (1, min_len, *rest), (ob, ol, *rest), (max_batch, max_len, *rest))
    return [prof]


@dataclass(frozen=True)
class ExportSpec:
    """What to export: depths, precisions, artifact formats, exporter, graph sets and validation settings.

    ``segments``: the ``embed``/``layer{k}`` graphs of the layer-by-layer baselines. ``continuations``: the probe
    dispatch's ``prefix`` and ``cont{d}`` graphs (every exported depth d >= 2).
    """

    depths: tuple[int, ...]
    precisions: tuple[str, ...] = ("fp32",)
    formats: tuple[str, ...] = ("onnx",)  # artifact formats (`geep_deploy.names.EXPORT_FORMATS`)
    opset: int = DEFAULT_OPSET
    exporter: str = "torchscript"
    segments: bool = True
    continuations: bool = False
    max_batch: int = 128
    max_len: int = 128
    atol: float = 1e-4
    allow_mismatch: bool = False

    def __post_init__(self) -> None:
        _check_subset("precision", self.precisions, EXPORT_PRECISIONS)
        _check_subset("format", self.formats, EXPORT_FORMATS)
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"export | exporter {self.exporter!r} is unknown. Expected one of {EXPORTERS}.")
        if "fp32" not in self.precisions:
            raise ConfigError("export | fp32 is the reference every other precision is compared to; include it.")
        if not self.depths:
            raise ConfigError("export | no depths to export.")


@dataclass(frozen=True)
class BuildSpec:
    """How to build one TensorRT engine: precision, profiles, workspace and TF32 policy."""

    precision: str = "fp32"
    profiles: tuple[Profile, ...] = ()
    workspace_mb: int = 4096
    tf32: bool = False
    builder_optimization_level: int | None = None

    def __post_init__(self) -> None:
        _check_subset("precision", (self.precision,), EXPORT_PRECISIONS)


def _check_subset(what: str, got: Iterable[str], allowed: Sequence[str]) -> None:
    bad = [g for g in got if g not in allowed]
    if bad:
        raise ConfigError(f"export | unknown {what} {bad}. Expected some of {list(allowed)}.")


def parse_list(text: str | Sequence[str] | None, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """``"fp32,fp16"`` -> ``("fp32", "fp16")``, checked against ``allowed``, order kept, duplicates dropped."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    out = tuple(dict.fromkeys(i.strip().lower() for i in items if i.strip()))
    _check_subset(what, out, allowed)
    return out


def is_all_depths(text: str | Sequence[int] | None) -> bool:
    """Whether ``--depths`` asks for every depth the checkpoint has (``"all"`` or left out)."""
    return text is None or (isinstance(text, str) and text.strip().lower() == "all")


def parse_depths(text: str | Sequence[int] | None, num_layers: int) -> tuple[int, ...]:
    """``"all"``/None -> 1..L; ``"1,3,6"`` -> (1, 3, 6); each checked to lie in 1..L."""
    if is_all_depths(text):
        return tuple(range(1, num_layers + 1))
    raw = text.split(",") if isinstance(text, str) else list(text)
    try:
        depths = sorted({int(x) for x in raw if str(x).strip()})
    except ValueError:
        raise ConfigError(f"export | --depths must be 'all' or integers like 1,3,6; got {text!r}.") from None
    bad = [d for d in depths if not 1 <= d <= num_layers]
    if bad or not depths:
        raise ConfigError(f"export | depths {bad or text!r} are outside 1..{num_layers} (the model's layers).")
    return tuple(depths)
