"""The retrain check: which tensors of two checkpoints differ, and clear errors when nothing is cached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geep_deploy.errors import ConfigError
from geep_deploy.suite.datasets import parse_datasets
from geep_deploy.suite.retrain_check import compare_weights, retrain_check
from geep_deploy.suite.run import SuiteConfig

ROOT = Path(__file__).resolve().parents[1]


def test_identical_weights_compare_equal() -> None:
    a = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}
    out = compare_weights(a, {k: v.clone() for k, v in a.items()})
    assert out == {"tensors": 2, "differ": [], "max_abs_diff": 0.0, "identical": True}


def test_a_changed_value_a_missing_tensor_and_a_new_shape_are_named() -> None:
    a = {"w": torch.zeros(2, 3), "b": torch.zeros(3), "gone": torch.ones(1), "s": torch.zeros(2)}
    b = {"w": torch.zeros(2, 3), "b": torch.tensor([0.0, 0.25, 0.0]), "s": torch.zeros(3), "new": torch.ones(1)}
    out = compare_weights(a, b)
    assert out["differ"] == ["b", "gone", "new", "s"] and out["tensors"] == 5
    assert out["max_abs_diff"] == pytest.approx(0.25) and not out["identical"]


def test_a_one_ulp_change_is_a_difference() -> None:
    a = torch.tensor([1.0])
    b = torch.nextafter(a, torch.tensor([2.0]))
    out = compare_weights({"x": a}, {"x": b})
    assert out["differ"] == ["x"] and 0 < out["max_abs_diff"] < 1e-6


def test_nothing_cached_is_a_clear_error(tmp_path: Path) -> None:
    spec = parse_datasets("weibo")[0]
    cfg = SuiteConfig(datasets=[spec], data_root=tmp_path, work=tmp_path / "work")
    with pytest.raises(ConfigError, match="nothing to compare with.*weibo seed 43"):
        retrain_check(cfg, spec, 43, "fastbert", tmp_path / "scratch")
    with pytest.raises(ConfigError, match="unknown method 'deebert'"):
        retrain_check(cfg, spec, 43, "deebert", tmp_path / "scratch")


def test_the_script_exits_2_naming_what_is_missing(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "bench/retrain_check.py", "--dataset", "weibo", "--seed", "43", "--method",
                          "full", "--work", str(tmp_path / "w"), "--scratch", str(tmp_path / "s"),
                          "--out", str(tmp_path / "out.json")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "full.pt" in run.stderr and not (tmp_path / "out.json").exists()
