"""Training objectives of GEEP and the baselines, as stages the shared training loop runs in order.

All methods share ``ExitBert``, the data path and the loop in ``trainer.py``; they differ only in which parameters
a stage trains and what loss it computes on a batch:

- ``geep`` (one stage): shared exit loss ``sum_{k in K} CE(T(layer_L(h_k)), y)`` plus distillation
  ``sum_{k<L} KL(stopgrad(p_T) || p_{S_k})`` in the same step (GEEP.md, "Training"); optionally gold-label CE on
  the students and a distillation warm-up (``GeepLossConfig``).
- ``fastbert`` (two stages): fine-tune backbone + teacher with CE; then freeze them and distil every student.
- ``pabee`` (one stage): CE at every depth weighted by depth (Zhou et al. 2020).
- ``full`` (one stage): plain fine-tuning of the teacher on the last layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from geep_deploy.errors import ConfigError
from geep_deploy.model import ExitBert

LossFn = Callable[..., torch.Tensor]
"""``loss(model, batch, y, progress=1.0)``: ``progress`` is the share of the stage's steps already taken."""


@dataclass(frozen=True)
class GeepLossConfig:
    """Options of GEEP's loss. The first four follow the reference (EasyNLP); the last three are additions.

    ``skip_weight`` scales the shared-path terms of the shallow depths (k < L-1) against the full path's: with
    the reference's 1.0 the last layer and the teacher see shallow states in L-2 of every L-1 terms.
    ``student_ce_weight`` adds gold-label cross-entropy to every student's loss: the students then learn from the
    labels while the teacher they are distilled from is still near-uniform (``bench/train_diagnostics.py``
    measures why this matters). ``distill_warmup`` ramps the distillation weight from 0 over that share of the
    stage's steps. Both keep the one-step shared exit loss as the method's core.
    """

    exit_set: tuple[int, ...] | None = None  # K; None = 1..L-1
    temperature: float = 1.0
    shared_weight: float = 1.0
    distill_weight: float = 1.0
    student_ce_weight: float = 0.0
    distill_warmup: float = 0.0
    skip_weight: float = 1.0

    def validate(self) -> None:
        for name in ("temperature", "shared_weight", "distill_weight", "student_ce_weight", "distill_warmup",
                     "skip_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and v == v):
                raise ConfigError(f"geep | {name} must be a number >= 0, got {v!r}.")
        if self.temperature <= 0:
            raise ConfigError(f"geep | temperature must be > 0, got {self.temperature!r}.")
        if self.distill_warmup > 1:
            raise ConfigError(f"geep | distill_warmup is a share of the steps (0..1), got {self.distill_warmup!r}.")


@dataclass
class Stage:
    """One training stage: a name, the parameters it updates, and its loss on a batch."""

    name: str
    params: Callable[[ExitBert], Iterator[tuple[str, nn.Parameter]]]
    loss: LossFn
    frozen_eval: bool = False  # run frozen modules in eval mode (FastBERT's distillation stage)
    info: dict[str, object] = field(default_factory=dict)


def _all_params(m: ExitBert) -> Iterator[tuple[str, nn.Parameter]]:
    return m.named_parameters()


def _backbone_and_teacher(m: ExitBert) -> Iterator[tuple[str, nn.Parameter]]:
    teacher = "heads.0." if m.shared_head else f"heads.{m.num_layers - 1}."
    return ((n, p) for n, p in m.named_parameters() if not n.startswith("heads.") or n.startswith(teacher))


def _students(m: ExitBert) -> Iterator[tuple[str, nn.Parameter]]:
    if m.shared_head:
        raise ConfigError("fastbert | needs one head per depth; a shared head cannot be distilled into itself.")
    return ((f"heads.{i}.{n}", p) for i, h in enumerate(m.heads[:-1]) for n, p in h.named_parameters())


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, scaled by T^2 as usual."""
    t = temperature
    log_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p = F.log_softmax(teacher_logits.detach().float() / t, dim=-1)
    return F.kl_div(log_s, log_p, log_target=True, reduction="batchmean") * (t * t)


def exit_set(cfg: GeepLossConfig, num_layers: int) -> tuple[int, ...]:
    """K, checked against the model's depth."""
    L = num_layers
    ks = tuple(range(1, L)) if cfg.exit_set is None else cfg.exit_set
    if any(not 1 <= k < L for k in ks) or not ks:
        raise ConfigError(f"geep | exit set must be a non-empty subset of 1..{L - 1}, got {ks}.")
    return ks


def geep_terms(model: ExitBert, batch: dict[str, torch.Tensor], y: torch.Tensor,
               cfg: GeepLossConfig) -> dict[str, torch.Tensor]:
    """GEEP's loss terms on a batch, unweighted (GEEP.md, "Training"):

    - ``shared``: ``sum_{k in K} w_k CE(T(layer_L(h_k)), y)``; k = L-1 is the ordinary full path (w = 1), the
      shallower k have w = ``cfg.skip_weight`` (1 in the reference);
    - ``distill``: ``sum_{k<L} KL(stopgrad(p_T) || p_{S_k})``;
    - ``student_ce``: ``sum_{k<L} CE(S_k, y)`` (an option; computed only when its weight is > 0).
    """
    L = model.num_layers
    ks = exit_set(cfg, L)
    out = model.forward_all(**batch)
    teacher_full = out.logits[-1]
    # Every k < L-1 goes through the last layer as one stacked batch; k = L-1 is the ordinary full path.
    extra = [k for k in ks if k != L - 1]
    shared = F.cross_entropy(teacher_full, y) if (L - 1) in ks else teacher_full.new_zeros(())
    if extra:
        b = y.shape[0]
        h = torch.cat([out.hidden[k - 1] for k in extra], dim=0)
        bias = out.mask_bias.repeat(len(extra), 1, 1, 1)
        skip_logits = model.teacher_from(h, bias, out.attention_mask.repeat(len(extra), 1))
        shared = shared + cfg.skip_weight * F.cross_entropy(skip_logits, y.repeat(len(extra)), reduction="sum") / b
    terms = {"shared": shared,
             "distill": sum(distill_kl(out.logits[k - 1], teacher_full, cfg.temperature) for k in range(1, L))}
    if cfg.student_ce_weight > 0:
        terms["student_ce"] = sum(F.cross_entropy(out.logits[k - 1].float(), y) for k in range(1, L))
    return terms


def geep_weights(cfg: GeepLossConfig, progress: float = 1.0) -> dict[str, float]:
    """Each term's weight at ``progress`` (share of the stage's steps taken): distillation ramps over its warm-up."""
    ramp = 1.0 if cfg.distill_warmup <= 0 else min(1.0, progress / cfg.distill_warmup)
    return {"shared": cfg.shared_weight, "distill": cfg.distill_weight * ramp, "student_ce": cfg.student_ce_weight}


def geep_loss(cfg: GeepLossConfig) -> LossFn:
    cfg.validate()

    def loss(model: ExitBert, batch: dict[str, torch.Tensor], y: torch.Tensor, progress: float = 1.0) -> torch.Tensor:
        terms, w = geep_terms(model, batch, y, cfg), geep_weights(cfg, progress)
        return sum(w[name] * t for name, t in terms.items())

    return loss


def _teacher_ce(model: ExitBert, batch: dict[str, torch.Tensor], y: torch.Tensor, progress: float = 1.0) -> torch.Tensor:
    return F.cross_entropy(model(**batch), y)


def fastbert_distill_loss(temperature: float) -> LossFn:
    def loss(model: ExitBert, batch: dict[str, torch.Tensor], y: torch.Tensor, progress: float = 1.0) -> torch.Tensor:
        L = model.num_layers
        with torch.no_grad():  # backbone and teacher are frozen: only the students' heads take gradients
            out = model.forward_all(**batch)
            pooled = [model.pool(h, out.attention_mask) for h in out.hidden[:-1]]
        return sum(distill_kl(model.head(k)(pooled[k - 1]), out.logits[-1], temperature) for k in range(1, L))

    return loss


def _pabee_loss(model: ExitBert, batch: dict[str, torch.Tensor], y: torch.Tensor, progress: float = 1.0) -> torch.Tensor:
    out = model.forward_all(**batch)
    weights = torch.arange(1, model.num_layers + 1, dtype=torch.float32)
    losses = torch.stack([F.cross_entropy(lg, y) for lg in out.logits])
    return (losses * weights.to(losses.device)).sum() / weights.sum()


def stages_for(method: str, geep: GeepLossConfig | None = None) -> list[Stage]:
    """The stages of ``method``, run in order by the training loop."""
    geep = geep or GeepLossConfig()
    if method == "geep":
        return [Stage("geep", _all_params, geep_loss(geep))]
    if method == "fastbert":
        return [
            Stage("fastbert-1-teacher", _backbone_and_teacher, _teacher_ce),
            Stage("fastbert-2-distill", _students, fastbert_distill_loss(geep.temperature), frozen_eval=True),
        ]
    if method == "pabee":
        return [Stage("pabee", _all_params, _pabee_loss)]
    if method == "full":
        return [Stage("full", _backbone_and_teacher, _teacher_ce)]
    raise ConfigError(f"train | unknown method {method!r}. Expected one of geep, fastbert, pabee, full.")
