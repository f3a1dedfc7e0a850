"""Every method's loss falls on a tiny learnable task; the GEEP loss has the terms GEEP.md specifies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from models import tiny_backbone_dir, tiny_model, write_toy_dataset

from geep_deploy.backbone import load_backbone_dir
from geep_deploy.data import load_split
from geep_deploy.errors import ConfigError
from geep_deploy.methods import GeepLossConfig, distill_kl, geep_loss, stages_for
from geep_deploy.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("toy")
    return load_backbone_dir(tiny_backbone_dir(root / "bb")), write_toy_dataset(root / "data", rows=96)


@pytest.mark.parametrize("method", ["geep", "fastbert", "pabee", "full"])
def test_loss_falls(toy, method: str) -> None:
    backbone, data = toy
    cfg = TrainConfig(method=method, epochs=12, batch_size=16, lr=3e-3, head_lr=3e-3, max_len=16, seed=0)
    ckpt = train(backbone, load_split(data, "train"), load_split(data, "dev"), cfg)
    hist = ckpt.metrics["history"]
    for stage in {h["stage"] for h in hist}:
        losses = [h["loss"] for h in hist if h["stage"] == stage]
        assert losses[-1] < 0.8 * losses[0], (stage, losses)
    final = hist[-1]["dev_accuracy_per_depth"]
    assert final[-1] >= 0.75  # the teacher learns the toy task
    assert ckpt.method == method and ckpt.hparams["method"] == method


def test_fastbert_stage_two_freezes_backbone_and_teacher(toy) -> None:
    backbone, data = toy
    torch.manual_seed(0)
    stages = stages_for("fastbert")
    m = tiny_model()
    names = {n for n, _ in stages[1].params(m)}
    assert names and all(n.startswith("heads.") and not n.startswith("heads.2.") for n in names)
    first = {n for n, _ in stages[0].params(m)}
    assert "heads.2.classifier.weight" in first and "heads.0.classifier.weight" not in first
    assert "embeddings.word_embeddings.weight" in first
    # and training stage 2 really leaves the backbone and the teacher as stage 1 left them
    from geep_deploy.encoding import TextEncoder
    from geep_deploy.trainer import _run_stage

    m.load_backbone(backbone.weights)
    train_ds = load_split(data, "train")
    enc = TextEncoder(backbone.tokenizer_json, 16).encode(train_ds.texts_a)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    cfg = TrainConfig(method="fastbert", epochs=1, batch_size=16, lr=3e-3, head_lr=3e-3, max_len=16, seed=0)
    _run_stage(m, stages[1], enc, np.asarray(train_ds.labels, dtype=np.int64), 1, cfg, None, [])
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= names, sorted(changed - names)
    assert all(p.requires_grad for p in m.parameters())  # unfrozen again after the stage


def test_geep_loss_terms() -> None:
    """With distillation off and K = {L-1}, the GEEP loss is plain CE of the teacher; K adds skip paths."""
    m = tiny_model()
    ids = torch.randint(1000, 3000, (4, 7))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    y = torch.tensor([0, 1, 1, 0])
    only_teacher = geep_loss(GeepLossConfig(exit_set=(2,), distill_weight=0.0))(m, batch, y)
    ce = torch.nn.functional.cross_entropy(m(**batch), y)
    torch.testing.assert_close(only_teacher, ce)
    with_skip = geep_loss(GeepLossConfig(exit_set=(1, 2), distill_weight=0.0))(m, batch, y)
    skip_ce = torch.nn.functional.cross_entropy(m(**batch, depth=1, exit_mode="skip"), y)
    torch.testing.assert_close(with_skip, ce + skip_ce)
    full = geep_loss(GeepLossConfig())(m, batch, y)
    kl = sum(distill_kl(m(**batch, depth=k), m(**batch), 1.0) for k in (1, 2))
    torch.testing.assert_close(full, ce + skip_ce + kl)
    with pytest.raises(ConfigError, match="exit set"):
        geep_loss(GeepLossConfig(exit_set=(3,)))(m, batch, y)


def test_bad_config(toy) -> None:
    backbone, data = toy
    with pytest.raises(ConfigError, match="unknown method"):
        train(backbone, load_split(data, "train"), None, TrainConfig(method="deebert"))
    with pytest.raises(ConfigError, match="--epochs"):
        TrainConfig(epochs=0).validate()


def test_seed_makes_runs_repeatable(toy, tmp_path: Path) -> None:
    backbone, data = toy
    ds = load_split(data, "train").subset(32)
    cfg = TrainConfig(method="full", epochs=1, batch_size=16, max_len=16, seed=3)
    a, b = train(backbone, ds, None, cfg), train(backbone, ds, None, cfg)
    for k, v in a.model.state_dict().items():
        np.testing.assert_allclose(v.numpy(), b.model.state_dict()[k].numpy(), atol=1e-6)
