"""Reading files a user may hand us: names resolved inside their folder, JSON bounded in size and depth.

``member_path(root, rel, what)`` is the one way a name read from a file (a manifest's ``file``, a graph's
external-data ``location``) becomes a path that may be opened: inside ``root`` after every symlink is resolved,
and a regular file (a FIFO would block the reader, a device feed it forever).

JSON (``manifest.json``, ``probe.json``, the exit table's header): Python's ``json`` recurses once per nesting level, so ``'[' * 100000`` raises a raw ``RecursionError``, and a
multi-gigabyte file is read into memory whole. Both limits are checked here, before parsing, and reported as a
``ValueError`` (``JsonLimitError``) that every caller already turns into its own error naming the file. Every
reader of those files goes through ``read_json``/``loads_bounded``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

MAX_DEPTH = 64  # the deepest real manifest nests 6 levels
MAX_BYTES = 64 << 20  # a manifest of thousands of graphs is < 1 MB

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class UnsafePath(ValueError):
    """A name that leads outside its folder, or to something other than a regular file."""


def member_path(root: str | Path, rel: str, what: str = "file") -> Path:
    """``root/rel`` if it is a regular file inside ``root`` once every symlink is resolved.

    Raises:
        UnsafePath: ``rel`` is absolute or climbs out with ``..``, a symlink leads out of ``root``, or the path
            is not a regular file (a directory, FIFO or device). FileNotFoundError: nothing is there.
    """
    root = Path(root)
    if not isinstance(rel, str) or not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise UnsafePath(f"{what} {rel!r}, which is outside {root}")
    p = root / rel
    real, base = p.resolve(), root.resolve()
    if real != base and base not in real.parents:
        raise UnsafePath(f"{p} is a symlink to {real}, outside {root}")
    mode = os.stat(real).st_mode  # FileNotFoundError when missing
    if not stat.S_ISREG(mode):
        raise UnsafePath(f"{p} is not a regular file (a directory, FIFO or device)")
    return p


class JsonLimitError(ValueError):
    """The JSON is nested deeper, or is larger, than a file of ours can be."""


def nesting_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting of ``text`` outside strings (a linear scan, no recursion)."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRINGS.sub('""', text)):
        if m.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_bounded(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` (NaN literals load; callers that need
    finite numbers check them, e.g. ``runtime.probe``).

    Raises:
        JsonLimitError: too deep. ValueError (``json.JSONDecodeError``): not JSON.
    """
    depth = nesting_depth(text)
    if depth > max_depth:
        raise JsonLimitError(f"nested {depth} levels deep; at most {max_depth} allowed")
    return json.loads(text)


def read_json(path: str | Path, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Read a regular UTF-8 JSON file of at most ``max_bytes`` and nesting ``max_depth``.

    Raises:
        JsonLimitError: too large, too deep, or not a regular file (a FIFO would block the read).
        ValueError: not UTF-8 or not JSON. OSError: cannot be opened.
    """
    p = Path(path)
    with open(p, "rb", opener=lambda f, flags: os.open(f, flags | os.O_NONBLOCK)) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise JsonLimitError("is not a regular file")
        if st.st_size > max_bytes:
            raise JsonLimitError(f"is {st.st_size} bytes; at most {max_bytes} allowed")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise JsonLimitError(f"is over {max_bytes} bytes")
    return loads_bounded(data.decode("utf-8"), max_depth)


def check_format(doc: Any, tag: str, newest: int, *, what: str, where: str, error: type[Exception],
                 version_key: str = "format_version", oldest: int = 1) -> int:
    """The one check of a file's format tag and version (exports, exit tables, probes, checkpoints).

    Args:
        doc: the parsed header (a dict, else it is not ours).
        tag: the ``"format"`` value our files carry. newest / oldest: the versions this release reads.
        what: what the file should be (``"geep-deploy exit table"``); where: the message prefix with the path.
        error: the exception to raise. version_key: the header's version field.

    Returns:
        The version.

    Raises:
        error: another or no format tag, or a version that is not an integer in ``oldest..newest``.
    """
    if not isinstance(doc, dict) or doc.get("format") != tag:
        raise error(f"{where} is not a {what} (format tag {tag!r} missing).")
    v = doc.get(version_key)
    if isinstance(v, bool) or not isinstance(v, int) or not oldest <= v <= newest:
        newer = isinstance(v, int) and not isinstance(v, bool) and v > newest
        raise error(f"{where} has format version {v!r}; this geep-deploy reads {oldest}..{newest}"
                    + (". Upgrade geep-deploy, or re-create the file with this version." if newer else
                       ": the file is damaged, edited or from another tool. Re-create it with this version."))
    return v
