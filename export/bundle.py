"""The compiler's API: ``export_checkpoint`` writes a validated export directory and returns it loaded.

``load_export``, ``ExportBundle`` and ``Artifact`` live in ``runtime.artifacts`` (the runtime reads exports without
the compiler); they are re-exported here for callers of the compiler.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.artifacts import Artifact, ExportBundle, load_export

__all__ = ["Artifact", "ExportBundle", "export_checkpoint", "load_export"]


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
    probe: str | Path | Any = None,
    continuations: bool | None = None,
    exit_mode: str | None = None,
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
        probe: a layer-1 probe (``geep-deploy calibrate --predictor probe`` writes one; a JSON path or a
            ``runtime.probe.ProbeModel``) to copy in; the export then dispatches by the probe by default. Checked
            against the checkpoint's layer count (and, if it reads table statistics, the presence of an exit
            table) before anything is written. Defaults to None.
        continuations: export the probe dispatch's ``prefix`` and ``cont{d}`` graphs. Defaults to True exactly
            when ``probe`` is given.
        exit_mode: how depth k < L exits: ``"student"`` (head k) or ``"skip"`` (layer L, then the teacher: the
            path GEEP's shared exit loss trains, one layer more). Recorded in the manifest. Defaults to the
            checkpoint's.

    Raises:
        ExportError: (and subclasses) for an existing ``out_dir`` without ``force``, failed validation, etc.
        TableError: a damaged or foreign probe file. ConfigError: a probe that does not fit the checkpoint.
        BackendUnavailable: for ``tensorrt`` where it does not import, before anything is written.

    Example:
        >>> bundle = export_checkpoint("runs/geep.pt", "exports/geep", precisions=("fp32", "int8"))  # doctest: +SKIP
    """
    from export.pipeline import run_export

    root = run_export(
        checkpoint, out_dir, exit_table=exit_table, calib_data=calib_data, depths=depths,
        precisions=tuple(precisions), backends=tuple(backends), max_batch=max_batch, max_len=max_len, force=force,
        allow_mismatch=allow_mismatch, progress=progress, exporter=exporter, segments=segments, probe=probe,
        continuations=continuations, exit_mode=exit_mode,
    )
    return load_export(root)
