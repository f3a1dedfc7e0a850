"""Issue 25, reliability round two: nothing deleted or overwritten that is not ours, no hang, no raw traceback, no
invalid value taken silently. One test (or a few) per defect of the issue, numbered as there.

One tiny export (3 layers, random weights, a random exit table, the probe dispatch's graphs) serves every test;
each test copies it before damaging anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from models import tiny_checkpoint, write_toy_dataset

from export.bundle import export_checkpoint
from export.pipeline import clean_stale_temps
from geep_deploy.cli import main
from geep_deploy.data import load_split
from geep_deploy.encoding import TextEncoder
from runtime.predictor import build_predictor

L = 3


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoint, toy data, exit table (random exits 1..3) and an export without segment graphs."""
    d = tmp_path_factory.mktemp("rel2")
    ckpt = tiny_checkpoint(d / "tiny.pt")
    data = write_toy_dataset(d / "data", rows=32)
    enc = TextEncoder(ckpt.tokenizer_json, ckpt.max_len)
    rows = enc.encode(load_split(data, "train").texts_a).ids
    exits = np.random.default_rng(0).integers(1, L + 1, len(rows))
    table = build_predictor(rows, exits, L, sorted(enc.special_ids)).save(d / "table.npz")
    export_checkpoint(d / "tiny.pt", d / "export", exit_table=table, segments=False, progress=False)
    return {"dir": d, "ckpt": d / "tiny.pt", "data": data, "table": table, "export": d / "export"}


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# -- 1. export clean-up touches only folders the exporter marked as its own ------------------------------------------
@pytest.mark.parametrize("out_name", ["model", "*", "[abc]"])
def test_export_leaves_look_alike_user_folders_alone(ws, tmp_path, capsys, out_name) -> None:
    x = tmp_path / "x"
    mine = [x / ".model.old-backup", x / ".model.tmp-notes", x / ".a.tmp-1", x / ".b.old-2", x / ".*.tmp-zz"]
    for d in mine:
        d.mkdir(parents=True)
        (d / "n.txt").write_text("hi")
    before = _tree(x)
    rc = main(["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(x / out_name), "--quiet"])
    assert rc == 1 and "does not exist" in capsys.readouterr().err
    assert _tree(x) == before
    assert main(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(x / out_name), "--quiet",
                 "--no-segments", "--depths", "3"]) == 0
    assert {k: v for k, v in _tree(x).items() if not k.startswith(out_name)} == before


def test_clean_up_removes_only_marked_folders_and_reports_only_what_is_gone(tmp_path) -> None:
    out = tmp_path / "exp"
    ours = tmp_path / ".exp.tmp-dead"
    ours.mkdir()
    (ours / ".export-pid").write_text("999999999")
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / ".export-pid").write_text("999999999")
    (target / "keep.txt").write_text("mine")
    link = tmp_path / ".exp.tmp-link"
    link.symlink_to(target, target_is_directory=True)
    unmarked_old = tmp_path / ".exp.old-1"
    unmarked_old.mkdir()
    (unmarked_old / "n.txt").write_text("hi")
    removed = clean_stale_temps(out)
    assert removed == [ours] and not ours.exists()
    assert link.is_symlink() and (target / "keep.txt").read_text() == "mine" and unmarked_old.exists()
