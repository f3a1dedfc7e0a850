"""The ``geep-deploy`` command: one module per subcommand, registered by name and imported lazily.

Each subcommand module defines ``add_args(parser)`` and ``run(args) -> int`` plus a module docstring whose first
line is the one-line help. A module that fails to import (a missing optional extra) becomes a stub that explains
why when run, instead of breaking the whole CLI.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from geep_deploy import __version__
from geep_deploy.errors import GeepError

SUBCOMMANDS = {  # in the order a user runs them
    "demo": "Run the end-to-end demo on the bundled SST-2 slice (GEEP's default vs FastBERT vs full).",
    "train": "Train a model with exits: geep, fastbert, pabee or full.",
    "eval": "Accuracy and FLOPs speed-up of a checkpoint per depth and exit threshold.",
    "calibrate": "Fit the exit predictor (the device's default: the entropy exit's threshold on cpu, the layer-1 probe on cuda; or the token exit table) "
                 "and tune its knob.",
    "export": "Compile a checkpoint into per-depth ONNX/TensorRT engines, exit predictor and manifest.",
    "predict": "Classify texts with an export (prints the accuracy when the input has labels).",
    "serve": "Serve an export over HTTP with request pooling (FastAPI; Ray Serve with --ray).",
    "bench": "Compare accuracy and latency of GEEP and the baselines across backends and precisions.",
}


def _load(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module(f"geep_deploy.cli.{name}"), None
    except ImportError as e:
        return None, f"{type(e).__name__}: {e}"


EXAMPLE = """Example (every command has --help with its own examples):
  geep-deploy demo                                   # train, calibrate, export and bench on the bundled SST-2 slice
  geep-deploy train --data mydata --method geep --out runs/my/geep.pt
  geep-deploy predict --export runs/demo/export_geep --text "a charming journey"
"""


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, ModuleType | None]]:
    parser = argparse.ArgumentParser(
        prog="geep-deploy",
        description="Early-exit BERT with GPU-efficient exit prediction: train, calibrate, export, run, bench.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"geep-deploy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, ModuleType | None] = {}
    for name, help_text in SUBCOMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        mod, err = _load(name)
        p = sub.add_parser(
            name, help=help_text, description=(mod.__doc__ or help_text) if mod else help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if mod is None:
            p.set_defaults(_unavailable=err)
        else:
            mod.add_args(p)
        modules[name] = mod
    return parser, modules


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` (argparse keeps it in the subparsers action's ``choices``)."""
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return a.choices[name]
    raise KeyError(name)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    only = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parser, modules = build_parser(only)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    unavailable = getattr(args, "_unavailable", None)
    if unavailable:
        print(f"geep-deploy {args.command} | not available here: {unavailable}", file=sys.stderr)
        return 2
    mod = modules[args.command]
    assert mod is not None
    try:
        from geep_deploy.cli.checks import check_args

        check_args(args.command, _subparser(parser, args.command), args, mod)
        return int(mod.run(args) or 0)
    except GeepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
