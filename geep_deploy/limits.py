"""Pure checks of numeric options (CLI flags and API arguments), shared so every entry point says the same.

Why: a count that is 0, negative, a float or a string must fail at once with the option's name, never slice from
the end, fall back to a default, or surface later as a ``TypeError`` from deep inside a backend.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from geep_deploy.errors import ConfigError

MIN_MAX_LEN = 8  # [CLS] + [SEP] + a few tokens: what the tokenizer probe needs


def check_count(what: str, value: Any, *, minimum: int = 1, maximum: int | None = None,
                allow_none: bool = False) -> int | None:
    """Return ``value`` as an int if it is an integer (not a bool, float or str) in [minimum, maximum].

    Raises:
        ConfigError: naming ``what``, the value and the allowed range.
    """
    if value is None and allow_none:
        return None
    rng = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{what} must be an integer {rng}, got {value!r} ({type(value).__name__}).")
    v = int(value)
    if v < minimum or (maximum is not None and v > maximum):
        raise ConfigError(f"{what} must be an integer {rng}, got {v}.")
    return v


def check_max_len(what: str, value: Any, position_limit: int) -> int:
    """A sequence length the model can embed: MIN_MAX_LEN..``position_limit`` (its position embeddings)."""
    v = check_count(what, value, minimum=MIN_MAX_LEN, maximum=int(position_limit))
    assert v is not None
    return v


def check_depths(what: str, values: Any, available: list[int] | tuple[int, ...]) -> list[int]:
    """Sorted unique depths, each an integer that is one of ``available``.

    Raises:
        ConfigError: for a non-integer (``None``, ``2.7``), an unknown depth or an empty list.
    """
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ConfigError(f"{what} must be a list of depths from {list(available)}, got {values!r}.")
    out = []
    for v in values:
        d = check_count(what, v, minimum=1)
        if d not in available:
            raise ConfigError(f"{what}: depth {d} is not in the export, which has {list(available)}.")
        out.append(d)
    if not out:
        raise ConfigError(f"{what} is empty; give depths from {list(available)}.")
    return sorted(set(out))


@dataclass(frozen=True)
class Range:
    """Allowed values of one numeric flag: ``lo``..``hi`` (None: unbounded); ``lo_open`` excludes ``lo``."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False

    def contains(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or v <= self.hi

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f" in ({self.lo:g}, {self.hi:g}]" if self.lo_open else f" in {self.lo:g}..{self.hi:g}"
        if self.lo is not None:
            return f" {'>' if self.lo_open else '>='} {self.lo:g}"
        return f" <= {self.hi:g}" if self.hi is not None else ""


def check_number(what: str, value: Any, rng: Range, integer: bool = False) -> None:
    """``value`` must be a real (integer, if ``integer``) finite number in ``rng``; bools and strings are not
    numbers, and NaN/infinity never pass.

    Raises:
        ConfigError: naming ``what``, the allowed range and the value.
    """
    kind = "an integer" if integer else "a finite number"
    ok = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
    ok = ok and (isinstance(value, numbers.Integral) or math.isfinite(value)) and rng.contains(value)
    if not ok:
        raise ConfigError(f"{what} must be {kind}{rng.describe()}, got {value!r}.")
