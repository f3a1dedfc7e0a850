"""The export directory as an object: ``load_export`` checks it and returns an ``ExportBundle``.

This is the contract the runtime codes against: ``ExportBundle.find(kind=, depth=, format=, precision=)`` returns
an ``Artifact`` whose ``path`` is absolute and whose ``inputs``/``outputs`` give names, dtypes and symbolic shapes.
It needs neither torch nor onnx (torch is imported only by ``torch_model``); the compiler that writes exports is
``export.export_checkpoint``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.config import BertShape
from geep_deploy.errors import ArtifactError, GeepError
from geep_deploy.names import DEPTH, ENTROPY, ONNX, QDQ, WEIGHTS
from runtime.manifest import MANIFEST, predictor_of, read_manifest, verify_files


@dataclass(frozen=True)
class Artifact:
    """One exported file: a depth graph/plan, a segment graph, or the torch weights (kind ``model``). ``format`` is
    the file's format (``onnx``, ``tensorrt`` plan, ``torch`` weights), not the backend that runs it."""

    kind: str
    depth: int | None
    format: str
    precision: str
    path: Path
    sha256: str
    inputs: dict
    outputs: dict
    variant: str = ""
    tensors: dict = field(default_factory=dict)  # kind "model": state-dict name -> where it lies in ``path``

    @property
    def backend(self) -> str:
        """Deprecated: the file format, now `format` (a backend runs a file; this never named one)."""
        warnings.warn("Artifact.backend is now Artifact.format (onnx, tensorrt, torch are file formats; a backend "
                      "runs them); .backend will be removed.", DeprecationWarning, stacklevel=2)
        return self.format


def _format_arg(fmt: str, backend: str | None, where: str) -> str:
    """``fmt``, or the deprecated ``backend=`` keyword of ``where`` when given (with a `DeprecationWarning`)."""
    if backend is None:
        return fmt
    warnings.warn(f"ExportBundle.{where}: backend= is now format= (onnx, tensorrt, torch are file formats; a "
                  "backend runs them); backend= will be removed.", DeprecationWarning, stacklevel=3)
    return backend


def _artifact(root: Path, a: dict[str, Any]) -> Artifact:
    precision, variant = a["precision"], a.get("variant", "")
    if precision == "int8_qdq":  # format 1 named the Q/DQ graph variant as a precision
        precision, variant = "int8", QDQ
    return Artifact(kind=a["kind"], depth=a.get("depth"), format=a["format"], precision=precision,
                    path=root / a["file"], sha256=a["sha256"], inputs=a.get("inputs", {}),
                    outputs=a.get("outputs", {}), variant=variant, tensors=a.get("tensors") or {})


@dataclass
class ExportBundle:
    """A loaded export directory: model facts from the manifest plus its artifacts."""

    root: Path
    manifest: dict
    shape: BertShape
    num_labels: int
    label_names: list[str]
    tokenizer_json: str
    max_len: int
    method: str
    exit_mode: str
    depths: list[int]
    artifacts: list[Artifact]
    exit_table: Path | None
    probe: Path | None = None  # the layer-1 probe (format 4 on)
    predictor: str | None = None  # what dispatches by default: "probe", "table", "entropy", or None (no predictor)
    entropy: dict | None = None  # the entropy exit's manifest entry (threshold, num_layers, guarantee), if any

    def find(self, *, kind: str = DEPTH, depth: int | None = None, format: str = ONNX,
             precision: str = "fp32", variant: str = "", backend: str | None = None) -> Artifact:
        """The artifact of (kind, depth, file ``format``, precision, variant).

        ``format="torch"`` returns the torch weights (kind ``model``), which every depth shares. ``backend=`` is
        the deprecated name of ``format=`` (it warns).

        Raises:
            ArtifactError: listing what the export contains when nothing matches.
        """
        format = _format_arg(format, backend, "find")
        for a in self.artifacts:
            if format == WEIGHTS and a.format == WEIGHTS and a.precision == precision:
                return a
            if (a.kind, a.depth, a.format, a.precision, a.variant) == (kind, depth, format, precision, variant):
                return a
        listing = ", ".join(sorted({_describe(a) for a in self.artifacts}))
        raise ArtifactError(
            f"export | {self.root} has no {kind} artifact for depth={depth}, format={format}, "
            f"precision={precision}{f', variant={variant}' if variant else ''}. It has: {listing}. "
            "Re-export with the --depths/--precision/--format you need."
        )

    def torch_state_dict(self) -> dict[str, Any]:
        """The ``ExitBert`` state dict, read from the export's fp32 weights file (no checkpoint needed)."""
        import torch

        art = self.find(format=WEIGHTS)
        if art.path.suffix == ".safetensors":  # format 1 stored a second copy of the weights
            from safetensors.torch import load_file

            try:
                return load_file(str(art.path))
            except Exception as e:  # SafetensorError, OSError: a damaged file, named
                raise ArtifactError(f"export | {art.path} cannot be read ({type(e).__name__}: {e}). "
                                    "Re-export with --force.") from None
        try:
            raw = np.memmap(art.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise ArtifactError(f"export | cannot read {art.path}: {e}. Re-export with --force.") from None
        return {name: torch.from_numpy(read_tensor(raw, entry, art.path)) for name, entry in art.tensors.items()}

    def torch_model(self) -> Any:
        """An ``ExitBert`` in eval mode rebuilt from the manifest and the export's fp32 weights."""
        from geep_deploy.model import ExitBert

        model = ExitBert(self.shape, self.num_labels, shared_head=bool(self.manifest.get("shared_head", False)),
                         pooling=str(self.manifest.get("pooling", "cls")))
        try:
            model.load_state_dict(self.torch_state_dict(), strict=True)
        except (RuntimeError, ValueError) as e:
            raise ArtifactError(f"export | the torch weights of {self.root} do not fit the model: {e}") from None
        return model.eval()

    def has(self, *, kind: str, depth: int | None = None, format: str = ONNX, precision: str = "fp32",
            backend: str | None = None) -> bool:
        """Whether ``find`` would return an artifact (without raising); ``backend=`` as in ``find``."""
        format = _format_arg(format, backend, "has")
        return any((a.kind, a.depth, a.format, a.precision, a.variant) == (kind, depth, format, precision, "")
                   for a in self.artifacts)

    def precisions(self, format: str = ONNX) -> list[str]:
        """The precisions of the depth artifacts of file ``format``."""
        return sorted({a.precision for a in self.artifacts if a.format == format and a.kind == DEPTH})


def _describe(a: Artifact) -> str:
    depth = "" if a.depth is None else str(a.depth)
    return f"{a.kind}{depth}/{a.format}/{a.precision}{'-' + a.variant if a.variant else ''}"


def read_tensor(raw: np.ndarray, entry: dict[str, Any], path: Path) -> np.ndarray:
    """One state-dict tensor (a copy) from the bytes ``raw`` of weights file ``path``: ``entry`` = {offset,
    dtype, shape, transposed}.

    Matrices the ONNX graphs store transposed (``MatMul`` weights) are read in that layout and transposed back,
    so the file holds each tensor once for both ONNX Runtime and torch.
    """
    try:
        dtype, shape = np.dtype(entry["dtype"]), tuple(int(d) for d in entry["shape"])
        stored = shape[::-1] if entry.get("transposed") else shape
        offset, nbytes = int(entry["offset"]), int(np.prod(stored, dtype=np.int64)) * dtype.itemsize
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"export | cannot read tensor {entry!r} from {path}: {e}") from None
    if offset < 0 or offset + nbytes > raw.size:
        raise ArtifactError(f"export | {path} is truncated: a tensor at offset {offset} needs {nbytes} bytes. "
                            "Re-export with --force.")
    arr = np.frombuffer(raw[offset: offset + nbytes], dtype=dtype).reshape(stored)
    return (arr.T if entry.get("transposed") else arr).copy(order="C")  # writable, detached from the mapping


def load_export(path: str | Path, verify: bool = True) -> ExportBundle:
    """Open an export directory, checking its format version and (with ``verify``) every file's sha256.

    Args:
        path: the directory written by ``geep-deploy export --out``.
        verify: hash every file against the manifest. Defaults to True; False still checks files exist.

    Returns:
        The bundle, with absolute artifact paths.

    Raises:
        ArtifactError: naming the missing or corrupted file, or the unsupported version.

    Example:
        >>> bundle = load_export("exports/sst2")  # doctest: +SKIP
        >>> bundle.find(depth=3).path  # doctest: +SKIP
    """
    root = Path(path).resolve()
    m = read_manifest(root)
    mpath = root / MANIFEST
    try:
        verify_files(root, m, check_hash=verify)
        artifacts = [_artifact(root, a) for a in m["artifacts"]]
        table, probe = m.get("exit_table"), m.get("probe")
        shape = BertShape.from_dict(m["backbone"])
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, GeepError) as e:
        raise ArtifactError(f"export | {mpath} is incomplete: {type(e).__name__}: {e}. Re-export with --force.") \
            from None
    tok_path = root / m["tokenizer"]["file"]
    try:
        tokenizer_json = tok_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(f"export | {tok_path} cannot be read as UTF-8 text ({e}). Re-export with --force.") \
            from None
    return ExportBundle(
        root=root, manifest=m, shape=shape, num_labels=m["num_labels"], label_names=list(m["label_names"]),
        tokenizer_json=tokenizer_json, max_len=m["max_len"], method=m["method"], exit_mode=m["exit_mode"],
        depths=list(m["depths"]), artifacts=artifacts, exit_table=(root / table["file"]) if table else None,
        probe=(root / probe["file"]) if probe else None,
        predictor=predictor_of(m), entropy=m.get(ENTROPY),
    )
