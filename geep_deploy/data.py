"""Reading the TSV classification format of ``../shared/data`` and the bundled demo slice.

Format: UTF-8, tab-separated, one header line; single sentences ``label<TAB>text``, pairs
``label<TAB>text_a<TAB>text_b``. Labels are integers indexing ``labels.txt`` (one name per line).
Every malformed row is reported with file, line number and what is wrong.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path

from geep_deploy.errors import DataError

SPLITS = ("train", "dev", "test")
DEMO_DATASET = "sst2_demo"


@dataclass(frozen=True)
class TextDataset:
    """Texts, integer labels and label names of one split."""

    texts_a: list[str]
    texts_b: list[str] | None
    labels: list[int]
    label_names: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_pair(self) -> bool:
        return self.texts_b is not None

    def subset(self, n: int | None) -> TextDataset:
        """The first ``n`` rows (all rows when ``n`` is None); ``n`` < 1 is an error, never a slice from the end."""
        if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
            raise DataError(f"data | a row limit must be an integer >= 1 (or none), got {n!r}.")
        if n is None or n >= len(self):
            return self
        n = int(n)
        return TextDataset(
            self.texts_a[:n], None if self.texts_b is None else self.texts_b[:n], self.labels[:n],
            self.label_names, self.source,
        )


def bundled_data_dir(name: str = DEMO_DATASET) -> Path:
    """Directory of a dataset slice shipped inside the package (the demo's SST-2 slice)."""
    return Path(__file__).resolve().parent / "datasets" / name


def read_text_file(path: Path, what: str = "data") -> str:
    """A UTF-8 text file's content; a leading BOM (Excel, Notepad) is dropped, bad bytes are named by line.

    Raises:
        DataError: the path is a folder, missing, unreadable or not UTF-8 (file, line and byte offset named).
    """
    if path.is_dir():
        raise DataError(f"{what} | {path} is a directory; give a file.")
    if not path.is_file():
        raise DataError(f"{what} | {path} is missing.")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{what} | {path} cannot be read ({e.strerror}).") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{what} | {path}:{line} is not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}). "
                        "Save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).") from None


def read_labels(path: Path) -> list[str]:
    if not path.is_file() and not path.is_dir():
        raise DataError(f"data | {path} is missing. Expected labels.txt with one label name per line.")
    names = [line.strip() for line in read_text_file(path).splitlines() if line.strip()]
    if len(names) < 2:
        raise DataError(f"data | {path} names {len(names)} label(s); a classifier needs at least 2.")
    if len(set(names)) != len(names):
        raise DataError(f"data | {path} repeats a label name.")
    return names


def read_tsv(path: str | Path, label_names: list[str]) -> TextDataset:
    """Read one split; rows must all have the same number of columns (2 single, 3 pair)."""
    p = Path(path)
    lines = read_text_file(p).split("\n")
    if not lines or not lines[0].strip():
        raise DataError(f"data | {p} is empty. Expected a header line such as 'label<TAB>text'.")
    header = lines[0].rstrip("\r").split("\t")
    if header[0] != "label" or len(header) not in (2, 3):
        raise DataError(
            f"data | {p}:1 header is {header!r}. Expected 'label<TAB>text' or 'label<TAB>text_a<TAB>text_b'."
        )
    ncol = len(header)
    texts_a: list[str] = []
    texts_b: list[str] = []
    labels: list[int] = []
    for lineno, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip("\r")
        if not line:
            continue
        cols = line.split("\t")
        if len(cols) != ncol:
            raise DataError(f"data | {p}:{lineno} has {len(cols)} columns, expected {ncol} like the header.")
        try:
            label = int(cols[0])
        except ValueError:
            raise DataError(f"data | {p}:{lineno} label {cols[0]!r} is not an integer.") from None
        if not 0 <= label < len(label_names):
            raise DataError(
                f"data | {p}:{lineno} label {label} is unknown; labels.txt names {len(label_names)} "
                f"labels (0..{len(label_names) - 1})."
            )
        if not cols[1].strip() or (ncol == 3 and not cols[2].strip()):
            raise DataError(f"data | {p}:{lineno} has an empty text field.")
        labels.append(label)
        texts_a.append(cols[1])
        if ncol == 3:
            texts_b.append(cols[2])
    if not labels:
        raise DataError(f"data | {p} has a header but no rows.")
    return TextDataset(texts_a, texts_b if ncol == 3 else None, labels, label_names, str(p))


def load_split(data_dir: str | Path, split: str) -> TextDataset:
    """Read ``DIR/<split>.tsv`` with ``DIR/labels.txt``."""
    if split not in SPLITS:
        raise DataError(f"data | unknown split {split!r}. Expected one of {SPLITS}.")
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"data | {d} is not a directory. Expected a folder with labels.txt and <split>.tsv.")
    return read_tsv(d / f"{split}.tsv", read_labels(d / "labels.txt"))


def available_splits(data_dir: str | Path) -> list[str]:
    d = Path(data_dir)
    return [s for s in SPLITS if (d / f"{s}.tsv").is_file()]
