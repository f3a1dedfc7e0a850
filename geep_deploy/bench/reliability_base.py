"""The hostile harness's workspace and case runners (issues 15 and 25), shared by its case builders
(`geep_deploy.bench.reliability_inputs`, `geep_deploy.bench.reliability_cases`) and `geep_deploy.bench.reliability`.

A case ends as one of ``OUTCOMES``; the ``BAD`` ones must never happen (see ``bench/reliability.py``).
"""

from __future__ import annotations

import contextlib
import io
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.errors import GeepError

OUTCOMES = ("clean", "correct", "traceback", "silent_wrong", "data_lost", "hang")
BAD = ("traceback", "silent_wrong", "data_lost", "hang")
TEXTS = ["a gorgeous , witty , seductive movie .", "bad", "it never fails to engage us .", "dull and boring"]


# -- the workspace: checkpoint, data, exit table, export ------------------------------------------------------
def build_workspace(d: Path) -> dict[str, Path]:
    """A tiny random-weight checkpoint, a toy dataset, a random exit table and an export of them."""
    import torch

    from export.bundle import export_checkpoint
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.checkpoint import Checkpoint, save_checkpoint
    from geep_deploy.config import BertShape
    from geep_deploy.data import load_split
    from geep_deploy.encoding import TextEncoder
    from geep_deploy.model import ExitBert
    from runtime.predictor import build_predictor

    torch.manual_seed(0)
    shape = BertShape(vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=128)
    ckpt = Checkpoint(model=ExitBert(shape, 2).eval(), method="geep", label_names=["negative", "positive"],
                      tokenizer_json=load_backbone_dir().tokenizer_json, max_len=64)
    save_checkpoint(ckpt, d / "tiny.pt")
    data = d / "data"
    data.mkdir()
    (data / "labels.txt").write_text("negative\npositive\n")
    rng = np.random.default_rng(0)
    for split, n in (("train", 48), ("dev", 16)):
        rows = [f"{int(y)}\tthe film was {'good' if y else 'bad'} and the cast {w}"
                for y, w in zip(rng.integers(0, 2, n), rng.choice(["acted", "sang", "played"], n))]
        (data / f"{split}.tsv").write_text("label\ttext\n" + "\n".join(rows) + "\n")
    enc = TextEncoder(ckpt.tokenizer_json, 64)
    ids = enc.encode(load_split(data, "train").texts_a).ids
    table = build_predictor(ids, rng.integers(1, 4, len(ids)), 3, sorted(enc.special_ids))
    table.checkpoint = ckpt.weights_sha256  # what `geep-deploy calibrate` records
    table = table.save(d / "table.npz")
    export_checkpoint(d / "tiny.pt", d / "export", exit_table=table, segments=False, progress=False)
    return {"dir": d, "ckpt": d / "tiny.pt", "data": data, "table": table, "export": d / "export"}


def reference(export: Path) -> tuple[list[str], list[int], np.ndarray]:
    """Labels, depths and logits of TEXTS from an intact export (what every successful run must reproduce)."""
    from runtime.engine import GeepEngine

    with GeepEngine.load(export, "onnxruntime", threads=1) as eng:
        res = eng.predict(TEXTS)
        return [p.label for p in res.predictions], res.depths.tolist(), res.logits


# -- running one case ----------------------------------------------------------------------------------------------
def run_cli(argv: list[str], expect_ok: bool = False) -> tuple[str, str]:
    """One in-process CLI call: (outcome, first line of stderr or the exception)."""
    from geep_deploy.cli import main

    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 2
    except BaseException as e:  # what the user would see as a traceback
        return "traceback", f"{type(e).__name__}: {e}"[:300]
    text = err.getvalue().strip()
    if "Traceback" in text:
        return "traceback", text.splitlines()[-1][:300]
    if rc == 0:
        return ("correct" if expect_ok else "silent_wrong"), text.splitlines()[-1][:300] if text else "exit 0"
    lines = [ln for ln in text.splitlines() if ln.startswith(("error:", "usage:", "geep-deploy"))]
    return "clean", (lines[-1] if lines else text)[:300]


def run_api(fn: Callable[[], Any], check: Callable[[Any], bool] | None = None) -> tuple[str, str]:
    """One API call: a GeepError is clean; a result is correct if ``check`` accepts it (no check: must fail)."""
    try:
        res = fn()
    except GeepError as e:
        return "clean", f"{type(e).__name__}: {e}"[:300]
    except BaseException as e:
        return "traceback", f"{type(e).__name__}: {e}"[:300] + " | " + traceback.format_exc().splitlines()[-3][:120]
    if check is not None and check(res):
        return "correct", "ran, same answer as the reference"
    return "silent_wrong", f"returned {str(res)[:200]}"


def predict_matches(ref: tuple[list[str], list[int], np.ndarray]) -> Callable[[Any], bool]:
    """Same labels, depths and logits (within 1e-4) as the intact export."""
    return lambda res: ([p.label for p in res.predictions] == ref[0] and res.depths.tolist() == ref[1]
                        and bool(np.allclose(res.logits, ref[2], atol=1e-4)))


def load_and_predict(export: Path, verify: bool = True, backend: str = "onnxruntime") -> Any:
    from runtime.engine import GeepEngine

    with GeepEngine.load(export, backend, threads=1, verify=verify) as eng:
        return eng.predict(TEXTS)


Case = tuple[str, Callable[[], tuple[str, str]]]
