"""Writing ``manifest.json``: file entries with their checksums (the layout is documented in ``runtime.manifest``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.manifest import MANIFEST, sha256_file


def file_entry(root: Path, path: Path, **extra: Any) -> dict[str, Any]:
    """``{"file": relative posix path, "sha256", "bytes", **extra}`` for a file under ``root``."""
    return {"file": path.relative_to(root).as_posix(), "sha256": sha256_file(path), "bytes": path.stat().st_size,
            **extra}


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    p = root / MANIFEST
    p.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return p
