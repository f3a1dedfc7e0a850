"""Reading ``manifest.json`` of an export directory: format tag and version, model facts, every file with its sha256.

The compiler writes it (``export.manifest``); the runtime reads it here, so serving needs neither torch nor onnx.

Layout (version 2; version 1 also had ``model.safetensors`` and int8 Q/DQ graphs as precision ``int8_qdq``)::

    {"format": "geep-deploy-export", "format_version": 1, "geep_deploy_version": "...", "created": "...",
     "backbone": {...BertShape...}, "num_labels": 2, "shared_head": false, "label_names": [...],
     "method": "geep", "exit_mode": "student", "max_len": 128, "depths": [1, ..., L],
     "tokenizer": {"file": "tokenizer.json", "sha256": "..."},
     "weights": [{"file": "onnx/fp32/weights.bin", "backend": "onnx", "precision": "fp32", "sha256", "bytes",
                  "tensors"}, ...],
     "artifacts": [{"kind": "depth"|"embed"|"layer"|"model", "depth": 3, "backend": "onnx"|"tensorrt"|"torch",
                    "precision": "fp32", "variant": ""|"qdq", "file": "onnx/fp32/depth3.onnx",
                    "inputs": {name: {"dtype", "shape"}}, "tensors": {state-dict name: {"offset", "dtype",
                    "shape", "transposed"}} (kind "model" only),
                    "outputs": {...}, "sha256": "...", "bytes": 123, "validation": {...} | null}],
     "exit_table": null | {"file", "sha256", "predictor": {"num_layers", "quantile", "margin"}, "calibration": {}},
     "not_validated": [{"file", "reason"}], "tensorrt": {...} | null, "export": {settings, versions, seconds}}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from geep_deploy.errors import ArtifactError

FORMAT = "geep-deploy-export"
FORMAT_VERSION = 2  # 2: torch weights read from onnx/fp32/weights.bin; graph variants
MANIFEST = "manifest.json"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(root: Path) -> dict[str, Any]:
    """Read and version-check ``root/manifest.json``.

    Raises:
        ArtifactError: naming the directory or file when it is missing, not JSON, foreign or too new.
    """
    if not root.is_dir():
        raise ArtifactError(f"export | {root} is not a directory. Create one with `geep-deploy export --out {root}`.")
    p = root / MANIFEST
    if not p.is_file():
        raise ArtifactError(f"export | {p} is missing: {root} is not a geep-deploy export (or an interrupted one).")
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"export | {p} is not valid JSON ({e}). Re-export with --force.") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ArtifactError(f"export | {p} is not a geep-deploy export manifest (format tag {FORMAT!r} missing).")
    v = m.get("format_version")
    if not isinstance(v, int) or v > FORMAT_VERSION or v < 1:
        raise ArtifactError(
            f"export | {p} has format version {v!r}; this geep-deploy reads 1..{FORMAT_VERSION}. "
            "Upgrade geep-deploy or re-export with this version."
        )
    return m


def listed_files(m: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file entry of a manifest that carries a checksum (tokenizer, weights, artifacts, table, caches)."""
    out = [m["tokenizer"], *m.get("weights", []), *m.get("artifacts", [])]
    if m.get("exit_table"):
        out.append(m["exit_table"])
    trt = m.get("tensorrt") or {}
    if trt.get("timing_cache"):
        out.append(trt["timing_cache"])
    return out


def verify_files(root: Path, m: dict[str, Any], check_hash: bool = True) -> None:
    """Check every listed file exists (and matches its sha256).

    Raises:
        ArtifactError: naming the first missing or corrupted file.
    """
    seen: set[str] = set()
    for e in listed_files(m):
        rel = e.get("file")
        if not isinstance(rel, str) or rel in seen:
            continue
        seen.add(rel)
        p = root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ArtifactError(f"export | manifest lists {rel!r}, which is outside {root}.")
        if not p.is_file():
            raise ArtifactError(f"export | {p} is missing (listed in {root / MANIFEST}). Re-export with --force.")
        if check_hash and sha256_file(p) != e.get("sha256"):
            raise ArtifactError(
                f"export | {p} is corrupted: its sha256 differs from the manifest's. Re-export with --force."
            )
