"""Calibration end to end on the tiny random checkpoint: API, CLI, budget logic and the `full` refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export.calibration import calibrate_checkpoint, choose
from geep_deploy.checkpoint import load_checkpoint
from geep_deploy.cli import main
from geep_deploy.data import load_split
from geep_deploy.errors import ConfigError
from runtime.predictor import ExitPredictor

TEXTS = [
    "a gripping , beautifully acted film", "dull and far too long", "the best movie of the year",
    "i hated every minute of it", "charming , funny and smart", "a mess from start to finish",
    "the plot goes nowhere", "wonderful performances all round", "not worth the ticket",
    "an instant classic", "boring characters and a silly ending", "moving and very well made",
]


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "labels.txt").write_text("negative\npositive\n")
    rows = "\n".join(f"{i % 2}\t{t}" for i, t in enumerate(TEXTS))
    (d / "train.tsv").write_text("label\ttext\n" + rows + "\n")
    (d / "dev.tsv").write_text("label\ttext\n" + "\n".join(rows.split("\n")[:8]) + "\n")
    return d


def test_calibrate_api_end_to_end(tiny_ckpt_path: Path, data_dir: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(tiny_ckpt_path)
    calib, dev = load_split(data_dir, "train"), load_split(data_dir, "dev")
    res = calibrate_checkpoint(ckpt, calib, dev, progress=False, batch_size=4)
    L = ckpt.model.num_layers
    from export.calibration import DEFAULT_QUANTILES

    assert len(res.curve) == len(DEFAULT_QUANTILES) * 3 and res.figures["calib_rows"] == 12 and res.figures["dev_rows"] == 8
    full = res.figures["full_accuracy"]
    assert res.chosen["target_met"] and res.chosen["accuracy"] >= full - 0.005
    # q = 1.0 always runs depth L (the prior has mass at every depth), so it reproduces depth L's accuracy
    assert all(c["mean_depth"] == L and c["accuracy"] == full for c in res.curve if c["quantile"] == 1.0)
    assert res.chosen["flops_speedup"] == max(c["flops_speedup"] for c in res.curve if c["accuracy"] >= full - 0.005)
    p = res.predictor
    assert (p.quantile, p.margin) == (res.chosen["quantile"], res.chosen["margin"])
    p.save(tmp_path / "t.npz")
    q = ExitPredictor.load(tmp_path / "t.npz")
    assert q.calibration["chosen"]["quantile"] == p.quantile and len(q.calibration["curve"]) == len(res.curve)
    assert 0 <= q.calibration["dev_within_one_layer"] <= 1 and q.calibration["table_keys"] > 20


def test_target_speedup_and_entropy_rule(tiny_ckpt_path: Path, data_dir: Path) -> None:
    ckpt = load_checkpoint(tiny_ckpt_path)
    calib, dev = load_split(data_dir, "train"), load_split(data_dir, "dev")
    res = calibrate_checkpoint(ckpt, calib, dev, rule="entropy", target_speedup=1.2, progress=False, batch_size=8)
    assert res.figures["tau"] == 0.3 and res.figures["mode"] == "target_speedup"
    # random heads are near-uniform: no row's entropy gets below 0.3, every label is depth L, 1.2x is unreachable,
    # and calibration says so instead of pretending
    assert max(c["flops_speedup"] for c in res.curve) == 1.0
    assert res.chosen["target_met"] is False and res.chosen["flops_speedup"] == 1.0
    # (choose() meeting a reachable target is covered by test_choose_logic)


def test_choose_logic() -> None:
    curve = [
        {"quantile": 0.5, "margin": 0, "accuracy": 0.80, "flops_speedup": 2.0, "mean_depth": 2},
        {"quantile": 0.8, "margin": 0, "accuracy": 0.897, "flops_speedup": 1.5, "mean_depth": 3},
        {"quantile": 1.0, "margin": 0, "accuracy": 0.90, "flops_speedup": 1.0, "mean_depth": 6},
    ]
    assert choose(curve, 0.90, 0.5, None)["quantile"] == 0.8
    assert choose(curve, 0.90, 0.0, None)["quantile"] == 1.0
    assert choose(curve, 0.90, 0.5, 1.8)["quantile"] == 0.5
    missed = choose(curve, 0.90, 0.5, 3.0)
    assert missed["quantile"] == 0.5 and missed["target_met"] is False


def test_cli_writes_table_and_prints_curve(tiny_ckpt_path: Path, data_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.npz"
    rc = main(["calibrate", "--checkpoint", str(tiny_ckpt_path), "--data", str(data_dir), "--out", str(out),
               "--max-calib", "10", "--batch-size", "4", "--predictor", "table"])
    captured = capsys.readouterr()
    text = captured.out
    assert rc == 0 and out.is_file()
    assert "dev curve (8 rows" in text and "chosen: quantile" in text and " *" in text
    assert "recommendation: export this table" in text
    assert "--max-drop 0.5 points is smaller than one of the 8 tuning rows (12.50 points)" in captured.err
    p = ExitPredictor.load(out)
    assert p.calibration["calib_rows"] == 10
    assert p.predict([np.array([101, 2307, 102])]).shape == (1,)


def test_full_checkpoint_is_refused(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from models import tiny_checkpoint

    tiny_checkpoint(tmp_path / "full.pt", method="full")
    ckpt = load_checkpoint(tmp_path / "full.pt")
    with pytest.raises(ConfigError, match="method 'full'"):
        calibrate_checkpoint(ckpt, load_split(data_dir, "train"), load_split(data_dir, "dev"), progress=False)
    rc = main(["calibrate", "--checkpoint", str(tmp_path / "full.pt"), "--data", str(data_dir),
               "--out", str(tmp_path / "x.npz")])
    assert rc == 1 and "Train with --method geep" in capsys.readouterr().err


def test_without_dev_tsv_part_of_train_is_held_out(tiny_ckpt_path: Path, data_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    data = tmp_path / "nodev"
    shutil.copytree(data_dir, data)
    (data / "dev.tsv").unlink()
    out = tmp_path / "t.npz"
    rc = main(["calibrate", "--checkpoint", str(tiny_ckpt_path), "--data", str(data), "--out", str(out),
               "--batch-size", "8", "--predictor", "table"])  # the probe needs 20 calibration rows; these are few
    captured = capsys.readouterr()
    n = len(load_split(data, "train"))
    held = round(0.2 * n)
    assert rc == 0 and out.is_file(), captured.err
    assert f"no dev.tsv in {data}: holding out the last {held} of {n} train rows" in captured.err
    assert ExitPredictor.load(out).calibration["calib_rows"] == n - held
    assert "recommendation: export this table" in captured.out
