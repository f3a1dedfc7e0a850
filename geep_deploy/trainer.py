"""The one training loop every method shares: AdamW, warm-up + linear decay, clipping, seed, per-epoch evaluation.

A method is a list of stages (``methods.stages_for``); the loop runs each stage with a fresh optimiser over that
stage's parameters. Heads get their own (higher) learning rate, the same for every method, because they start
from random weights while the backbone is pretrained.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from geep_deploy.backbone import Backbone
from geep_deploy.checkpoint import Checkpoint
from geep_deploy.data import TextDataset
from geep_deploy.encoding import Encoded, TextEncoder, shuffled_bucket_batches
from geep_deploy.errors import ConfigError
from geep_deploy.evaluate import collect_depth_logits, torch_batch
from geep_deploy.limits import check_max_len
from geep_deploy.methods import GeepLossConfig, stages_for
from geep_deploy.model import ExitBert

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"


@dataclass
class TrainConfig:
    """Hyper-parameters of a run; stored in the checkpoint."""

    method: str = "geep"
    epochs: int = 2
    distill_epochs: int | None = None  # FastBERT's second stage; defaults to ``epochs``
    batch_size: int = 32
    eval_batch_size: int = 64
    lr: float = 5e-5
    head_lr: float = 5e-4
    embed_lr: float | None = None  # word embeddings' rate; None = lr. Raised for a transplanted vocabulary
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_len: int = 128
    seed: int = 42
    device: str = "cpu"
    pooling: str = "mean"  # "mean" or "cls": what the exit heads classify
    geep: GeepLossConfig = field(default_factory=GeepLossConfig)

    def validate(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "max_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train | --{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}.")
        if self.lr <= 0 or self.head_lr <= 0 or (self.embed_lr is not None and self.embed_lr <= 0):
            raise ConfigError("train | learning rates must be > 0.")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("train | --device cuda was asked but torch sees no CUDA GPU. Use --device cpu.")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


@dataclass
class StepView:
    """What a training monitor sees before each optimiser step (``train(..., monitor=...)``)."""

    model: ExitBert
    stage: str
    step: int  # 0-based within the stage
    total: int  # steps in the stage
    batch: dict[str, torch.Tensor]
    y: torch.Tensor

    @property
    def progress(self) -> float:
        return self.step / max(1, self.total)


Monitor = Callable[[StepView], None]


def per_depth_accuracy(model: ExitBert, enc: Encoded, labels: np.ndarray, cfg: TrainConfig) -> list[float]:
    logits = collect_depth_logits(model, enc, cfg.eval_batch_size, cfg.device)
    return [float((logits[:, k].argmax(-1) == labels).mean()) for k in range(model.num_layers)]


def _run_stage(
    model: ExitBert, stage, enc: Encoded, labels: np.ndarray, epochs: int, cfg: TrainConfig,
    dev: tuple[Encoded, np.ndarray] | None, history: list[dict[str, Any]], monitor: Monitor | None = None,
) -> None:
    named = list(stage.params(model))
    trainable = {id(p) for _, p in named}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    no_decay = ("bias", "LayerNorm.weight")
    by_rate: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for n, p in named:
        if n.startswith("heads."):
            lr = cfg.head_lr
        elif n == WORD_EMBEDDINGS and cfg.embed_lr is not None:
            lr = cfg.embed_lr
        else:
            lr = cfg.lr
        wd = 0.0 if any(s in n for s in no_decay) else cfg.weight_decay
        by_rate.setdefault((lr, wd), []).append(p)
    groups = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in by_rate.items()]
    opt = torch.optim.AdamW(groups)
    rng = np.random.default_rng(cfg.seed)
    steps_per_epoch = -(-len(enc) // cfg.batch_size)
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, int(cfg.warmup_ratio * total)))
    use_amp = cfg.device.startswith("cuda")
    y_all = torch.from_numpy(labels)
    step = -1
    for epoch in range(1, epochs + 1):
        model.train()
        if stage.frozen_eval:
            model.eval()  # frozen backbone: no dropout in the teacher's states; heads still train
            for i in range(model.num_layers - 1):
                model.heads[i].train()
        t0, losses = time.perf_counter(), []
        bar = tqdm(shuffled_bucket_batches(enc.lengths, cfg.batch_size, rng), desc=f"{stage.name} epoch {epoch}/{epochs}",
                   leave=False, mininterval=1.0)
        for idx in bar:
            step += 1
            batch = torch_batch(enc, idx, cfg.device)
            y = y_all[idx].to(cfg.device)
            view = StepView(model, stage.name, step, total, batch, y)
            if monitor is not None:
                monitor(view)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss = stage.loss(model, batch, y, progress=view.progress)
            if not torch.isfinite(loss):
                raise ConfigError(f"train | loss became {loss.item()} in {stage.name}; lower --lr.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in named], cfg.max_grad_norm)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        rec: dict[str, Any] = {"stage": stage.name, "epoch": epoch, "loss": float(np.mean(losses)),
                               "seconds": round(time.perf_counter() - t0, 2)}
        if dev is not None:
            rec["dev_accuracy_per_depth"] = per_depth_accuracy(model, dev[0], dev[1], cfg)
        history.append(rec)
        acc = rec.get("dev_accuracy_per_depth")
        accs = f", dev acc per depth: {' '.join(f'{a * 100:.1f}' for a in acc)}" if acc else ""
        tqdm.write(f"[{stage.name}] epoch {epoch}: loss {rec['loss']:.4f}{accs} ({rec['seconds']}s)")
    for p in model.parameters():
        p.requires_grad_(True)


def teacher_identity(ckpt: Checkpoint) -> dict[str, Any]:
    """What ties a FastBERT checkpoint to the ``full`` checkpoint its students were distilled from."""
    return {"method": ckpt.method, "seed": ckpt.hparams.get("seed"), "epochs": ckpt.hparams.get("epochs"),
            "train_seconds": ckpt.metrics.get("train_seconds"), "weights_sha256": ckpt.weights_sha256}


def _from_teacher(model: ExitBert, stages: list, teacher: Checkpoint, train_ds: TextDataset,
                  cfg: TrainConfig, tokenizer_json: str) -> list:
    """Load ``teacher``'s backbone and teacher head into ``model``; FastBERT then runs its distillation only."""
    if cfg.method != "fastbert":
        raise ConfigError(f"train | a teacher checkpoint is FastBERT's first stage; {cfg.method} trains without one.")
    if teacher.method != "full":
        raise ConfigError(f"train | FastBERT's teacher must be a `full` checkpoint, got a {teacher.method} one.")
    mismatch = {
        "labels": list(teacher.label_names) != list(train_ds.label_names),
        "backbone shape": teacher.shape != model.shape,
        "pooling": teacher.model.pooling != model.pooling,
        "max_len": int(teacher.max_len) != int(cfg.max_len),
        "tokenizer": teacher.tokenizer_json != tokenizer_json,
        "training rows": teacher.hparams.get("train_rows") not in (None, len(train_ds)),
    }
    if any(mismatch.values()):
        raise ConfigError(f"train | the teacher checkpoint differs from this run in its "
                          f"{', '.join(k for k, bad in mismatch.items() if bad)}: FastBERT distils from the `full` "
                          "model fine-tuned on the same rows with the same settings; train that one first.")
    L = model.num_layers
    keep = {k: v for k, v in teacher.model.state_dict().items()
            if not k.startswith("heads.") or k.startswith(f"heads.{L - 1}.")}
    missing = set(model.state_dict()) - set(keep)
    if any(not k.startswith("heads.") for k in missing):
        raise ConfigError(f"train | the teacher checkpoint lacks backbone weights: {sorted(missing)[:3]}.")
    model.load_state_dict(keep, strict=False)
    return [s for s in stages if s.frozen_eval]


def train(
    backbone: Backbone, train_ds: TextDataset, dev_ds: TextDataset | None, cfg: TrainConfig,
    monitor: Monitor | None = None, teacher: Checkpoint | None = None,
) -> Checkpoint:
    """Fine-tune ``backbone`` with exits by ``cfg.method``; evaluates on ``dev_ds`` after every epoch.

    ``monitor`` (optional) sees the model and batch before every optimiser step (``bench/train_diagnostics.py``).
    ``teacher`` (FastBERT only): a ``full`` checkpoint fine-tuned on the same rows. FastBERT as published starts
    its self-distillation from the fully fine-tuned backbone and teacher, so its first stage is that checkpoint
    (its depth L answers exactly as ``full`` does) and only the students train, for ``distill_epochs``.

    Returns:
        The trained ``Checkpoint`` (not yet saved), with hyper-parameters and the training history as metrics.
    """
    cfg.validate()
    cfg.geep.validate()
    check_max_len("train | max_len", cfg.max_len, backbone.shape.max_position_embeddings)
    stages = stages_for(cfg.method, cfg.geep)
    set_seed(cfg.seed)
    model = ExitBert(backbone.shape, len(train_ds.label_names), pooling=cfg.pooling)
    model.load_backbone(backbone.weights)
    if teacher is not None:
        stages = _from_teacher(model, stages, teacher, train_ds, cfg, backbone.tokenizer_json)
    model.to(cfg.device)
    encoder = TextEncoder(backbone.tokenizer_json, cfg.max_len)
    enc = encoder.encode(train_ds.texts_a, train_ds.texts_b)
    labels = np.asarray(train_ds.labels, dtype=np.int64)
    dev = None
    if dev_ds is not None:
        if dev_ds.label_names != train_ds.label_names:
            raise ConfigError("train | dev and train splits name different labels.")
        dev = (encoder.encode(dev_ds.texts_a, dev_ds.texts_b), np.asarray(dev_ds.labels, dtype=np.int64))
    history: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    for stage in stages:
        epochs = cfg.distill_epochs if (stage.frozen_eval and cfg.distill_epochs) else cfg.epochs
        t_stage = time.perf_counter()
        _run_stage(model, stage, enc, labels, epochs, cfg, dev, history, monitor)
        stage_seconds[stage.name] = round(time.perf_counter() - t_stage, 1)
    model.eval().cpu()
    hparams = asdict(cfg)
    hparams["geep"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in hparams["geep"].items()}
    hparams["train_rows"], hparams["backbone"] = len(train_ds), str(backbone.path)
    if teacher is not None:
        hparams["teacher"] = teacher_identity(teacher)
    return Checkpoint(
        model=model, method=cfg.method, label_names=list(train_ds.label_names),
        tokenizer_json=backbone.tokenizer_json, max_len=cfg.max_len, hparams=hparams,
        metrics={"history": history, "train_seconds": round(time.perf_counter() - t0, 1),
                 "stage_seconds": stage_seconds},
    )
