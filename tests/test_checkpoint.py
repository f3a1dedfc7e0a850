"""Checkpoint round trip and clear errors for missing, truncated, foreign and newer files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from models import tiny_checkpoint

from geep_deploy.checkpoint import FORMAT_VERSION, load_checkpoint
from geep_deploy.errors import CheckpointError


def test_round_trip(tmp_path: Path) -> None:
    saved = tiny_checkpoint(tmp_path / "c.pt", method="fastbert", num_labels=3)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.method == "fastbert" and loaded.label_names == saved.label_names
    assert loaded.tokenizer_json == saved.tokenizer_json and loaded.max_len == saved.max_len
    for k, v in saved.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[k], v, rtol=0, atol=0)
    ids = torch.randint(1000, 2000, (2, 6))
    mask = torch.ones_like(ids)
    torch.testing.assert_close(loaded.model(ids, mask, depth=2), saved.model(ids, mask, depth=2))
    # weights_only loading works on the raw file too
    assert torch.load(tmp_path / "c.pt", weights_only=True)["format_version"] == FORMAT_VERSION


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(tmp_path: Path) -> None:
    tiny_checkpoint(tmp_path / "c.pt")
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupted"):
        load_checkpoint(tmp_path / "t.pt")


def test_foreign_files(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(2)}, tmp_path / "f.pt")
    with pytest.raises(CheckpointError, match="not a geep-deploy checkpoint"):
        load_checkpoint(tmp_path / "f.pt")
    (tmp_path / "r.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "r.pt")
    (tmp_path / "t.pt").write_text("a text file renamed .pt\n" * 20)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "t.pt")
    said = str(e.value)  # torch's long reason is cut at a word, marked, and the sentence after it is whole
    assert "cannot be read" in said and said.endswith("The file is truncated, corrupted or not a geep-deploy checkpoint.")
    from geep_deploy.checkpoint import _first_line

    long = RuntimeError("PytorchStreamReader failed reading zip archive: " + "word " * 60 + "\nsecond line")
    cut = _first_line(long)
    assert cut.endswith("word ...") and len(cut) <= 204 and "second" not in cut
    assert _first_line(RuntimeError("short")) == "short" and _first_line(RuntimeError("")) == "no message"


def test_newer_version_and_inconsistent(tmp_path: Path) -> None:
    tiny_checkpoint(tmp_path / "c.pt")
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    torch.save({**payload, "format_version": FORMAT_VERSION + 1}, tmp_path / "n.pt")
    with pytest.raises(CheckpointError, match="Upgrade geep-deploy"):
        load_checkpoint(tmp_path / "n.pt")
    sd = dict(payload["state_dict"])
    sd.pop("heads.0.dense.weight")
    v1 = {k: v for k, v in payload.items() if k != "sha256"}  # format 1 had no checksum
    torch.save({**v1, "format_version": 1, "state_dict": sd}, tmp_path / "i.pt")
    with pytest.raises(CheckpointError, match="inconsistent"):
        load_checkpoint(tmp_path / "i.pt")


def test_save_is_atomic(tmp_path: Path) -> None:
    good = tiny_checkpoint(tmp_path / "c.pt")
    before = (tmp_path / "c.pt").read_bytes()
    good.method = "unknown"
    from geep_deploy.checkpoint import save_checkpoint

    with pytest.raises(CheckpointError, match="unknown method"):
        save_checkpoint(good, tmp_path / "c.pt")
    assert (tmp_path / "c.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
