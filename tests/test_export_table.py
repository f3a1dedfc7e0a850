"""The exit table inside an export: built from --calib-data, copied from --exit-table, checked against L."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export import export_checkpoint, load_export
from geep_deploy.data import bundled_data_dir
from geep_deploy.errors import ExportError
from runtime.manifest import sha256_file


def _small_data(tmp: Path, n_train: int = 48, n_dev: int = 32) -> Path:
    src = bundled_data_dir()
    d = tmp / "data"
    d.mkdir()
    (d / "labels.txt").write_text((src / "labels.txt").read_text())
    for split, n in (("train", n_train), ("dev", n_dev)):
        lines = (src / f"{split}.tsv").read_text().splitlines()
        (d / f"{split}.tsv").write_text("\n".join(lines[: n + 1]) + "\n")
    return d


def test_calib_data_builds_table_and_copy_roundtrips(tiny_ckpt_path: Path, tmp_path: Path) -> None:
    from runtime.predictor import ExitPredictor

    b = export_checkpoint(tiny_ckpt_path, tmp_path / "a", calib_data=_small_data(tmp_path), depths="1",
                          segments=False, progress=False)
    entry = b.manifest["exit_table"]
    assert b.exit_table is not None and b.exit_table.is_file()
    pred = ExitPredictor.load(b.exit_table)
    assert pred.num_layers == 3
    assert entry["predictor"]["quantile"] == pred.quantile and entry["predictor"]["margin"] == pred.margin
    assert "chosen" in entry["calibration"] and entry["calibration"]["curve"]

    c = export_checkpoint(tiny_ckpt_path, tmp_path / "b", exit_table=b.exit_table, depths="1", segments=False,
                          progress=False)
    assert sha256_file(c.exit_table) == sha256_file(b.exit_table)
    assert load_export(tmp_path / "b").manifest["exit_table"]["predictor"] == entry["predictor"]


def test_table_for_other_depth_count_is_rejected(tiny_ckpt_path: Path, tmp_path: Path) -> None:
    from runtime.predictor import build_predictor

    rows = [np.array([101, 2307 + i, 3185, 102]) for i in range(8)]
    table = build_predictor(rows, np.arange(8) % 5 + 1, num_layers=5, special_ids=[0, 101, 102])
    path = table.save(tmp_path / "t5.npz")
    with pytest.raises(ExportError, match="built for 5 layers; the checkpoint has 3"):
        export_checkpoint(tiny_ckpt_path, tmp_path / "x", exit_table=path, depths="1", segments=False,
                          progress=False)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ExportError, match="does not exist"):
        export_checkpoint(tiny_ckpt_path, tmp_path / "x", exit_table=tmp_path / "nope.npz", progress=False)
