"""The state of one export run, shared by the compiler's stages (ONNX, precision variants, TensorRT, exit table).

Kept in its own module so that stages record artifacts without importing the pipeline that calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export.manifest import file_entry
from export.spec import ExportSpec
from geep_deploy.graphs import io_spec
from geep_deploy.names import MODEL


@dataclass
class ExportContext:
    """The temporary root being written, the checkpoint, the spec, and what has been recorded so far."""

    tmp: Path
    ckpt: Any
    spec: ExportSpec
    graphs: list[tuple[str, int | None]]
    bar: Any
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    weights: list[dict[str, Any]] = field(default_factory=list)
    not_validated: list[dict[str, str]] = field(default_factory=list)
    refs: dict[tuple[str, int | None], tuple[list, list]] = field(default_factory=dict)

    def step(self, what: str) -> None:
        self.bar.set_postfix_str(what, refresh=False)
        self.bar.update(1)

    def record(self, path: Path, kind: str, depth: int | None, fmt: str, precision: str,
               validation: dict | None, *, variant: str = "", **extra: Any) -> None:
        """Add one artifact (file entry, I/O spec, validation figures) to the manifest being built; ``fmt`` is its
        file format (`geep_deploy.names`: onnx, tensorrt plan, torch weights), not the backend that runs it."""
        m = self.ckpt.model
        inputs, outputs = ({}, {}) if kind == MODEL else io_spec(kind, m.shape.hidden_size, m.num_labels)
        self.artifacts.append({"kind": kind, "depth": depth, "format": fmt, "precision": precision,
                               "variant": variant, **file_entry(self.tmp, path), "inputs": inputs,
                               "outputs": outputs, "validation": validation, **extra})

    def skip_validation(self, path: Path, reason: str) -> None:
        self.not_validated.append({"file": path.relative_to(self.tmp).as_posix(), "reason": reason})
