"""A tiny export with a real exit table (so served rows go to several depths) for the service tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from models import TEXTS, tiny_checkpoint


def tiny_service_export(root: Path) -> Path:
    """A fp32 ONNX export of the 3-layer random-weight model with an exit table that sends rows to every depth.

    The table is built from `TEXTS` with exit labels 1, 2, 3 in turn (a real table through the real builder, just
    not calibrated: calibration of a random model puts every row at depth L and takes a minute here).
    """
    from export import export_checkpoint
    from geep_deploy.encoding import TextEncoder
    from runtime.predictor import build_predictor

    ckpt = tiny_checkpoint(root / "tiny.pt")
    enc = TextEncoder(ckpt.tokenizer_json, ckpt.max_len).encode(TEXTS)
    exits = np.arange(len(TEXTS)) % 3 + 1
    table = build_predictor(enc.ids, exits, 3, sorted(TextEncoder(ckpt.tokenizer_json, 64).special_ids))
    table.save(root / "exit_table.npz")
    out = root / "export"
    export_checkpoint(root / "tiny.pt", out, exit_table=root / "exit_table.npz", segments=False, progress=False,
                      force=True)
    return out
