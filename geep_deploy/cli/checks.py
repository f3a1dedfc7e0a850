"""The checks every subcommand's arguments get in one place, after parsing and before any work.

- Numeric flags: every ``int``/``float`` flag of every subcommand is listed in ``FLAG_RANGES`` with its range
  (a test fails when a new numeric flag is added without one). A value outside it, NaN or infinity is a
  ``ConfigError`` naming the flag: ``serve --max-wait-ms nan`` never starts a server that cannot answer, and
  ``serve --port 99999`` is not an ``OverflowError`` from the socket layer.
- Paths: an output may not be an input (``calibrate --checkpoint ck.pt --out ck.pt``), lie inside an input folder
  (``--out DATA/train.tsv``) or be another output (``geep_deploy.atomic.check_outputs_apart``). Which flags
  read and which write is declared in ``INPUT_FLAGS``/``OUTPUT_FLAGS``; a subcommand module with outputs derived
  from others (calibrate's probe next to its table) adds them with ``derived_outputs(args)``.
- Rules between a subcommand's flags (calibrate's probe flags need ``--predictor probe``) live in that module's
  ``check_flags(args)``, run here too, so every ``--help`` example can be checked without running it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

from geep_deploy.limits import Range, check_number

COUNT = Range(1)
SHARE = Range(0, 1)
WEIGHT = Range(0, 1e3)
RATE = Range(0, 10, lo_open=True)
SECONDS = Range(0, 3600, lo_open=True)

# dest -> range; one meaning per name across subcommands (``--batch-size`` is rows per call everywhere)
FLAG_RANGES: dict[str, Range] = {
    "batch_size": COUNT, "batch_sizes": COUNT, "repeats": COUNT, "threads": Range(1, 1024), "max_rows": COUNT,
    "max_calib": COUNT, "max_train": COUNT, "train_rows": COUNT, "pool_rows": COUNT, "epochs": COUNT, "distill_epochs": COUNT, "max_batch": COUNT,
    "depth": COUNT, "max_queue": COUNT, "workers": Range(1, 1024), "engine_batch": COUNT, "max_chars": COUNT,
    "replicas": COUNT, "max_body_kb": Range(1, 1 << 20), "max_connections": Range(1, 1 << 20),
    # checked against the model's position limit once the checkpoint is read (geep_deploy.limits.check_max_len)
    "max_len": Range(),
    "tau": SHARE, "max_drop": Range(0, 100), "target_speedup": Range(1), "max_disagree": SHARE,
    "confidence": Range(0, 1, lo_open=True),
    "port": Range(0, 65535), "max_wait_ms": Range(0, 60_000), "graceful_timeout": Range(0, 3600),
    "header_timeout": SECONDS, "body_timeout": SECONDS,
    "lr": RATE, "head_lr": RATE, "embed_lr": RATE, "seed": Range(0, 2**32 - 1), "temperature": Range(0, 1e3, True),
    "student_ce_weight": WEIGHT, "distill_warmup": SHARE, "distill_weight": WEIGHT, "skip_weight": WEIGHT,
}

INPUT_FLAGS = ("checkpoint", "data", "export", "backbone", "vocab", "input", "exit_table", "calib_data", "probe",
               "teacher")
OUTPUT_FLAGS = ("out", "json", "plot", "probe_out")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def numeric_dests(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """dest -> is-integer for every numeric flag of ``parser`` (``type=int``/``float`` or a list of ints)."""
    out = {}
    for a in parser._actions:  # argparse keeps no public list of a parser's actions
        kind = getattr(a.type, "numeric_kind", a.type)
        if kind in (int, float):
            out[a.dest] = kind is int
    return out


def check_args(command: str, parser: argparse.ArgumentParser, args: argparse.Namespace,
               module: ModuleType | None = None) -> None:
    """Every numeric flag in its range, and no output on an input (see the module docstring).

    Raises:
        ConfigError: for the first flag that is out of range, or an output that would overwrite an input.
    """
    for dest, integer in numeric_dests(parser).items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        rng = FLAG_RANGES.get(dest, Range())
        for v in value if isinstance(value, list) else [value]:
            check_number(f"{command} | {_flag(dest)}", v, rng, integer)
    outputs = {_flag(d): getattr(args, d) for d in OUTPUT_FLAGS if isinstance(getattr(args, d, None), (str, Path))}
    derived = getattr(module, "derived_outputs", None)
    if derived is not None:
        outputs.update(derived(args))
    inputs = {_flag(d): getattr(args, d) for d in INPUT_FLAGS if isinstance(getattr(args, d, None), (str, Path))}
    for item in getattr(args, "baseline_export", None) or []:  # bench NAME=DIR
        if isinstance(item, str) and "=" in item:
            inputs[f"--baseline-export {item.split('=', 1)[0]}"] = item.split("=", 1)[1]
    from geep_deploy.atomic import check_outputs_apart

    check_outputs_apart(command, outputs, inputs)
    own = getattr(module, "check_flags", None)  # a subcommand's own rules between its flags
    if own is not None:
        own(args)
