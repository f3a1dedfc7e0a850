"""The export directory as an object: ``load_export`` (checked) and ``export_checkpoint`` (the compiler's API).

This is the contract the runtime codes against: ``ExportBundle.find(kind=, depth=, backend=, precision=)`` returns
an ``Artifact`` whose ``path`` is absolute and whose ``inputs``/``outputs`` give names, dtypes and symbolic shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.manifest import read_manifest, verify_files
from geep_deploy.config import BertShape
from geep_deploy.errors import ArtifactError


@dataclass(frozen=True)
class Artifact:
    """One exported file: a depth graph/plan, a segment graph, or the torch weights (kind ``model``)."""

    kind: str
    depth: int | None
    backend: str
    precision: str
    path: Path
    sha256: str
    inputs: dict
    outputs: dict


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

    def find(self, *, kind: str = "depth", depth: int | None = None, backend: str = "onnx",
             precision: str = "fp32") -> Artifact:
        """The artifact of (kind, depth, backend, precision).

        ``backend="torch"`` returns the one ``model.safetensors`` artifact for every depth.

        Raises:
            ArtifactError: listing what the export contains when nothing matches.
        """
        for a in self.artifacts:
            if backend == "torch" and a.backend == "torch" and a.precision == precision:
                return a
            if (a.kind, a.depth, a.backend, a.precision) == (kind, depth, backend, precision):
                return a
        have = sorted({(a.kind, a.depth if a.depth is not None else 0, a.backend, a.precision)
                       for a in self.artifacts})
        listing = ", ".join(f"{k}{'' if d == 0 else d}/{b}/{p}" for k, d, b, p in have)
        raise ArtifactError(
            f"export | {self.root} has no {kind} artifact for depth={depth}, backend={backend}, "
            f"precision={precision}. It has: {listing}. Re-export with the --depths/--precision/--backend you need."
        )

    def torch_state_dict(self) -> dict[str, Any]:
        """The ``ExitBert`` state dict from ``model.safetensors`` (no checkpoint needed)."""
        from safetensors.torch import load_file

        return load_file(str(self.find(backend="torch").path))

    def torch_model(self) -> Any:
        """An ``ExitBert`` in eval mode rebuilt from the manifest and ``model.safetensors``."""
        from geep_deploy.model import ExitBert

        model = ExitBert(self.shape, self.num_labels, shared_head=bool(self.manifest.get("shared_head", False)),
                         pooling=str(self.manifest.get("pooling", "cls")))
        model.load_state_dict(self.torch_state_dict(), strict=True)
        return model.eval()

    def precisions(self, backend: str = "onnx") -> list[str]:
        return sorted({a.precision for a in self.artifacts if a.backend == backend and a.kind == "depth"})


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
    verify_files(root, m, check_hash=verify)
    try:
        artifacts = [
            Artifact(kind=a["kind"], depth=a.get("depth"), backend=a["backend"], precision=a["precision"],
                     path=root / a["file"], sha256=a["sha256"], inputs=a.get("inputs", {}),
                     outputs=a.get("outputs", {}))
            for a in m["artifacts"]
        ]
        table = m.get("exit_table")
        return ExportBundle(
            root=root, manifest=m, shape=BertShape.from_dict(m["backbone"]), num_labels=int(m["num_labels"]),
            label_names=list(m["label_names"]),
            tokenizer_json=(root / m["tokenizer"]["file"]).read_text(encoding="utf-8"),
            max_len=int(m["max_len"]), method=str(m["method"]), exit_mode=str(m["exit_mode"]),
            depths=[int(d) for d in m["depths"]], artifacts=artifacts,
            exit_table=(root / table["file"]) if table else None,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"export | {root / 'manifest.json'} is incomplete: {type(e).__name__}: {e}.") from None


def export_checkpoint(
    checkpoint: Any,
    out_dir: str | Path,
    *,
    exit_table: Any = None,
    calib_data: str | Path | None = None,
    depths: str | Sequence[int] | None = None,
    precisions: Sequence[str] = ("fp32",),
    backends: Sequence[str] = ("onnx",),
    max_batch: int = 128,
    max_len: int | None = None,
    force: bool = False,
    allow_mismatch: bool = False,
    progress: bool = True,
    exporter: str = "torchscript",
    segments: bool | None = None,
) -> ExportBundle:
    """Compile a checkpoint into a validated export directory and return it loaded.

    Args:
        checkpoint: path of a ``ckpt.pt``, or a ``Checkpoint`` (or a zero-argument callable returning one).
        out_dir: the export directory; written next to itself under a temporary name, then renamed into place.
        exit_table: an exit-table file to copy (checked to load with a matching ``num_layers``), or a callable
            returning one. Defaults to None.
        calib_data: a data directory (``train.tsv`` calibrates, ``dev.tsv`` tunes) to build the table from.
        depths: ``"all"``, ``"1,3,6"`` or a list. Defaults to every depth (only L for method ``full``).
        precisions: some of fp32, fp16, bf16, int8 (fp32 is always included).
        backends: some of onnx, tensorrt. Defaults to onnx.
        max_batch: largest batch of TensorRT profiles. Defaults to 128.
        max_len: longest sequence. Defaults to the checkpoint's max_len.
        force: replace an existing ``out_dir``. Defaults to False.
        allow_mismatch: record validation failures instead of raising. Defaults to False.
        progress: show a progress bar. Defaults to True.
        exporter: ``torchscript`` (fast) or ``dynamo``. Defaults to torchscript.
        segments: export ``embed``/``layer{k}`` graphs. Defaults to True except for method ``full``.

    Raises:
        ExportError: (and subclasses) for an existing ``out_dir`` without ``force``, failed validation, etc.
        BackendUnavailable: for ``tensorrt`` where it does not import, before anything is written.

    Example:
        >>> bundle = export_checkpoint("runs/geep.pt", "exports/geep", precisions=("fp32", "int8"))  # doctest: +SKIP
    """
    from export.pipeline import run_export

    root = run_export(
        checkpoint, out_dir, exit_table=exit_table, calib_data=calib_data, depths=depths,
        precisions=tuple(precisions), backends=tuple(backends), max_batch=max_batch, max_len=max_len, force=force,
        allow_mismatch=allow_mismatch, progress=progress, exporter=exporter, segments=segments,
    )
    return load_export(root)
