"""The CLI contract: --version, --help on every subcommand, and clear errors instead of tracebacks."""

from __future__ import annotations

import re
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
    # a depth the backbone does not have is refused before any data is read (there is none here)
    assert main(["train", "--data", str(tmp_path / "data"), "--method", "geep", "--out", str(tmp_path / "x.pt"),
                 "--exit-set", "9"]) == 1
    assert "--exit-set 9: the backbone (" in (err := capsys.readouterr().err) and "has 6 layers" in err
    assert "must lie in 1..5" in err


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


def test_help_lists_commands_in_the_order_a_user_runs_them_and_examples_keep_line_breaks(
        capsys: pytest.CaptureFixture[str]) -> None:
    main([])
    out = capsys.readouterr().out
    assert [c for c in SUBCOMMANDS] == ["demo", "train", "eval", "calibrate", "export", "predict", "serve", "bench"]
    at = [re.search(rf"^ +{c}\b", out, re.M).start() for c in SUBCOMMANDS]
    assert at == sorted(at), out
    for cmd in SUBCOMMANDS:
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = capsys.readouterr().out
        example = text[text.index("Example"):]
        assert "../shared" not in example, cmd
        for line in example.splitlines():  # a continued command ends its line with one backslash, then breaks
            assert not line.rstrip().endswith("\\\\") and " \\ " not in line, (cmd, line)
            assert "    --" not in line.strip(), (cmd, line)  # a continuation joined onto its command line


def test_train_teacher_must_be_a_full_checkpoint_for_fastbert(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from models import tiny_checkpoint, write_toy_dataset

    data = write_toy_dataset(tmp_path / "data", rows=8)
    tiny_checkpoint(tmp_path / "geep.pt", method="geep")
    base = ["train", "--data", str(data), "--out", str(tmp_path / "fb.pt")]
    assert main([*base, "--method", "geep", "--teacher", str(tmp_path / "geep.pt")]) == 1
    assert "--teacher is FastBERT's first stage" in capsys.readouterr().err
    assert main([*base, "--method", "fastbert", "--teacher", str(tmp_path / "geep.pt")]) == 1
    assert "is a `geep` checkpoint; FastBERT's teacher is a `full` one" in capsys.readouterr().err


def _help_examples(cmd: str, capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    """The ``geep-deploy CMD ...`` commands of ``CMD --help``'s examples, continuations joined, comments dropped."""
    import shlex

    with pytest.raises(SystemExit):
        main([cmd, "--help"])
    text = capsys.readouterr().out
    lines, cmds, current = text[text.index("Example"):].splitlines(), [], ""
    for line in lines:
        body = line.split(" #", 1)[0].strip()
        if current:
            current += " " + body.removesuffix("\\")
        elif body.startswith(f"geep-deploy {cmd}"):
            current = body.removesuffix("\\")
        if current and not body.endswith("\\"):
            cmds.append(shlex.split(current)[1:])
            current = ""
    return cmds


@pytest.mark.parametrize("cmd", sorted(SUBCOMMANDS))
def test_every_help_example_passes_the_commands_own_checks(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each example in ``--help`` parses, and its flags pass the checks run before any work (ranges, outputs
    apart from inputs, the subcommand's own rules between flags): an example printed is an example that runs."""
    from geep_deploy.cli import _subparser, build_parser
    from geep_deploy.cli.checks import check_args

    examples = _help_examples(cmd, capsys)
    assert examples, cmd
    parser, modules = build_parser(cmd)
    for argv in examples:
        args = parser.parse_args(argv)
        check_args(cmd, _subparser(parser, cmd), args, modules[cmd])


def test_calibrates_default_output_is_the_devices_default_predictor(capsys: pytest.CaptureFixture[str]) -> None:
    """The first calibrate example's comment names the file the CPU default predictor writes."""
    from geep_deploy.cli import build_parser
    from geep_deploy.cli.calibrate import derived_outputs

    first = _help_examples("calibrate", capsys)[0]
    outputs = derived_outputs(build_parser("calibrate")[0].parse_args(first))
    assert [str(p) for p in outputs.values()] == ["runs/exit_table.entropy.json"]
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    assert "on the CPU also writes runs/exit_table.entropy.json" in capsys.readouterr().out


def test_every_option_with_a_default_says_it_in_its_help() -> None:
    import argparse

    from geep_deploy.cli import _subparser, build_parser

    parser, _ = build_parser()
    silent = []
    for cmd in SUBCOMMANDS:
        for a in _subparser(parser, cmd)._actions:
            no_default = a.default is None or a.default is False or a.default == [] or a.default is argparse.SUPPRESS
            if not a.option_strings or a.required or a.help == argparse.SUPPRESS or no_default:
                continue  # (0 and 0.0 are defaults to state: compared by identity, not equality with False)
            if "default" not in (a.help or "").lower():
                silent.append(f"{cmd} {a.option_strings[-1]}")
    assert silent == []


def test_the_top_level_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "Example" in out and "geep-deploy demo" in out
