"""The ``ckpt.pt`` file: weights plus everything needed to rebuild the model without the backbone directory.

A dict of tensors and plain values, loadable with ``torch.load(..., weights_only=True)``: format tag and version,
method and hyper-parameters, backbone shape, label names, tokenizer JSON, max length, training figures.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from geep_deploy.atomic import atomic_path
from geep_deploy.config import BertShape
from geep_deploy.errors import CheckpointError, GeepError
from geep_deploy.model import ExitBert

FORMAT = "geep-deploy-checkpoint"
FORMAT_VERSION = 2  # 2: "sha256" over the content, verified on load
METHODS = ("geep", "fastbert", "pabee", "full")


@dataclass
class Checkpoint:
    """A trained model and its metadata."""

    model: ExitBert
    method: str
    label_names: list[str]
    tokenizer_json: str
    max_len: int
    exit_mode: str = "student"
    hparams: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> BertShape:
        return self.model.shape

    @functools.cached_property
    def weights_sha256(self) -> str:
        """The model's identity (``weights_digest``): what calibrate records in the table and the probe."""
        return weights_digest(self.model)

    @property
    def trained_depths(self) -> list[int]:
        """Depths whose classifier was trained: only L for ``full``, every depth otherwise."""
        L = self.model.num_layers
        return [L] if self.method == "full" else list(range(1, L + 1))


def save_checkpoint(ckpt: Checkpoint, path: str | Path) -> Path:
    """Write ``ckpt`` to ``path`` atomically (temporary file, then rename)."""
    if ckpt.method not in METHODS:
        raise CheckpointError(f"checkpoint | unknown method {ckpt.method!r}. Expected one of {METHODS}.")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": ckpt.method,
        "shape": ckpt.shape.to_dict(),
        "num_labels": ckpt.model.num_labels,
        "shared_head": ckpt.model.shared_head,
        "pooling": ckpt.model.pooling,
        "label_names": list(ckpt.label_names),
        "tokenizer_json": ckpt.tokenizer_json,
        "max_len": int(ckpt.max_len),
        "exit_mode": ckpt.exit_mode,
        "hparams": ckpt.hparams,
        "metrics": ckpt.metrics,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in ckpt.model.state_dict().items()},
    }
    payload["sha256"] = content_digest(payload)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def content_digest(payload: dict[str, Any]) -> str:
    """sha256 over every field but ``sha256`` and ``metrics`` (canonical JSON) and every tensor's name, dtype,
    shape and bytes: a flipped bit in the weights, tokenizer or labels changes it."""
    h = hashlib.sha256()
    meta = {k: v for k, v in payload.items() if k not in ("sha256", "state_dict", "metrics")}
    h.update(json.dumps(meta, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8"))
    _hash_tensors(h, payload["state_dict"])
    return h.hexdigest()


def _hash_tensors(h: Any, state_dict: dict[str, torch.Tensor]) -> None:
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"\n{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every tensor of ``model``'s state dict (names, dtypes, shapes, bytes): the checkpoint's
    identity that exit tables and probes record at calibration time, so that an export refuses a table or probe
    fitted on another model (same layer count or not)."""
    h = hashlib.sha256()
    _hash_tensors(h, model.state_dict())
    return h.hexdigest()


def _first_line(e: BaseException, most: int = 200) -> str:
    """The first line of ``e``'s message, cut at a word boundary with an ellipsis when longer than ``most``."""
    lines = str(e).strip().splitlines()
    if not lines:
        return "no message"
    line = lines[0]
    return line if len(line) <= most else line[:most].rsplit(" ", 1)[0] + " ..."


def _read_payload(p: Path) -> dict[str, Any]:
    if p.is_dir():
        raise CheckpointError(f"checkpoint | {p} is a directory; give the checkpoint file (e.g. {p / 'geep.pt'}).")
    if not p.is_file():
        raise CheckpointError(f"checkpoint | {p} does not exist. Train one with `geep-deploy train --out {p}`.")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint | {p} is empty (0 bytes): an interrupted copy or download. Copy it "
                              "again or retrain.")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError,
            IndexError, KeyError, AttributeError, TypeError) as e:
        raise CheckpointError(
            f"checkpoint | {p} cannot be read ({type(e).__name__}: {_first_line(e)}). "
            "The file is truncated, corrupted or not a geep-deploy checkpoint."
        ) from None
    from geep_deploy.safe_io import check_format

    version = check_format(payload, FORMAT, FORMAT_VERSION, what="geep-deploy checkpoint", where=f"checkpoint | {p}",
                           error=CheckpointError)
    if version >= 2 or "sha256" in payload:  # format 1 never had the field: a version edited down is still checked
        try:
            ok = payload.get("sha256") == content_digest(payload)
        except (KeyError, TypeError, AttributeError, RuntimeError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"checkpoint | {p} is corrupted: its content does not match the sha256 stored "
                                  "at save time (flipped bits in the weights, tokenizer or labels). Copy it again "
                                  "or retrain.")
    return payload


def _check_metadata(payload: dict[str, Any]) -> None:
    """Types and values of the metadata, and a tokenizer that loads: a file re-signed after an edit (its sha256
    recomputed) fails here, naming the field, instead of deep inside ``eval`` or ``export``."""
    from geep_deploy.encoding import TextEncoder
    from geep_deploy.names import EXIT_MODES

    names, method, max_len = payload["label_names"], payload["method"], payload["max_len"]
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if payload.get("exit_mode", "student") not in EXIT_MODES:
        raise ValueError(f"exit_mode must be one of {EXIT_MODES}, got {payload.get('exit_mode')!r}")
    if (not isinstance(names, list) or len(names) != int(payload["num_labels"])
            or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names)):
        raise ValueError(f"label_names must be {payload['num_labels']} distinct strings, got {names!r}"[:200])
    if isinstance(max_len, bool) or not isinstance(max_len, int):
        raise ValueError(f"max_len must be an integer, got {max_len!r}")
    if not isinstance(payload["tokenizer_json"], str):
        raise ValueError("tokenizer_json must be a string")
    try:
        TextEncoder(payload["tokenizer_json"], max(max_len, 8))
    except GeepError:
        raise
    except Exception as e:  # tokenizers raises a bare Exception for a malformed tokenizer
        raise ValueError(f"its tokenizer does not load ({type(e).__name__}: {str(e)[:150]})") from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and rebuild a checkpoint; every failure names the file and what is wrong."""
    p = Path(path)
    payload = _read_payload(p)
    try:
        shape = BertShape.from_dict(payload["shape"])
        model = ExitBert(shape, int(payload["num_labels"]), shared_head=bool(payload["shared_head"]),
                        pooling=str(payload.get("pooling", "cls")))  # files without the field predate mean pooling
        model.load_state_dict(payload["state_dict"], strict=True)
        ckpt = Checkpoint(
            model=model,
            method=str(payload["method"]),
            label_names=list(payload["label_names"]),
            tokenizer_json=str(payload["tokenizer_json"]),
            max_len=int(payload["max_len"]),
            exit_mode=str(payload.get("exit_mode", "student")),
            hparams=dict(payload.get("hparams", {})),
            metrics=dict(payload.get("metrics", {})),
        )
        _check_metadata(payload)
    except (KeyError, RuntimeError, TypeError, ValueError, GeepError) as e:
        raise CheckpointError(f"checkpoint | {p} is inconsistent: {type(e).__name__}: {e}"[:500]) from None
    bad = [k for k, v in payload["state_dict"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"checkpoint | {p} holds NaN/inf weights in {len(bad)} tensors (first {bad[0]}); "
                              "every prediction would be garbage. Training diverged or the file is damaged.")
    model.eval()
    return ckpt
