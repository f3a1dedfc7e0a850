"""The CLI contract: --version, --help on every subcommand, and clear errors instead of tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from geep_deploy import __version__
from geep_deploy.cli import SUBCOMMANDS, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


@pytest.mark.parametrize("cmd", sorted(SUBCOMMANDS))
def test_every_command_has_help_with_an_example(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "Example" in out and f"geep-deploy {cmd}" in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2 and "train" in capsys.readouterr().out


def test_user_errors_are_one_line_not_tracebacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt"), "--data", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint |") and "does not exist" in err and "Traceback" not in err
    assert main(["train", "--data", str(tmp_path / "data"), "--method", "geep", "--out", str(tmp_path / "x.pt"),
                 "--exit-set", "a,b"]) == 1
    assert "--exit-set" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_train_with_another_vocabulary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from models import tiny_backbone_dir, write_toy_dataset

    from geep_deploy.checkpoint import load_checkpoint

    data = write_toy_dataset(tmp_path / "toy", rows=16)
    words = "the movie film was and cast acted played sang so it goes good bad great awful".split()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, "好", "电", *[f"zz{i}" for i in range(100)]]) + "\n")
    args = ["train", "--data", str(data), "--method", "geep", "--out", str(tmp_path / "x.pt"), "--epochs", "1",
            "--max-len", "32", "--no-dev", "--backbone", str(tiny_backbone_dir(tmp_path / "bb"))]
    assert main([*args, "--vocab", str(vocab)]) == 0
    n = len(words) + 107
    assert f"{len(words) + 5} of {n} tokens keep a pretrained embedding" in capsys.readouterr().out
    ck = load_checkpoint(tmp_path / "x.pt")
    assert ck.model.embeddings.word_embeddings.weight.shape[0] == n
    weighted = [*args, "--out", str(tmp_path / "w.pt")]  # the last --out wins
    assert main([*weighted, "--distill-weight", "0.3", "--skip-weight", "0.5"]) == 0  # GEEP loss options land
    assert {k: load_checkpoint(tmp_path / "w.pt").hparams["geep"][k] for k in ("distill_weight", "skip_weight")} \
        == {"distill_weight": 0.3, "skip_weight": 0.5}
    vocab.write_text("hello\nworld\n")
    assert main([*args, "--vocab", str(vocab)]) == 1
    assert "special tokens" in capsys.readouterr().err
