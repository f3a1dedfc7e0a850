"""Reading the TSV classification format of ``../shared/data`` and the bundled demo slice.

Format: UTF-8, tab-separated; single sentences ``label<TAB>text``, pairs ``label<TAB>text_a<TAB>text_b``. The
header line (``label<TAB>text`` or ``label<TAB>text_a<TAB>text_b``) is optional: a first line whose first column is
``label`` is the header, any other first line is a row. A label is a name listed in ``labels.txt`` (one name per
line; its line number is the label id) or an id 0..K-1. Without ``labels.txt`` the names are the distinct labels of
``train.tsv`` (ids 0..K-1 in numeric order when every label is an integer, else sorted by name), and ``geep-deploy
train`` writes them to ``labels.txt`` so every later command maps them the same way. Every malformed row is
reported with file, line number and what is wrong.
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


HEADER_NAMES = ("label", "text", "text_a", "text_b")


def _rows_start(p: Path, lines: list[str]) -> tuple[int, int]:
    """(number of columns, index of the first data line): the header is optional (see the module docstring)."""
    if not lines or not lines[0].strip():
        raise DataError(f"data | {p} is empty. Expected rows 'label<TAB>text' (a header line is optional).")
    first = lines[0].rstrip("\r").split("\t")
    if first[0].strip().lower() in HEADER_NAMES:
        if first[0].strip().lower() != "label" or len(first) not in (2, 3):
            raise DataError(f"data | {p}:1 header is {first!r}. Expected 'label<TAB>text' or "
                            "'label<TAB>text_a<TAB>text_b' (or no header: rows start on line 1).")
        return len(first), 1
    if len(first) not in (2, 3):
        raise DataError(f"data | {p}:1 has {len(first)} columns. Expected 'label<TAB>text' or "
                        "'label<TAB>text_a<TAB>text_b'.")
    return len(first), 0


LABELS_TXT = "labels.txt"
MODEL_LABELS = "the model's labels"
"""Where a split's label names came from (``read_tsv``'s ``names_from``): a folder's labels.txt (or train.tsv's
labels), or a checkpoint's or export's own names when the folder has no labels.txt."""
_LABEL_SOURCES = {  # names_from -> (what a known name is, how many it names, what to do about another label)
    LABELS_TXT: ("a name in labels.txt", "labels.txt names",
                 "Add it to labels.txt (one name per line), or delete labels.txt to have the names taken from "
                 "train.tsv."),
    MODEL_LABELS: ("one of the model's labels", "the model's labels are",
                   "The model was trained on these labels only: drop rows with other labels, or give the folder a "
                   "labels.txt that maps them."),
}


def _label_id(p: Path, lineno: int, raw: str, label_names: list[str], ids: dict[str, int],
              names_from: str = LABELS_TXT) -> int:
    """A label given by name (as in labels.txt) or by id; unknown ones say what is known and what to do."""
    name = raw.strip()
    if name in ids:
        return ids[name]
    known, counted, fix = _LABEL_SOURCES[names_from]
    try:
        label = int(name)
    except ValueError:
        shown = ", ".join(label_names[:10]) + (", ..." if len(label_names) > 10 else "")
        raise DataError(f"data | {p}:{lineno} label {raw!r} is neither {known} ({shown}) nor an id "
                        f"0..{len(label_names) - 1}. {fix}") from None
    if not 0 <= label < len(label_names):
        raise DataError(f"data | {p}:{lineno} label {label} is unknown; {counted} {len(label_names)} labels "
                        f"(0..{len(label_names) - 1}).")
    return label


def read_tsv(path: str | Path, label_names: list[str], names_from: str = LABELS_TXT) -> TextDataset:
    """Read one split; rows must all have the same number of columns (2 single, 3 pair). ``names_from`` says where
    ``label_names`` came from, for the error a row with another label gets."""
    p = Path(path)
    lines = read_text_file(p).split("\n")
    ncol, start = _rows_start(p, lines)
    ids = {n: i for i, n in enumerate(label_names)}
    texts_a: list[str] = []
    texts_b: list[str] = []
    labels: list[int] = []
    for lineno, raw in enumerate(lines[start:], start=start + 1):
        line = raw.rstrip("\r")
        if not line:
            continue
        cols = line.split("\t")
        if len(cols) != ncol:
            raise DataError(f"data | {p}:{lineno} has {len(cols)} columns, expected {ncol} like the header.")
        label = _label_id(p, lineno, cols[0], label_names, ids, names_from)
        if not cols[1].strip() or (ncol == 3 and not cols[2].strip()):
            raise DataError(f"data | {p}:{lineno} has an empty text field.")
        labels.append(label)
        texts_a.append(cols[1])
        if ncol == 3:
            texts_b.append(cols[2])
    if not labels:
        raise DataError(f"data | {p} has {'a header but ' if start else ''}no rows.")
    return TextDataset(texts_a, texts_b if ncol == 3 else None, labels, label_names, str(p))


def load_split(data_dir: str | Path, split: str, known_labels: list[str] | None = None) -> TextDataset:
    """Read ``DIR/<split>.tsv`` against ``DIR/labels.txt``; without it, against ``known_labels`` (the names a
    checkpoint or export was trained on) when given, else the labels of ``DIR/train.tsv``."""
    if split not in SPLITS:
        raise DataError(f"data | unknown split {split!r}. Expected one of {SPLITS}.")
    d = Path(data_dir)
    if not d.is_dir():
        raise DataError(f"data | {d} is not a directory. Expected a folder with labels.txt and <split>.tsv.")
    if known_labels is not None and not (d / LABELS_TXT).exists():
        return read_tsv(d / f"{split}.tsv", list(known_labels), MODEL_LABELS)
    return read_tsv(d / f"{split}.tsv", label_names(d))


def label_names(data_dir: str | Path) -> list[str]:
    """``DIR/labels.txt``, or without it the distinct labels of ``DIR/train.tsv`` (see the module docstring)."""
    d = Path(data_dir)
    if (d / "labels.txt").exists() or not (d / "train.tsv").is_file():
        return read_labels(d / "labels.txt")
    return labels_from_data(d / "train.tsv")


def labels_from_data(path: Path) -> list[str]:
    """The distinct labels of a TSV file: ids in numeric order when every label is an integer, else sorted."""
    lines = read_text_file(path).split("\n")
    _, start = _rows_start(path, lines)
    names = {ln.split("\t", 1)[0].strip() for ln in lines[start:] if ln.strip()}
    if not names:
        raise DataError(f"data | {path} has {'a header but ' if start else ''}no rows.")
    if all(n.lstrip("-").isdigit() for n in names):
        ids = sorted({int(n) for n in names})
        if ids[0] < 0:
            raise DataError(f"data | {path} has a negative label id; ids run 0..K-1 (or give names).")
        missing = sorted(set(range(ids[-1] + 1)) - set(ids))
        if missing:
            raise DataError(f"data | {path}'s label ids skip {_id_list(missing)} (ids run 0..K-1); write "
                            f"{path.parent / 'labels.txt'} (one name per line, line number = id) to name classes "
                            "the training rows do not have, or renumber the labels.")
        names_list = [str(i) for i in range(ids[-1] + 1)]
    else:
        names_list = sorted(names)
    if len(names_list) < 2:
        raise DataError(f"data | {path} has {len(names_list)} distinct label(s); a classifier needs at least 2.")
    return names_list


def _id_list(ids: list[int], most: int = 8) -> str:
    """``1, 2, 3`` or ``1, 2, ... (40 ids)`` for an error message."""
    return ", ".join(map(str, ids)) if len(ids) <= most else f"{', '.join(map(str, ids[:most]))}, ... ({len(ids)} ids)"


def available_splits(data_dir: str | Path) -> list[str]:
    d = Path(data_dir)
    return [s for s in SPLITS if (d / f"{s}.tsv").is_file()]
