"""Issue 25, reliability round two: nothing deleted or overwritten that is not ours, no hang, no raw traceback, no
invalid value taken silently. One test (or a few) per defect of the issue, numbered as there.

One tiny export (3 layers, random weights, a random exit table, the probe dispatch's graphs) serves every test;
each test copies it before damaging anything.
"""

from __future__ import annotations

import shutil
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


# -- 2. an output that resolves to an input (or into the data folder) is refused before any work ---------------------
def test_outputs_that_are_inputs_are_refused_before_any_work(ws, tmp_path, capsys) -> None:
    ck = tmp_path / "ck.pt"
    shutil.copy(ws["ckpt"], ck)
    data = tmp_path / "data"
    shutil.copytree(ws["data"], data)
    (tmp_path / "link.pt").symlink_to(ck)
    before_ck, before_data = ck.read_bytes(), _tree(data)
    c, d = ["--checkpoint", str(ck)], ["--data", str(data)]
    cases = {
        "calibrate --out ck.pt": ["calibrate", *c, *d, "--out", str(ck)],
        "calibrate --out symlink to ck.pt": ["calibrate", *c, *d, "--out", str(tmp_path / "link.pt")],
        "calibrate --out ../ck.pt": ["calibrate", *c, *d, "--out", str(data / ".." / "ck.pt")],
        "calibrate --probe-out ck.pt": ["calibrate", *c, *d, "--out", str(tmp_path / "t.npz"), "--predictor",
                                        "probe", "--probe-out", str(ck)],
        "calibrate --probe-out == --out": ["calibrate", *c, *d, "--out", str(tmp_path / "t.npz"), "--predictor",
                                           "probe", "--probe-out", str(tmp_path / "t.npz")],
        "calibrate --out DATA/train.tsv": ["calibrate", *c, *d, "--out", str(data / "train.tsv")],
        "calibrate --out DATA/new.npz": ["calibrate", *c, *d, "--out", str(data / "new.npz")],
        "eval --json ck.pt": ["eval", *c, *d, "--json", str(ck)],
        "train --out DATA/x.pt": ["train", *d, "--method", "geep", "--out", str(data / "x.pt")],
        "export --out holding the checkpoint": ["export", *c, "--out", str(tmp_path), "--force"],
        "bench --json into the export": ["bench", "--export", str(ws["export"]), *d, "--json",
                                         str(ws["export"] / "manifest.json")],
    }
    for name, argv in cases.items():
        assert main(argv) == 1, name
        err = capsys.readouterr().err
        assert err.startswith("error:") and ("input" in err or "same file" in err), (name, err)
    assert ck.read_bytes() == before_ck and _tree(data) == before_data


# -- 5. every numeric flag of every command: finite and in range, checked in one place --------------------------------
def test_every_numeric_flag_has_a_declared_range() -> None:
    from geep_deploy.cli import SUBCOMMANDS, build_parser
    from geep_deploy.cli.checks import FLAG_RANGES, numeric_dests

    for name in SUBCOMMANDS:
        parser, mods = build_parser(name)
        if mods.get(name) is None:
            continue
        from geep_deploy.cli import _subparser

        missing = set(numeric_dests(_subparser(parser, name))) - set(FLAG_RANGES)
        assert not missing, f"{name}: numeric flags without a range in geep_deploy/cli/checks.py: {missing}"


@pytest.mark.parametrize("argv", [
    ["serve", "--max-wait-ms", "nan", "--fixed-wait"], ["serve", "--max-wait-ms", "inf"],
    ["serve", "--port", "99999"], ["serve", "--port", "-1"], ["serve", "--graceful-timeout", "-5"],
    ["serve", "--graceful-timeout", "nan"], ["calibrate", "--max-drop", "nan"], ["calibrate", "--max-drop", "-1"],
    ["calibrate", "--target-speedup", "inf"], ["calibrate", "--tau", "1.5"], ["train", "--lr", "nan"],
    ["train", "--lr", "0"], ["train", "--temperature", "-1"], ["train", "--distill-warmup", "2"],
    ["bench", "--batch-sizes", "1,0"], ["predict", "--depth", "-2"], ["export", "--max-batch", "0"],
])
def test_numeric_flags_out_of_range_are_refused(ws, tmp_path, capsys, argv) -> None:
    e, c, d = str(ws["export"]), str(ws["ckpt"]), str(ws["data"])
    need = {"serve": ["--export", e], "calibrate": ["--checkpoint", c, "--data", d, "--out", str(tmp_path / "t.npz")],
            "train": ["--data", d, "--method", "geep", "--out", str(tmp_path / "c.pt")],
            "bench": ["--export", e, "--data", d], "predict": ["--export", e, "--text", "good"],
            "export": ["--checkpoint", c, "--out", str(tmp_path / "x")]}[argv[0]]
    assert main([argv[0], *need, *argv[1:]]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and f"{argv[1]} must be" in err, err
    assert not (tmp_path / "t.npz").exists() and not (tmp_path / "x").exists()


# -- 7. a checkpoint's format_version cannot switch its checksum off ---------------------------------------------------
@pytest.mark.parametrize("version", [0, -1, 1, True, 2.0])
def test_checkpoint_version_edits_do_not_skip_the_checksum(ws, tmp_path, capsys, version) -> None:
    import torch

    from geep_deploy.checkpoint import load_checkpoint
    from geep_deploy.errors import CheckpointError

    payload = torch.load(ws["ckpt"], weights_only=True)
    w = payload["state_dict"]["heads.0.dense.weight"].clone()
    w.view(-1)[0] += 1e-3  # one changed value: the stored sha256 no longer matches
    p = tmp_path / "edited.pt"
    torch.save({**payload, "format_version": version, "state_dict": {**payload["state_dict"],
                                                                      "heads.0.dense.weight": w}}, p)
    with pytest.raises(CheckpointError, match="format version|corrupted"):
        load_checkpoint(p)
    assert main(["eval", "--checkpoint", str(p), "--data", str(ws["data"])]) == 1
    assert capsys.readouterr().err.startswith("error: checkpoint |")
