"""Which datasets the evaluation runs, which splits train and test, and the seeded slices it writes.

CPU training is slow here, so every set is cut to a stated, seeded random slice (``train_rows``, ``test_rows``),
plus a held-out ``pool`` of the train split that no model trains on (exit labels, probe, operating points);
sets without a train split train on their dev split and test on test (THUCNews titles), sets without a labelled
test split test on dev (SST-2, AFQMC). Chinese sets use the bert-base-chinese vocabulary transplanted onto MiniLM
(``geep_deploy.vocab``): MiniLM's own vocabulary turns most of their tokens into ``[UNK]`` (``vocab_ablation`` in
the summaries).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from geep_deploy.atomic import atomic_write_text
from geep_deploy.data import TextDataset, load_split, read_labels
from geep_deploy.errors import ConfigError


@dataclass(frozen=True)
class DatasetSpec:
    """One evaluated set: folder under the data root, splits used, slice sizes, token limit and vocabulary."""

    name: str
    title: str
    lang: str  # "en" uses MiniLM's vocabulary, "zh" the transplanted bert-base-chinese one
    train_split: str
    test_split: str
    train_rows: int
    test_rows: int
    max_len: int
    split_note: str
    pool_rows: int = 3000  # held-out rows of the train split: exit labels, probe fitting, operating points
    tune_on: str = "pool"  # where operating points are chosen: "pool", or "test_half" (see ``tune_split``)


    def to_dict(self) -> dict[str, object]:
        return asdict(self)


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("sst2", "SST-2 (en, sentiment, 2 classes)", "en", "train", "dev", 2000, 872, 64,
                "GLUE's test labels are unpublished: train on a 2,000-row sample of train, test on dev; SST-2's "
                "train split is mostly short phrases, unlike dev's sentences, so operating points are chosen on a "
                "seeded half of dev and reported on the other half.", tune_on="test_half"),
    DatasetSpec("ag_news", "AG News (en, topic, 4 classes)", "en", "train", "test", 2000, 2000, 128,
                "train on 2,000 of the 10,001 staged train rows, test on 2,000 of the 7,600 test rows."),
    DatasetSpec("afqmc", "AFQMC (zh, sentence pairs, 2 classes)", "zh", "train", "dev", 2000, 2000, 64,
                "CLUE's test labels are unpublished: train on 2,000 train rows, test on 2,000 of the 4,316 dev rows."),
    DatasetSpec("thucnews_titles", "THUCNews titles (zh, news topic, 10 classes)", "zh", "dev", "test", 2000, 2000,
                64, "no train split is staged: train on 2,000 of the 10,000 dev rows, test on 2,000 of the 10,000 "
                    "test rows (9 exact dev/test duplicates exist in the full files)."),
    DatasetSpec("chnsenticorp", "ChnSentiCorp (zh, sentiment, 2 classes)", "zh", "train", "test", 1000, 1200, 128,
                "reviews are long (mean 107 tokens, p90 191): 1,000 train rows at 128 tokens; all 1,200 test rows."),
    DatasetSpec("weibo", "Weibo (zh, sentiment, 2 classes)", "zh", "dev", "test", 2000, 2000, 128,
                "no train split is staged: train on 2,000 of the 10,000 dev rows, test on 2,000 of the 10,000 "
                "test rows (posts: mean 65 characters, p90 138; 23 exact dev/test duplicates exist in the full "
                "files)."),
)}


def parse_datasets(text: str) -> list[DatasetSpec]:
    """``sst2,afqmc`` -> specs; ``all`` -> every set."""
    names = list(DATASETS) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown or not names:
        raise ConfigError(f"suite | unknown dataset(s) {unknown or text!r}. Expected 'all' or a comma list of "
                          f"{', '.join(DATASETS)}.")
    return [DATASETS[n] for n in names]


def sample(ds: TextDataset, n: int, seed: int, offset: int = 0) -> TextDataset:
    """``n`` rows (fewer when the split runs out) in a seeded random order, so any head is a random sample too.

    ``offset`` skips the first rows of the same order: ``sample(ds, m, seed, offset=n)`` is disjoint from
    ``sample(ds, n, seed)`` (held-out rows for tuning).
    """
    pick = [int(i) for i in np.random.default_rng(seed).permutation(len(ds))[offset: offset + n]]
    return TextDataset([ds.texts_a[i] for i in pick], None if ds.texts_b is None else [ds.texts_b[i] for i in pick],
                       [ds.labels[i] for i in pick], ds.label_names, ds.source)


def write_tsv(ds: TextDataset, path: Path) -> None:
    """The ``label<TAB>text[<TAB>text_b]`` format ``load_split`` reads, written atomically."""
    header = "label\ttext" if ds.texts_b is None else "label\ttext_a\ttext_b"
    rows = [f"{y}\t{a}" if ds.texts_b is None else f"{y}\t{a}\t{b}"
            for y, a, b in zip(ds.labels, ds.texts_a, ds.texts_b or [None] * len(ds))]
    atomic_write_text(path, "\n".join([header, *rows]) + "\n")


def text_key(text_a: str, text_b: str | None = None) -> str:
    """A row's text for duplicate checks: case and runs of whitespace ignored, both texts of a pair."""
    return " ".join(text_a.lower().split()) + ("" if text_b is None else "\t" + " ".join(text_b.lower().split()))


def drop_seen(test: TextDataset, *seen: TextDataset) -> tuple[TextDataset, int]:
    """``test`` without the rows whose text (``text_key``) is in any of ``seen``; returns (kept, dropped count).

    Example:
        >>> a = TextDataset(["Good film", "bad"], None, [1, 0], ["neg", "pos"])
        >>> kept, n = drop_seen(a, TextDataset(["good  FILM"], None, [1], ["neg", "pos"]))
        >>> kept.texts_a, n
        (['bad'], 1)
    """
    known = {text_key(a, b) for ds in seen for a, b in zip(ds.texts_a, ds.texts_b or [None] * len(ds))}
    keep = [i for i, (a, b) in enumerate(zip(test.texts_a, test.texts_b or [None] * len(test)))
            if text_key(a, b) not in known]
    kept = TextDataset([test.texts_a[i] for i in keep], None if test.texts_b is None else
                       [test.texts_b[i] for i in keep], [test.labels[i] for i in keep], test.label_names, test.source)
    return kept, len(test) - len(keep)


def write_slices(spec: DatasetSpec, data_root: Path, out: Path, seed: int = 0) -> dict[str, int]:
    """Write ``out/{labels.txt,train.tsv,dev.tsv,test.tsv}`` from the spec's splits; returns the row counts.

    ``dev.tsv`` is the held-out pool: rows of the train split that the training slice does not (the same seeded order, after it):
    no model trains on them, so their exit labels do not leak, and every method's operating point is chosen on
    them rather than on the reported test rows. Test rows whose text is in the train slice or the pool are
    dropped (``test_dropped_duplicates`` counts them): a model may have seen them, or chosen its knobs on them.
    """
    src = Path(data_root) / spec.name
    if not src.is_dir():
        raise ConfigError(f"suite | {src} is missing. Pass --data-root pointing at the shared data folder "
                          "(the one holding sst2/, ag_news/, ...).")
    labels = read_labels(src / "labels.txt")
    source = load_split(src, spec.train_split)
    train = sample(source, spec.train_rows, seed)
    pool = sample(source, spec.pool_rows, seed, offset=spec.train_rows)
    test, dropped = drop_seen(sample(load_split(src, spec.test_split), spec.test_rows, seed + 1), train, pool)
    if len(pool) < 100:
        raise ConfigError(f"suite | {spec.name}: only {len(pool)} rows of {spec.train_split} are left after the "
                          f"{spec.train_rows} training rows; the held-out pool needs at least 100.")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "labels.txt", "\n".join(labels) + "\n")
    write_tsv(train, out / "train.tsv")
    write_tsv(pool, out / "dev.tsv")
    write_tsv(test, out / "test.tsv")
    return {"train": len(train), "pool": len(pool), "test": len(test), "test_dropped_duplicates": dropped}


def tune_split(spec: DatasetSpec, n_test: int, seed: int) -> tuple[np.ndarray | None, np.ndarray]:
    """(rows that choose operating points, rows reported) as indices into the test slice.

    ``tune_on="pool"``: the pool chooses (None), every test row is reported. ``"test_half"``: a seeded half of the
    test slice chooses and the other half is reported, for sets whose pool is not distributed like the test rows
    (SST-2's train split is mostly short phrases; its test rows, GLUE's dev, are whole sentences).
    """
    if spec.tune_on == "pool":
        return None, np.arange(n_test)
    if spec.tune_on != "test_half":
        raise ConfigError(f"suite | {spec.name}: tune_on must be 'pool' or 'test_half', got {spec.tune_on!r}.")
    perm = np.random.default_rng(seed + 2).permutation(n_test)
    return np.sort(perm[: n_test // 2]), np.sort(perm[n_test // 2:])


def head_slice(src: Path, out: Path, rows: int, among: np.ndarray | None = None) -> Path:
    """A folder whose ``test.tsv`` is the first ``rows`` rows of ``src/test.tsv`` (the wall-clock bench's rows),
    or of its rows ``among`` when given (the reported rows)."""
    ds = load_split(src, "test")
    if among is not None:
        ds = TextDataset([ds.texts_a[i] for i in among], None if ds.texts_b is None else
                         [ds.texts_b[i] for i in among], [ds.labels[i] for i in among], ds.label_names, ds.source)
    ds = ds.subset(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "labels.txt", (src / "labels.txt").read_text(encoding="utf-8"))
    write_tsv(ds, out / "test.tsv")
    return out
