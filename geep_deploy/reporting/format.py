"""The formatting every generated docs text shares: percentages, markdown tables, intervals, means over seeds,
runs of a bench and the machine a figure was measured on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

NONE = "–"
"""What a cell shows where there is no figure (not measured, not reached)."""


def pct(x: float | None, unit: str = "%") -> str:
    """A share as a percentage with two decimals (0.8123 -> ``81.23%``; ``unit=""`` where the header names it)."""
    return NONE if x is None else f"{100 * x:.2f}{unit}"


def sci(x: float) -> str:
    """2.6e7 rather than 2.6e+07."""
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def table(head: list[str], rows: list[list[str]], align: str = "-r") -> list[str]:
    """A markdown table. ``align`` has a character per column, ``-`` left and ``r`` right; a short one repeats its
    last character (the default: the first column left, the rest right; ``-``: every column left)."""
    align = align.ljust(len(head), align[-1])
    sep = ["---" if a == "-" else "---:" for a in align[:len(head)]]
    return ["| " + " | ".join(head) + " |", "|" + "|".join(sep) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def slashed(xs: Iterable[float], fmt: str = "{:.2f}") -> str:
    """``1.23 / 1.31``: each bench run's figure, or a figure per depth."""
    return " / ".join(fmt.format(x) for x in xs)


def interval(points: float, low: float, high: float) -> str:
    """A difference in points with its interval: ``+1.23 [+0.30, +2.10]``."""
    return f"{points:+.2f} [{low:+.2f}, {high:+.2f}]"


def gap_text(g: dict[str, Any] | None) -> str:
    """A gap of the suite's summary (``points``, ``low``, ``high``) as an ``interval``."""
    return NONE if g is None else interval(g["points"], g["low"], g["high"])


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def mean_sd(d: dict[str, Any] | None, scale: float = 100.0, fmt: str = "{:.2f}") -> str:
    """``mean ± sd`` over seeds (the sd only with more than one seed)."""
    if not d:
        return NONE
    text = fmt.format(scale * d["mean"])
    return text if d["n"] < 2 else f"{text} ± {fmt.format(scale * d['sd'])}"


def machine(m: dict[str, Any], load: bool = True) -> str:
    """A bench JSON's machine record: CPU, cores, library versions and (with ``load``) the load at the start."""
    cpu = m.get("cpu") or m.get("cpu_model", "?")
    cores = m.get("cpu_count") or m.get("cpu_cores", "?")
    libs = ", ".join(f"{k} {m[k]}" for k in ("torch", "onnxruntime", "numpy") if m.get(k))
    start = m.get("load_average_at_start") if load else None
    return f"{cpu}, {cores} cores; {libs}" + (f"; load average {start[0]:.1f} at start" if start else "")
