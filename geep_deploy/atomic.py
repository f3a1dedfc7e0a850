"""Write, then rename: an interrupted write never leaves a half-written file in place of a good one.

Temporary files and folders (``mkstemp``/``mkdtemp``) are created private (0600/0700); what they become is given
the permissions an ordinary ``open``/``mkdir`` would have had under the process umask, so a service account
reading an export or checkpoint is not locked out.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from geep_deploy.errors import ConfigError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask: from /proc on Linux (no side effect); elsewhere set and restored at once, under a lock."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def apply_umask(path: str | Path, *, directory: bool | None = None) -> None:
    """chmod ``path`` (and, for a folder, everything below it) to what ``open``/``mkdir`` would give."""
    mask = current_umask()
    p = Path(path)
    is_dir = p.is_dir() if directory is None else directory
    os.chmod(p, (0o777 if is_dir else 0o666) & ~mask)
    if is_dir:
        for parent, dirs, files in os.walk(p):
            for d in dirs:
                os.chmod(os.path.join(parent, d), 0o777 & ~mask)
            for f in files:
                os.chmod(os.path.join(parent, f), 0o666 & ~mask)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` atomically.

    Example:
        >>> with atomic_path("out.json") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    target = Path(target)
    check_output_file(target, "output")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        apply_umask(tmp, directory=False)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_output_file(target: str | Path, what: str) -> Path:
    """Fail before any long work if ``target`` cannot become a file (a folder is there, or a parent is a file).

    Raises:
        ConfigError: naming ``what`` (e.g. ``train --out``) and the path.
    """
    p = Path(target)
    if p.is_dir():
        raise ConfigError(f"{what} | {p} is a directory; give a file path inside it, e.g. {p / 'out'}.")
    check_parents(p, what)
    return p


def check_parents(p: Path, what: str) -> None:
    """The nearest existing folder above ``p`` must be a writable directory (so ``mkdir -p`` and the write work).

    Raises:
        ConfigError: a parent is a file, or the nearest existing folder is not writable.
    """
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{what} | cannot write {p}: {parent} is a file, not a directory.")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{what} | cannot write {p}: {parent} is not writable.")
            break


# -- exchanging two folders atomically ------------------------------------------------------------------------
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange_paths(a: str | Path, b: str | Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the kernel, libc or filesystem does not offer it, so the caller can fall back.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP if hasattr(errno, "ENOTSUP") else -1):
        return False
    raise OSError(err, os.strerror(err), str(a))


# -- outputs never land on inputs ------------------------------------------------------------------------------
def _real(p: str | Path) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(p))))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # hard links and bind mounts too
    except OSError:
        return False


def check_outputs_apart(what: str, outputs: dict[str, str | Path], inputs: dict[str, str | Path]) -> None:
    """Refuse, before any work, an output that would overwrite an input or land inside an input folder.

    ``calibrate --out ck.pt`` would replace the checkpoint it reads, ``--out DATA/train.tsv`` a data file; an
    output inside an input folder (the data or an export) changes what that folder holds. Paths are compared
    after resolving symlinks and ``..``, and by inode where both exist. Two outputs may not be one file either.

    Args:
        what: the command, for the message.
        outputs: flag -> path it writes (None entries are skipped).
        inputs: flag -> path it reads (a file or a folder; None entries are skipped).

    Raises:
        ConfigError: naming both flags and the path.
    """
    outs = {k: v for k, v in outputs.items() if v is not None and os.fspath(v) != ""}
    ins = {k: v for k, v in inputs.items() if v is not None and os.fspath(v) != ""}
    for oflag, opath in outs.items():
        o = _real(opath)
        for iflag, ipath in ins.items():
            i = _real(ipath)
            if o == i or _same_file(o, i):
                raise ConfigError(f"{what} | {oflag} {opath} is the {iflag} input itself; writing it would destroy "
                                  f"what is being read. Choose another path for {oflag}.")
            if i in o.parents:
                raise ConfigError(f"{what} | {oflag} {opath} lies inside the {iflag} folder {ipath}; outputs never "
                                  f"go into an input folder. Choose a path outside it for {oflag}.")
            if o in i.parents:
                raise ConfigError(f"{what} | the {iflag} input {ipath} lies inside {oflag} {opath}, which would be "
                                  f"replaced. Choose another path for {oflag}.")
    seen: dict[Path, str] = {}
    for oflag, opath in outs.items():
        o = _real(opath)
        if o in seen:
            raise ConfigError(f"{what} | {oflag} and {seen[o]} are the same file {opath}; one would overwrite the "
                              "other. Give them different paths.")
        seen[o] = oflag
