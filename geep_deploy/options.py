"""Options objects: one frozen dataclass per boundary (``runtime.options.LoadOptions``,
``export.options.ExportOptions``, ``export.options.CalibrationOptions``), and what they share.

A boundary takes ``options=`` and/or the options' fields as keywords (``GeepEngine.load(d, threads=1)``); both
become one options object, validated once in its ``__post_init__``, and that object is what is passed on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class Keep:
    """The type of `KEEP`: "leave the stored value as it is" (a knob stored with a probe, say), distinct from None,
    which is a value of its own (``escalate=None`` turns escalation off)."""

    _instance: Keep | None = None

    def __new__(cls) -> Keep:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"

    def __reduce__(self) -> str:  # pickles (Ray, multiprocessing) as the same object
        return "KEEP"


KEEP = Keep()


def build_options(cls: type[T], options: T | None, fields: Mapping[str, Any], where: str) -> T:
    """``options`` with ``fields`` replaced, or ``cls(**fields)`` when no options object is given.

    Raises:
        TypeError: a name that is no field of ``cls`` (the message lists the fields), as for any unknown keyword.
    """
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    bad = sorted(set(fields) - set(known))
    if bad:
        raise TypeError(f"{where} got unknown option(s) {bad}; {cls.__name__} has {known}.")
    if options is None:
        return cls(**fields)
    if not isinstance(options, cls):
        raise TypeError(f"{where} | options must be a {cls.__name__}, got {type(options).__name__}.")
    return dataclasses.replace(options, **fields) if fields else options  # type: ignore[type-var]
