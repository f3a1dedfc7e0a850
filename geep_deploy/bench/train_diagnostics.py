"""Why do GEEP's shallow students learn less than FastBERT's? Loss terms, teacher entropy and gradients per step
(``bench/train_diagnostics.py`` is its command line).

Trains each variant on a suite dataset's training slice (the rows ``bench/multi_dataset.py`` trains on) and, every
``every`` steps, records on the current batch, before the optimiser step, the teacher's mean normalised entropy,
every student's KL to the teacher and cross-entropy against the gold labels, and the gradient norm each GEEP loss
term sends to the backbone, the students' heads and the teacher's head. Per-depth accuracy is measured on held-out
rows of the same split that neither the slice nor the suite's test rows contain. The monitor saves and restores
torch's RNG, so the trained weights are those of a run without it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

EPOCH_BUDGET = 4  # GEEP and PABEE: 4 epochs; FastBERT: 2 (teacher) + 2 (students), as in the suite


def parse_variant(text: str) -> tuple[str, str, dict[str, float], int | None]:
    """``name=method[:key=value,...]`` -> (name, method, GEEP loss options, seed or None for the suite's).

    ``seed=N`` among the options trains with another seed: two seeds of one variant show how far a difference
    between variants is training noise."""
    from geep_deploy.errors import ConfigError
    from geep_deploy.methods import GeepLossConfig

    name, _, rest = text.partition("=")
    method, _, opts = rest.partition(":")
    if not name or method not in ("geep", "fastbert", "pabee", "full"):
        raise ConfigError(f"train_diagnostics | --variant {text!r}: expected name=geep|fastbert|pabee|full[:k=v,...].")
    known = {f.name for f in dataclasses.fields(GeepLossConfig)}
    out: dict[str, float] = {}
    seed: int | None = None
    for kv in filter(None, opts.split(",")):
        k, _, v = kv.partition("=")
        if k == "seed":
            if not v.isdigit():
                raise ConfigError(f"train_diagnostics | --variant {text!r}: seed must be a whole number >= 0, got {v!r}.")
            seed = int(v)
            continue
        if k not in known or k == "exit_set":
            raise ConfigError(f"train_diagnostics | --variant {text!r}: unknown loss option {k!r}.")
        out[k] = float(v)
    return name, method, out, seed


class TermMonitor:
    """Records loss terms, teacher entropy and per-term gradient norms every ``every`` steps of a GEEP stage."""

    def __init__(self, loss_cfg: Any, every: int) -> None:
        self.cfg, self.every, self.steps = loss_cfg, every, []

    def __call__(self, view: Any) -> None:
        import torch
        import torch.nn.functional as F

        from geep_deploy.methods import geep_terms

        if view.step % self.every:
            return
        model, L = view.model, view.model.num_layers
        rng = torch.get_rng_state()
        terms = geep_terms(model, view.batch, view.y, dataclasses.replace(self.cfg, student_ce_weight=1.0))
        groups = {"backbone": [p for n, p in model.named_parameters() if not n.startswith("heads.")],
                  "students": [p for h in model.heads[:-1] for p in h.parameters()],
                  "teacher": list(model.heads[-1].parameters())}
        flat = [p for ps in groups.values() for p in ps]
        grads: dict[str, dict[str, float]] = {}
        for name, t in terms.items():
            g = torch.autograd.grad(t, flat, retain_graph=True, allow_unused=True)
            by_id = {id(p): gi for p, gi in zip(flat, g)}
            grads[name] = {grp: float(sum(float((by_id[id(p)].float() ** 2).sum()) for p in ps
                                          if by_id[id(p)] is not None)) ** 0.5 for grp, ps in groups.items()}
        with torch.no_grad():
            out = model.forward_all(**view.batch)
            probs = torch.softmax(out.logits[-1].float(), -1)
            ent = -(probs * probs.clamp_min(1e-12).log()).sum(-1) / np.log(probs.shape[-1])
            rec = {"stage": view.stage, "step": view.step, "progress": round(view.progress, 4),
                   "teacher_entropy": float(ent.mean()),
                   "teacher_ce": float(F.cross_entropy(out.logits[-1].float(), view.y)),
                   "student_ce": [float(F.cross_entropy(lg.float(), view.y)) for lg in out.logits[: L - 1]],
                   "student_kl": [float(F.kl_div(F.log_softmax(lg.float(), -1), F.log_softmax(out.logits[-1].float(), -1),
                                                 log_target=True, reduction="batchmean")) for lg in out.logits[: L - 1]],
                   "terms": {k: float(v) for k, v in terms.items()}, "grad_norm": grads}
        torch.set_rng_state(rng)
        self.steps.append(rec)


def per_depth(model: Any, enc: Any, labels: np.ndarray) -> dict[str, list[float]]:
    from geep_deploy.evaluate import collect_depth_and_skip_logits

    lg, skip = collect_depth_and_skip_logits(model, enc)
    return {"students": [float((lg[:, k].argmax(-1) == labels).mean()) for k in range(lg.shape[1])],
            "shared_path": [float((skip[:, k].argmax(-1) == labels).mean()) for k in range(skip.shape[1])]}



@dataclasses.dataclass(frozen=True)
class TrainingSlice:
    """What every variant trains and is measured on: the backbone, the suite's training slice, the held-out rows,
    the dataset's spec and its embedding learning rate (None: the trainer's)."""

    backbone: Any
    train: Any
    held_out: Any
    spec: Any
    embed_lr: float | None = None


def run_variant(name: str, method: str, opts: dict[str, float], seed: int, data: TrainingSlice,
                every: int) -> dict[str, Any]:
    """Train one variant (GEEP's loss options ``opts``) with the monitor every ``every`` steps; its record."""
    from geep_deploy.encoding import TextEncoder
    from geep_deploy.methods import GeepLossConfig
    from geep_deploy.trainer import TrainConfig, train

    loss_cfg = GeepLossConfig(**opts)
    half = EPOCH_BUDGET // 2
    cfg = TrainConfig(method=method, epochs=half if method == "fastbert" else EPOCH_BUDGET,
                      distill_epochs=half if method == "fastbert" else None, max_len=data.spec.max_len, seed=seed,
                      embed_lr=data.embed_lr, geep=loss_cfg)
    monitor = TermMonitor(loss_cfg, every) if method == "geep" else None
    print(f"\n== {name}: {method} {opts or ''}", flush=True)
    val_ds = data.held_out
    ckpt = train(data.backbone, data.train, val_ds, cfg, monitor=monitor)
    enc = TextEncoder(ckpt.tokenizer_json, ckpt.max_len).encode(val_ds.texts_a, val_ds.texts_b)
    final = per_depth(ckpt.model, enc, np.asarray(val_ds.labels))
    return {"method": method, "loss_options": dataclasses.asdict(loss_cfg), "seed": seed,
            "epochs": {"total": EPOCH_BUDGET, "per_stage": [cfg.epochs] + ([cfg.distill_epochs] if cfg.distill_epochs else [])},
            "train_seconds": ckpt.metrics["train_seconds"], "stage_seconds": ckpt.metrics["stage_seconds"],
            "history": ckpt.metrics["history"], "final_per_depth": final,
            "steps": monitor.steps if monitor else []}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(12, 8))
    for name, v in result["variants"].items():
        st = v["steps"]
        if st:
            x = [s["progress"] for s in st]
            ax[0, 0].plot(x, [s["teacher_entropy"] for s in st], label=name)
            ax[0, 1].plot(x, [np.mean(s["student_ce"]) for s in st], label=f"{name}: students' gold CE")
            ax[0, 1].plot(x, [np.mean(s["student_kl"]) for s in st], "--", label=f"{name}: students' KL to teacher")
            for term in ("shared", "distill", "student_ce"):
                ax[1, 0].plot(x, [s["grad_norm"][term]["students"] for s in st], label=f"{name}: {term}")
        fd = v["final_per_depth"]
        ax[1, 1].plot(range(1, len(fd["students"]) + 1), np.array(fd["students"]) * 100, "o-", label=f"{name}: students")
        if method_has_shared(v):
            ax[1, 1].plot(range(1, len(fd["shared_path"]) + 1), np.array(fd["shared_path"]) * 100, "x:",
                          label=f"{name}: shared path")
    ax[0, 0].set(title="teacher's mean normalised entropy", xlabel="share of GEEP's steps")
    ax[0, 1].set(title="students (mean over depths 1..L-1)", xlabel="share of GEEP's steps")
    ax[1, 0].set(title="gradient norm on the students' heads, per loss term (unweighted)",
                 xlabel="share of GEEP's steps", yscale="log")
    ax[1, 1].set(title="held-out accuracy per depth after training", xlabel="depth", ylabel="%")
    for a in ax.flat:
        a.legend(fontsize=7)
    fig.suptitle(f"{result['dataset']['title']}: GEEP training diagnostics ({EPOCH_BUDGET}-epoch budget)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def method_has_shared(v: dict[str, Any]) -> bool:
    return v["method"] == "geep"



def run_diagnostics(dataset: str, data_root: Path, variants: list[tuple[str, str, dict[str, float], int | None]],
                    out: Path, command: str, val_rows: int = 1000, every: int = 5) -> dict[str, Any]:
    """Train and monitor every variant (``parse_variant``'s tuples) on ``dataset``; ``out`` (JSON, and its plot
    beside it) is written after each. Resumable: variants already in ``out`` with the same options are kept."""
    from geep_deploy.atomic import atomic_write_text
    from geep_deploy.data import load_split
    from geep_deploy.machine import machine_info
    from geep_deploy.methods import GeepLossConfig
    from geep_deploy.suite.datasets import DATASETS, sample
    from geep_deploy.suite.run import SuiteConfig, _backbone, _Log

    spec = DATASETS[dataset]
    suite = SuiteConfig(datasets=[spec], data_root=data_root)
    source = load_split(data_root / spec.name, spec.train_split)
    train_ds = sample(source, spec.train_rows, suite.seed)  # the suite's training slice (same seed and order)
    val_ds = sample(source, val_rows, suite.seed, offset=spec.train_rows)
    data = TrainingSlice(_backbone(suite, spec.lang, _Log()), train_ds, val_ds, spec,
                         suite.zh_embed_lr if spec.lang == "zh" else None)
    result: dict[str, Any] = {"command": command,
                              "machine": machine_info(), "dataset": spec.to_dict(),
                              "rows": {"train": len(train_ds), "held_out": len(val_ds)},
                              "held_out_majority_share": float(np.bincount(val_ds.labels).max() / len(val_ds)),
                              "variants": {}}
    if out.is_file():  # resumable: variants already measured with the same options are kept
        old = json.loads(out.read_text(encoding="utf-8"))
        if old.get("rows") == result["rows"]:
            result["variants"] = old.get("variants", {})
    for name, method, opts, seed in variants:
        seed = suite.seed if seed is None else seed
        kept = result["variants"].get(name)
        if (kept and kept["method"] == method and kept.get("seed", suite.seed) == seed
                and kept["loss_options"] == dataclasses.asdict(GeepLossConfig(**opts))):
            print(f"{name}: kept from {out}")
            continue
        result["variants"][name] = run_variant(name, method, opts, seed, data, every)
        atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")  # the command that reproduces what it holds
    plot(result, out.with_suffix(".png"))
    for name, v in result["variants"].items():
        fd = v["final_per_depth"]
        print(f"{name:>14}: students {' '.join(f'{a * 100:5.1f}' for a in fd['students'])} | shared path "
              f"{' '.join(f'{a * 100:5.1f}' for a in fd['shared_path'])} | {v['train_seconds']} s")
    return result
