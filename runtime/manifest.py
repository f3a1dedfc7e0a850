"""Reading ``manifest.json`` of an export directory: format tag and version, model facts, every file with its sha256.

The compiler writes it (``export.manifest``); the runtime reads it here, so serving needs neither torch nor onnx.

Layout (version 5; versions 1-4 named each file's format ``backend``, read here as ``format``; version 3 had no
``probe``/``predictor`` and no ``prefix``/``cont`` graphs; version 2 had no ``manifest_sha256``; version 1 also had
``model.safetensors`` and int8 Q/DQ graphs as precision ``int8_qdq``)::

    {"format": "geep-deploy-export", "format_version": 5, "manifest_sha256": "<sha256 of the canonical JSON of
     everything else: sorted keys, no spaces, UTF-8>", "geep_deploy_version": "...", "created": "...",
     "backbone": {...BertShape...}, "num_labels": 2, "shared_head": false, "label_names": [...],
     "method": "geep", "exit_mode": "student", "max_len": 128, "depths": [1, ..., L],
     "tokenizer": {"file": "tokenizer.json", "sha256": "..."},
     "weights": [{"file": "onnx/fp32/weights.bin", "format": "onnx", "precision": "fp32", "sha256", "bytes",
                  "tensors"}, ...],
     "artifacts": [{"kind": "depth"|"embed"|"layer"|"prefix"|"cont"|"model", "depth": 3,
                    "format": "onnx"|"tensorrt"|"torch" (an ONNX graph, a TensorRT plan, the torch weights),
                    "precision": "fp32", "variant": ""|"qdq", "file": "onnx/fp32/depth3.onnx",
                    "inputs": {name: {"dtype", "shape"}}, "tensors": {state-dict name: {"offset", "dtype",
                    "shape", "transposed"}} (kind "model" only),
                    "outputs": {...}, "sha256": "...", "bytes": 123, "validation": {...} | null}],
     "exit_table": null | {"file", "sha256", "predictor": {"num_layers", "quantile", "margin"}, "calibration": {},
                           "guarantee": {...} (optional)},
     "probe": null | {"file": "probe.json", "sha256", "bytes", "params": {"num_layers", "risk", "escalate",
                      "uses_table"}, "guarantee": {...} (optional)},
     "entropy": null | {"threshold", "num_layers", "calibration": {}, "guarantee": {...} (optional)} (the entropy
                exit over the export's own heads; absent before it, still format 5),
     "predictor": "probe" | "table" | "entropy" | null (what GeepEngine dispatches by unless told otherwise),
     "not_validated": [{"file", "reason"}], "tensorrt": {...} | null, "export": {settings, versions, seconds}}

``guarantee`` (optional, any version; from ``calibrate --max-disagree``, see ``runtime.guarantee``):
``{"max_disagree": EPS, "confidence": 1 - DELTA, "delta", "calibration_rows": n, "certified_bound", "knob":
{"risk", "escalate"} | {"quantile", "margin"} | {"tau"} | null, "calibration_disagreement", "flops_speedup", "method",
"message", ...}``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from geep_deploy.errors import ArtifactError
from geep_deploy.names import (
    CONT,
    DEPTH,
    GRAPH_KINDS,
    LAYER,
    MODEL,
    ONNX,
    PREDICTOR_KINDS,
    STUDENT,
    TABLE,
    first_continuation,
)
from geep_deploy.safe_io import UnsafePath, check_format, read_json
from geep_deploy.safe_io import member_path as safe_member
from runtime.guarantee import ENTRY_OF_PREDICTOR, guarantee_problems

FORMAT = "geep-deploy-export"
FORMAT_VERSION = 5  # 2: torch weights read from onnx/fp32/weights.bin; graph variants; 3: manifest_sha256;
# 4: the probe dispatch (probe file, predictor kind, prefix/cont graphs); 5: each file's format is named "format"
FORMAT_KEY_SINCE = 5  # versions before it name each artifact's and weights file's format "backend"
MANIFEST = "manifest.json"
SELF_HASH = "manifest_sha256"  # sha256 of the manifest's canonical JSON without this field (format 3 on)
KINDS = (*GRAPH_KINDS, MODEL)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def manifest_digest(m: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``m`` without its own ``manifest_sha256`` (key order and spacing free)."""
    body = {k: v for k, v in m.items() if k != SELF_HASH}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_manifest(root: Path) -> dict[str, Any]:
    """Read, version-check, checksum-check and schema-check ``root/manifest.json``.

    Raises:
        ArtifactError: naming the directory or file when it is missing, not JSON, foreign, too new, edited
            (its ``manifest_sha256`` differs) or malformed.
    """
    if root.is_file():
        raise ArtifactError(f"export | {root} is a file; give the export folder that `geep-deploy export --out` "
                            f"wrote (the one holding {MANIFEST}).")
    if not root.is_dir():
        raise ArtifactError(f"export | {root} is not a directory. Create one with `geep-deploy export --out {root}`.")
    p = root / MANIFEST
    if not p.exists():
        raise ArtifactError(f"export | {p} is missing: {root} is not a geep-deploy export (or an interrupted one).")
    try:
        m = read_json(member_path(root, MANIFEST))
    except (ValueError, OSError) as e:  # not JSON, too deep or too large (geep_deploy.safe_json), unreadable
        raise ArtifactError(f"export | {p} is not valid JSON ({e}). Re-export with --force.") from None
    v = check_format(m, FORMAT, FORMAT_VERSION, what="geep-deploy export manifest", where=f"export | {p}",
                     error=ArtifactError)
    if v >= 3:
        try:
            digest = manifest_digest(m)
        except ValueError as e:
            raise ArtifactError(f"export | {p} holds a value JSON does not allow ({e}). Re-export with --force.") \
                from None
        if m.get(SELF_HASH) != digest:
            raise ArtifactError(f"export | {p} was changed after export: its content does not match its "
                                f"{SELF_HASH}. Re-export with --force rather than editing the manifest.")
    if v < FORMAT_KEY_SINCE:
        m = upgrade_format_key(m)
    problems = schema_problems(m)
    if problems:
        raise ArtifactError(f"export | {p} is malformed: {'; '.join(problems[:5])}. Re-export with --force.")
    return m


def upgrade_format_key(m: dict[str, Any]) -> dict[str, Any]:
    """A manifest of version 1-4, whose artifacts and weights files named their file format (onnx, tensorrt,
    torch) ``backend``, with that key renamed ``format`` as version 5 writes it (a new dict; the schema check
    follows)."""
    def renamed(entries: Any) -> Any:
        if not isinstance(entries, list):
            return entries  # the schema check names it
        return [{("format" if k == "backend" else k): v for k, v in e.items()} if isinstance(e, dict) else e
                for e in entries]

    return {**m, "weights": renamed(m.get("weights", [])), "artifacts": renamed(m.get("artifacts"))}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _file_problems(where: str, e: Any) -> list[str]:
    if not isinstance(e, dict):
        return [f"{where} must be an object, got {type(e).__name__}"]
    if not isinstance(e.get("file"), str) or not e["file"]:
        return [f"{where}.file must be a relative path"]
    if not isinstance(e.get("sha256"), str):
        return [f"{where}.sha256 must be a string"]
    return []


def _artifact_problems(i: int, a: Any, depths: list[int], num_labels: int, first: int = 2) -> list[str]:
    where = f"artifacts[{i}]"
    out = _file_problems(where, a)
    if out:
        return out
    if a.get("kind") not in KINDS:
        out.append(f"{where}.kind must be one of {list(KINDS)}, got {a.get('kind')!r}")
    for key in ("format", "precision"):
        if not isinstance(a.get(key), str):
            old = key == "format" and "backend" in a
            out.append(f"{where}.{key} must be a string" + (" (format versions 1-4 named it backend)" if old else ""))
    depth, kind = a.get("depth"), a.get("kind")
    if kind in (DEPTH, LAYER, CONT) and not _is_int(depth):
        out.append(f"{where}.depth must be an integer, got {depth!r}")
    if kind in (DEPTH, CONT) and _is_int(depth):
        if depth not in depths or (kind == CONT and depth < first):
            out.append(f"{where}.depth {depth} is not in depths {depths}" + (f" (from {first})" if kind == CONT else ""))
        stem = Path(a["file"]).stem
        if a.get("format") == ONNX and stem != f"{kind}{depth}":
            out.append(f"{where} says {kind} {depth} but its file is {a['file']}")
    for key in ("inputs", "outputs", "tensors"):
        if a.get(key) is not None and not isinstance(a[key], dict):
            out.append(f"{where}.{key} must be an object")
    logits = (a.get("outputs") or {}).get("logits") if isinstance(a.get("outputs"), dict) else None
    if isinstance(logits, dict) and isinstance(logits.get("shape"), list) and logits["shape"]:
        width = logits["shape"][-1]
        if _is_int(width) and width != num_labels:
            out.append(f"{where} outputs {width} logits but the manifest names {num_labels} labels")
    return out


def schema_problems(m: dict[str, Any]) -> list[str]:
    """What is wrong with a manifest's structure (empty: nothing). Pure: checks types, ranges and agreement
    (label count vs the graphs' logits, depths vs the backbone, graph file vs its depth)."""
    out: list[str] = []
    bb = m.get("backbone")
    if not isinstance(bb, dict):
        return ["backbone must be an object"]
    L, pos = bb.get("num_hidden_layers"), bb.get("max_position_embeddings", 512)
    if not _is_int(L) or L < 1:
        return [f"backbone.num_hidden_layers must be a positive integer, got {L!r}"]
    n, names = m.get("num_labels"), m.get("label_names")
    if not _is_int(n) or n < 2:
        out.append(f"num_labels must be an integer >= 2, got {n!r}")
        n = -1
    if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
        out.append("label_names must be a list of strings")
    elif len(names) != n:
        out.append(f"label_names has {len(names)} names but num_labels is {n}")
    elif len(set(names)) != len(names):
        out.append("label_names repeats a name")
    ml = m.get("max_len")
    if not _is_int(ml) or not 8 <= ml <= (pos if _is_int(pos) else 512):
        out.append(f"max_len must be an integer in 8..{pos}, got {ml!r}")
    depths = m.get("depths")
    if (not isinstance(depths, list) or not depths or not all(_is_int(d) and 1 <= d <= L for d in depths)
            or sorted(set(depths)) != depths):
        out.append(f"depths must be a sorted list of distinct integers in 1..{L}, got {depths!r}")
        depths = []
    for key in ("method", "exit_mode"):
        if not isinstance(m.get(key), str):
            out.append(f"{key} must be a string")
    out += _file_problems("tokenizer", m.get("tokenizer"))
    for key in ("exit_table", "probe"):
        if m.get(key) is not None:
            out += _file_problems(key, m[key]) or guarantee_problems(f"{key}.guarantee", m[key].get("guarantee"))
    if m.get("entropy") is not None:
        out += entropy_problems(m["entropy"], L)
    pred = m.get("predictor")
    if pred is not None and pred not in PREDICTOR_KINDS:
        out.append(f"predictor must be one of {list(PREDICTOR_KINDS)} or null, got {pred!r}")
    elif pred is not None and not m.get(ENTRY_OF_PREDICTOR[pred]):
        out.append(f"predictor is {pred!r} but the manifest has no {ENTRY_OF_PREDICTOR[pred]}")
    weights = m.get("weights", [])
    if not isinstance(weights, list):
        out.append("weights must be a list")
    else:
        for i, w in enumerate(weights):
            out += _file_problems(f"weights[{i}]", w)
    arts = m.get("artifacts")
    if not isinstance(arts, list) or not arts:
        out.append("artifacts must be a non-empty list")
    else:
        for i, a in enumerate(arts):
            out += _artifact_problems(i, a, depths, n, first_continuation(m.get("exit_mode", STUDENT)))
    trt = m.get("tensorrt")
    if trt is not None and not isinstance(trt, dict):
        out.append("tensorrt must be an object or null")
    elif trt and trt.get("timing_cache") is not None:
        out += _file_problems("tensorrt.timing_cache", trt["timing_cache"])
    return out


def entropy_problems(e: Any, num_layers: int) -> list[str]:
    """What is wrong with a manifest's ``entropy`` entry (the entropy exit's threshold; empty: nothing)."""
    if not isinstance(e, dict):
        return [f"entropy must be an object or null, got {type(e).__name__}"]
    out = []
    t = e.get("threshold")
    if not (isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 <= t <= 1.0):
        out.append(f"entropy.threshold must be a number in [0, 1], got {t!r}")
    if e.get("num_layers") != num_layers:
        out.append(f"entropy.num_layers must be the backbone's {num_layers}, got {e.get('num_layers')!r}")
    return out + guarantee_problems("entropy.guarantee", e.get("guarantee"))


def listed_files(m: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file entry of a manifest that carries a checksum (tokenizer, weights, artifacts, table, caches)."""
    out = [m["tokenizer"], *m.get("weights", []), *m.get("artifacts", [])]
    for key in ("exit_table", "probe"):
        if m.get(key):
            out.append(m[key])
    trt = m.get("tensorrt") or {}
    if trt.get("timing_cache"):
        out.append(trt["timing_cache"])
    return out


def member_path(root: Path, rel: str) -> Path:
    """``root/rel`` if it is a regular file inside the export once every symlink is resolved
    (``geep_deploy.safe_io.member_path``): the one way a name from a manifest becomes a path the runtime opens.

    Raises:
        ArtifactError: outside the export (absolute, ``..``, a symlink out), missing, or not a regular file.
    """
    try:
        return safe_member(root, rel, "the manifest lists")
    except UnsafePath as e:
        raise ArtifactError(f"export | {e}; an export holds its own regular files. Re-export with --force.") \
            from None
    except OSError:
        raise ArtifactError(f"export | {root / rel} is missing (listed in {root / MANIFEST}). Re-export with "
                            "--force.") from None


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
        p = member_path(root, rel)
        if check_hash and sha256_file(p) != e.get("sha256"):
            raise ArtifactError(
                f"export | {p} is corrupted: its sha256 differs from the manifest's. Re-export with --force."
            )


def predictor_of(manifest: dict[str, Any]) -> str | None:
    """The predictor kind an export dispatches by: the manifest's ``predictor``, else (manifests written before it
    was recorded) the token table when the export has one, else None (a fixed-depth export)."""
    return manifest.get("predictor") or (TABLE if manifest.get("exit_table") else None)
