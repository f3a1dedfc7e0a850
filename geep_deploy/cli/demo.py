"""Run the end-to-end demo on the bundled SST-2 slice, on the CPU: the product's default against FastBERT.

Trains three models on the same rows at the multi-dataset suite's budget: `full` (plain fine-tuning), GEEP (shared
exit loss + distillation, one step) and FastBERT as published (its teacher is the `full` checkpoint, then 5
self-distillation epochs). Calibrates GEEP as `geep-deploy calibrate` does by default on the CPU, with the
product's default predictor there (geep_deploy.names.DEFAULT_PREDICTOR["cpu"]: the layer-1 probe, or the entropy
exit over GEEP's own heads; student exits, no escalation; its knob chosen on half of SST-2 dev, the tuning rows),
and chooses FastBERT's entropy threshold on the same rows by the same rule; exports all three, benches them on the
other half of dev at batch 1 and 64 on one runtime path (ONNX Runtime CPU fp32), serves a few requests through
GeepEngine, and prints one table, a verdict, the noise and the phase timings, naming the predictor GEEP ran with.
Writes DIR/demo.json and DIR/demo.png (--json/--plot elsewhere).
Finished training and exports under --out are reused unless --fresh is given.

Example:
  geep-deploy demo                     # the README states the measured time of a run
  geep-deploy demo --fresh --json bench/results/demo_sst2.json --plot bench/results/demo_sst2.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

TRAIN_ROWS = 400
"""Rows trained on by default: at the suite's 4-epoch budget, three models (GEEP's step costs about two of
`full`'s) fit the demo's 10-minute budget on 2 CPU cores only with a few hundred rows."""
POOL_ROWS = 1000
"""Further train.tsv rows used unlabeled, as GEEP's calibration rows (the exit labels the exit table and the probe
are fitted on; no model trained on them)."""


def add_args(p: argparse.ArgumentParser) -> None:
    from geep_deploy.suite.run import SuiteConfig

    budget = SuiteConfig.__dataclass_fields__["epochs"].default
    p.add_argument("--out", default="runs/demo",
                   help="working directory for checkpoints, exports and demo.json (default: runs/demo)")
    p.add_argument("--epochs", type=int, default=budget,
                   help=f"fine-tuning budget in epochs (default {budget}, the multi-dataset suite's)")
    p.add_argument("--train-rows", type=int, default=TRAIN_ROWS,
                   help=f"train on the first N of the 2,000 training rows (default {TRAIN_ROWS})")
    p.add_argument("--pool-rows", type=int, default=POOL_ROWS,
                   help=f"the next N training rows calibrate GEEP's exit predictor, without labels (default "
                        f"{POOL_ROWS})")
    p.add_argument("--max-len", type=int, default=64, help="token limit (default 64; SST-2 rows are short)")
    p.add_argument("--json", default=None, help="results JSON to write (default DIR/demo.json)")
    p.add_argument("--plot", default=None, help="plot to write (default DIR/demo.png)")
    p.add_argument("--fresh", action="store_true", help="retrain and re-export even if results exist")
    p.add_argument("--skip-deploy", action="store_true", help="stop after training the three models")


class Phases:
    """Phase headers and their wall-clock seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.t0 = time.perf_counter()
        self._name: str | None = None
        self._start = 0.0

    def __call__(self, name: str, title: str) -> None:
        self.end()
        print(f"\n=== {title} ===", flush=True)
        self._name, self._start = name, time.perf_counter()

    def end(self) -> None:
        if self._name is not None:
            self.seconds[self._name] = round(time.perf_counter() - self._start, 1)
            self._name = None

    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 1)


def _train_all(args: argparse.Namespace, out: Path, train_ds: Any, phase: Phases) -> dict[str, Any]:
    """full, GEEP and FastBERT (teacher = that full) at the suite's budget; reused when the recipe matches."""
    import dataclasses

    from geep_deploy.atomic import atomic_write_text
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.checkpoint import load_checkpoint, save_checkpoint
    from geep_deploy.methods import GeepLossConfig
    from geep_deploy.suite.run import SUITE_DISTILL_WEIGHT, stage_epochs
    from geep_deploy.trainer import TrainConfig, train

    recipe = {"epochs": args.epochs, "train_rows": len(train_ds), "max_len": args.max_len,
              "geep_distill_weight": SUITE_DISTILL_WEIGHT, "fastbert_distill_epochs": stage_epochs("fastbert", 1)[1]}
    recipe_path = out / "recipe.json"
    same = (not args.fresh and recipe_path.is_file()
            and json.loads(recipe_path.read_text(encoding="utf-8")) == recipe)
    backbone = None
    ckpts: dict[str, Any] = {}
    for method in ("full", "geep", "fastbert"):
        path = out / f"{method}.pt"
        epochs, distill = stage_epochs(method, args.epochs)
        what = (f"{distill} distillation epochs from the `full` teacher" if method == "fastbert"
                else f"{epochs} epochs")
        phase(f"train_{method}", f"train {method} on {len(train_ds)} SST-2 rows ({what})")
        if same and path.is_file():
            print(f"reusing {path} (pass --fresh to retrain)")
            ckpts[method] = load_checkpoint(path)
            continue
        backbone = backbone or load_backbone_dir()
        cfg = TrainConfig(method=method, epochs=epochs, distill_epochs=distill, max_len=args.max_len,
                          geep=dataclasses.replace(GeepLossConfig(), distill_weight=SUITE_DISTILL_WEIGHT))
        ckpts[method] = train(backbone, train_ds, None, cfg,
                              teacher=ckpts["full"] if method == "fastbert" else None)
        save_checkpoint(ckpts[method], path)
        same = False  # a retrained teacher makes FastBERT's cached students stale
    atomic_write_text(recipe_path, json.dumps(recipe) + "\n")
    return ckpts


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from geep_deploy.cli.demo_deploy import default_predictor, deploy_and_report
    from geep_deploy.data import TextDataset, bundled_data_dir, load_split
    from geep_deploy.errors import ConfigError

    for name in ("epochs", "train_rows", "pool_rows", "max_len"):
        if getattr(args, name) < 1:
            raise ConfigError(f"demo | --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    kind = None if args.skip_deploy else default_predictor(Path(args.out))  # refused before any training
    phase = Phases()
    load_before = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = bundled_data_dir()
    all_train = load_split(data, "train")
    if args.train_rows + args.pool_rows > len(all_train):
        raise ConfigError(f"demo | --train-rows {args.train_rows} + --pool-rows {args.pool_rows} exceed the "
                          f"{len(all_train)} training rows of {data}.")

    def rows(ds: TextDataset, idx: Any) -> TextDataset:
        return TextDataset([ds.texts_a[i] for i in idx], None, [ds.labels[i] for i in idx], ds.label_names,
                           ds.source)

    train_ds = rows(all_train, range(args.train_rows))
    pool_ds = rows(all_train, range(args.train_rows, args.train_rows + args.pool_rows))
    dev = load_split(data, "dev")
    order = np.random.default_rng(42).permutation(len(dev))
    tune_ds, report_ds = rows(dev, sorted(order[: len(dev) // 2])), rows(dev, sorted(order[len(dev) // 2:]))
    print(f"SST-2 slice {data}: train on {len(train_ds)} rows; {len(pool_ds)} further train rows calibrate GEEP's "
          f"default predictor on the CPU ({f'{kind}; ' if kind else ''}unlabeled); dev split into "
          f"{len(tune_ds)} tuning rows (knobs chosen there) and {len(report_ds)} reported rows. {os.cpu_count()} CPU(s), 1-minute load average {load_before[0]:.1f}.")
    ckpts = _train_all(args, out, train_ds, phase)
    if args.skip_deploy:
        phase.end()
        print(f"\ntrained {', '.join(ckpts)} under {out}/ in {phase.total() / 60:.1f} min (--skip-deploy: nothing "
              "calibrated, exported or benched)")
        return 0
    summary = deploy_and_report(out, ckpts, pool_ds, tune_ds, report_ds, fresh=args.fresh, phase=phase)
    phase.end()
    summary.update({
        "command": " ".join(["geep-deploy", "demo", *sys.argv[2:]]) if sys.argv[1:2] == ["demo"] else "geep-deploy demo",
        "settings": {"epochs": args.epochs, "train_rows": len(train_ds), "pool_rows": len(pool_ds),
                     "tune_rows": len(tune_ds), "report_rows": len(report_ds), "max_len": args.max_len},
        "phases_s": phase.seconds, "total_s": phase.total(), "cpu_count": os.cpu_count(),
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
    })
    from geep_deploy.cli.demo_deploy import finish

    finish(summary, Path(args.json) if args.json else out / "demo.json",
           Path(args.plot) if args.plot else out / "demo.png")
    return 0
