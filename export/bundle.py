"""The compiler's API: ``export_checkpoint`` writes a validated export directory and returns it loaded.

``load_export``, ``ExportBundle`` and ``Artifact`` live in ``runtime.artifacts`` (the runtime reads exports without
the compiler); they are re-exported here for callers of the compiler.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from export.options import ExportOptions
from runtime.artifacts import Artifact, ExportBundle, load_export

__all__ = ["Artifact", "ExportBundle", "ExportOptions", "export_checkpoint", "load_export"]


def export_checkpoint(
    checkpoint: Any,
    out_dir: str | Path,
    options: ExportOptions | None = None,
    **fields: Any,
) -> ExportBundle:
    """Compile a checkpoint into a validated export directory and return it loaded.

    Args:
        checkpoint: path of a ``ckpt.pt``, or a ``Checkpoint`` (or a zero-argument callable returning one).
        out_dir: the export directory; written next to itself under a temporary name, then renamed into place.
        options: what to export and how (`export.options.ExportOptions`: ``exit_table``, ``calib_data``,
            ``probe``, ``entropy``, ``depths``, ``precisions``, ``formats``, ``max_batch``, ``max_len``, ``exporter``,
            ``segments``, ``continuations``, ``exit_mode``, ``force``, ``allow_mismatch``, ``progress``).
            Defaults to one from ``fields``.
        **fields: any `ExportOptions` field, replacing the one in ``options``. ``backends=`` is the deprecated
            name of ``formats=`` (it warns).

    Raises:
        ExportError: (and subclasses) for an existing ``out_dir`` without ``force``, failed validation, etc.
        TableError: a damaged or foreign probe file. ConfigError: an option out of range, or a probe that does
            not fit the checkpoint.
        BackendUnavailable: for the ``tensorrt`` format where TensorRT does not import, before anything is written.
        TypeError: a keyword that is no `ExportOptions` field.

    Example:
        >>> bundle = export_checkpoint("runs/geep.pt", "exports/geep", precisions=("fp32", "int8"))  # doctest: +SKIP
        >>> opts = ExportOptions(formats=("onnx", "tensorrt"), probe="runs/t.probe.json")  # doctest: +SKIP
        >>> bundle = export_checkpoint("runs/geep.pt", "exports/geep", opts)  # doctest: +SKIP
    """
    from export.pipeline import run_export

    opts = ExportOptions.from_fields(options, fields, "export_checkpoint()")
    return load_export(run_export(checkpoint, out_dir, opts))
