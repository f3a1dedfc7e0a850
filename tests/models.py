"""Tiny fixture models shared by every test: random-weight BERTs with exits, and checkpoints of them."""

from __future__ import annotations

from pathlib import Path

import torch

from geep_deploy.backbone import load_backbone_dir
from geep_deploy.checkpoint import Checkpoint, save_checkpoint
from geep_deploy.config import BertShape
from geep_deploy.model import ExitBert

TINY_SHAPE = BertShape(
    vocab_size=30522,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=128,
)


def as_old_manifest(m: dict, version: int) -> dict:
    """``m`` (in place) as an export of format ``version`` < 5 wrote it: each artifact's and weights file's format
    under the key ``backend``. Other differences of that version are the caller's."""
    m["format_version"] = version
    for e in [*m.get("weights", []), *m["artifacts"]]:
        e["backend"] = e.pop("format")
    return m


def real_tokenizer_json() -> str:
    """The packaged MiniLM tokenizer (real vocabulary, so real words get real ids)."""
    return load_backbone_dir().tokenizer_json


def tiny_model(num_labels: int = 2, seed: int = 0, shape: BertShape = TINY_SHAPE) -> ExitBert:
    torch.manual_seed(seed)
    return ExitBert(shape, num_labels).eval()


def tiny_checkpoint(
    path: Path, method: str = "geep", num_labels: int = 2, seed: int = 0, max_len: int = 64
) -> Checkpoint:
    """A random-weight checkpoint with the real tokenizer, saved at ``path``."""
    ckpt = Checkpoint(
        model=tiny_model(num_labels, seed),
        method=method,
        label_names=[f"label{i}" for i in range(num_labels)],
        tokenizer_json=real_tokenizer_json(),
        max_len=max_len,
        hparams={"seed": seed},
    )
    save_checkpoint(ckpt, path)
    return ckpt


def tiny_backbone_dir(path: Path, seed: int = 0) -> Path:
    """A Hugging Face-style BERT directory (config.json, model.safetensors, tokenizer.json) with tiny random weights."""
    import json

    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    model = tiny_model(seed=seed)
    enc = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("heads.")}
    save_file(enc, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(TINY_SHAPE.to_dict()))
    (path / "tokenizer.json").write_text(real_tokenizer_json())
    return path


POSITIVE = ["good", "great", "fine", "lovely", "excellent", "nice", "wonderful", "superb"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "horrible", "dull", "boring", "weak"]


def write_toy_dataset(path: Path, rows: int = 64, seed: int = 0, pair: bool = False, unique: bool = False) -> Path:
    """A learnable two-class TSV dataset: the label is carried by one sentiment word. ``unique``: every row's text
    differs (a scene number and a tail of varied length), so no row of one split repeats another's."""
    import random

    rng = random.Random(seed)
    path.mkdir(parents=True, exist_ok=True)
    (path / "labels.txt").write_text("negative\npositive\n")
    for split, n in (("train", rows), ("dev", max(16, rows // 4))):
        lines = ["label\ttext_a\ttext_b" if pair else "label\ttext"]
        for i in range(n):
            y = rng.randrange(2)
            word = rng.choice(POSITIVE if y else NEGATIVE)
            text = f"the film was {word} and the cast {rng.choice(['acted', 'played', 'sang'])}"
            if unique:
                text += f" in {split} scene {i}" + " again" * rng.randrange(12)
            lines.append(f"{y}\t{text}\tand so it goes" if pair else f"{y}\t{text}")
        (path / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return path


# SST-2-like sentences of mixed lengths, for runtime and service tests.
TEXTS = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "a gorgeous , witty , seductive movie .",
    "the movie is n't worth the price of the ticket , let alone two hours of your life .",
    "good",
    "an utterly incompetent conclusion to a film that had promise",
    "funny",
    "it never fails to engage us .",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's "
    "austere locales .",
    "bad bad bad",
]


def reliability_workspace(d: Path, layers: int = 3) -> dict[str, Path]:
    """The reliability tests' workspace: checkpoint, toy data, an exit table (random exits 1..L) and an export
    without segment graphs."""
    import numpy as np

    from export.bundle import export_checkpoint
    from geep_deploy.data import load_split
    from geep_deploy.encoding import TextEncoder
    from runtime.predictor import build_predictor

    ckpt = tiny_checkpoint(d / "tiny.pt")
    data = write_toy_dataset(d / "data", rows=32)
    enc = TextEncoder(ckpt.tokenizer_json, ckpt.max_len)
    rows = enc.encode(load_split(data, "train").texts_a).ids
    exits = np.random.default_rng(0).integers(1, layers + 1, len(rows))
    table = build_predictor(rows, exits, layers, sorted(enc.special_ids)).save(d / "table.npz")
    export_checkpoint(d / "tiny.pt", d / "export", exit_table=table, segments=False, progress=False)
    return {"dir": d, "ckpt": d / "tiny.pt", "data": data, "table": table, "export": d / "export"}


def sst2_slice(d: Path, train: int = 60, dev: int = 40) -> Path:
    """The first ``train``/``dev`` rows of the bundled SST-2 slice (and its labels.txt), copied into ``d``."""
    from geep_deploy.data import bundled_data_dir

    src = bundled_data_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / "labels.txt").write_text((src / "labels.txt").read_text())
    for split, n in (("train", train), ("dev", dev)):
        lines = (src / f"{split}.tsv").read_text().splitlines()[: n + 1]
        (d / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return d


def tiny_table_export(tmp: Path, data: Path, **options: object) -> Path:
    """A 3-layer tiny checkpoint exported with an exit table of random exits on ``data``'s train texts (the
    table says nothing; the dispatch around it is what tests check). ``options``: `ExportOptions` fields."""
    import numpy as np

    from export import export_checkpoint
    from geep_deploy.data import load_split
    from geep_deploy.encoding import TextEncoder
    from runtime.predictor import build_predictor

    ckpt = tiny_checkpoint(tmp / "tiny.pt")
    enc = TextEncoder(ckpt.tokenizer_json, ckpt.max_len)
    rows = enc.encode(load_split(data, "train").texts_a).ids
    exits = np.random.default_rng(0).integers(1, 4, len(rows))
    table = build_predictor(rows, exits, 3, sorted(enc.special_ids)).save(tmp / "table.npz")
    return export_checkpoint(tmp / "tiny.pt", tmp / "export", exit_table=table, progress=False, **options).root
