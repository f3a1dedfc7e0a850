"""Writing ``manifest.json``: file entries with their checksums (the layout is documented in ``runtime.manifest``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.manifest import MANIFEST, SELF_HASH, manifest_digest, sha256_file


def file_entry(root: Path, path: Path, **extra: Any) -> dict[str, Any]:
    """``{"file": relative posix path, "sha256", "bytes", **extra}`` for a file under ``root``."""
    return {"file": path.relative_to(root).as_posix(), "sha256": sha256_file(path), "bytes": path.stat().st_size,
            **extra}


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` with its own checksum (``manifest_sha256``), so a hand edit fails at load."""
    p = root / MANIFEST
    loaded = json.loads(json.dumps(manifest, allow_nan=False))  # the digest covers what a reader will load
    body = {**loaded, SELF_HASH: manifest_digest(loaded)}
    p.write_text(json.dumps(body, indent=2, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8")
    return p
