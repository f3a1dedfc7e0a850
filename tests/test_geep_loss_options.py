"""GEEP's loss options: each term's gradient reaches the parameters it should and no other; students learn."""

from __future__ import annotations

import pytest
import torch
from models import tiny_backbone_dir, tiny_model, write_toy_dataset

from geep_deploy.backbone import load_backbone_dir
from geep_deploy.data import load_split
from geep_deploy.errors import ConfigError
from geep_deploy.methods import GeepLossConfig, geep_loss, geep_terms, geep_weights
from geep_deploy.trainer import TrainConfig, train


def _batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    ids = torch.randint(1000, 3000, (6, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[3:, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}, torch.tensor(
        [0, 1, 1, 0, 1, 0])


def _reached(model: torch.nn.Module, term: torch.Tensor) -> set[str]:
    """Names of the parameters ``term`` sends a non-zero gradient to."""
    named = list(model.named_parameters())
    grads = torch.autograd.grad(term, [p for _, p in named], retain_graph=True, allow_unused=True)
    return {n for (n, _), g in zip(named, grads) if g is not None and bool(g.abs().sum() > 0)}


def _groups(model: torch.nn.Module) -> dict[str, set[str]]:
    L = model.num_layers
    names = {n for n, _ in model.named_parameters()}
    return {"teacher": {n for n in names if n.startswith(f"heads.{L - 1}.")},
            "students": {n for n in names if n.startswith("heads.") and not n.startswith(f"heads.{L - 1}.")},
            "last_layer": {n for n in names if n.startswith(f"encoder.layer.{L - 1}.")},
            "lower": {n for n in names if not n.startswith("heads.") and not n.startswith(f"encoder.layer.{L - 1}.")}}


def test_each_term_reaches_only_its_parameters() -> None:
    m = tiny_model()
    m.train()
    batch, y = _batch()
    terms = geep_terms(m, batch, y, GeepLossConfig(student_ce_weight=1.0))
    g = _groups(m)
    shared, distill, student_ce = (_reached(m, terms[k]) for k in ("shared", "distill", "student_ce"))
    # the shared exit loss trains the backbone, layer L and the teacher, never a student
    assert g["teacher"] <= shared and g["last_layer"] <= shared and not shared & g["students"]
    assert g["lower"] <= shared
    # distillation and the students' gold CE train the students and the layers under them: the teacher is a
    # stopped-gradient target and layer L is not on a student's path
    for term in (distill, student_ce):
        assert g["students"] <= term and not term & (g["teacher"] | g["last_layer"])
        assert any(n.startswith("encoder.layer.0.") for n in term)


def test_weights_and_warmup() -> None:
    cfg = GeepLossConfig(student_ce_weight=0.5, distill_warmup=0.25, shared_weight=2.0)
    assert geep_weights(cfg, 0.0) == {"shared": 2.0, "distill": 0.0, "student_ce": 0.5}
    assert geep_weights(cfg, 0.125)["distill"] == pytest.approx(0.5)
    assert geep_weights(cfg, 0.25)["distill"] == geep_weights(cfg, 1.0)["distill"] == 1.0
    m = tiny_model()
    batch, y = _batch()
    terms = geep_terms(m, batch, y, cfg)
    torch.testing.assert_close(geep_loss(cfg)(m, batch, y, progress=0.125),
                               2.0 * terms["shared"] + 0.5 * terms["distill"] + 0.5 * terms["student_ce"])
    assert "student_ce" not in geep_terms(m, batch, y, GeepLossConfig(student_ce_weight=0.0))


def test_skip_weight_scales_only_the_shallow_shared_paths() -> None:
    """skip_weight = 0 leaves the full path's CE as the shared term; 1 is the reference sum over K."""
    import torch.nn.functional as F

    m = tiny_model().eval()
    batch, y = _batch()
    full_ce = F.cross_entropy(m(**batch), y)
    t0, t1, th = (geep_terms(m, batch, y, GeepLossConfig(skip_weight=w))["shared"] for w in (0.0, 1.0, 0.5))
    torch.testing.assert_close(t0, full_ce)
    torch.testing.assert_close(th, full_ce + 0.5 * (t1 - full_ce))
    assert float(t1) > float(t0)


@pytest.mark.parametrize("bad", [{"student_ce_weight": -1.0}, {"skip_weight": -0.5}, {"distill_warmup": 1.5}, {"temperature": 0.0},
                                 {"distill_weight": float("nan")}])
def test_bad_options_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="geep \\|"):
        geep_loss(GeepLossConfig(**bad))


def test_students_leave_chance_on_a_separable_task(tmp_path) -> None:
    """Regression: with the default loss every GEEP student learns the one-word toy task, not only the teacher."""
    data = write_toy_dataset(tmp_path / "toy", rows=128)
    bb = load_backbone_dir(tiny_backbone_dir(tmp_path / "bb"))
    cfg = TrainConfig(method="geep", epochs=8, batch_size=16, lr=3e-3, head_lr=3e-3, max_len=16, seed=0)
    ckpt = train(bb, load_split(data, "train"), load_split(data, "dev"), cfg)
    dev = load_split(data, "dev")
    majority = max(dev.labels.count(0), dev.labels.count(1)) / len(dev)
    final = ckpt.metrics["history"][-1]["dev_accuracy_per_depth"]
    assert all(a >= majority + 0.2 for a in final), (final, majority)
    assert set(ckpt.metrics["stage_seconds"]) == {"geep"}


def test_diagnostics_variants_parse_loss_options_and_seed() -> None:
    """``bench/train_diagnostics.py --variant``: loss options go to GeepLossConfig, ``seed`` trains another seed."""
    from geep_deploy.bench.train_diagnostics import parse_variant as parse

    assert parse("d=geep:distill_weight=0.1,seed=7") == ("d", "geep", {"distill_weight": 0.1}, 7)
    assert parse("full=full") == ("full", "full", {}, None)
    for bad in ("x=bert", "=geep", "d=geep:lr=1", "d=geep:exit_set=1", "d=geep:seed=seven", "d=geep:seed=-1"):
        with pytest.raises(ConfigError, match="train_diagnostics"):
            parse(bad)
