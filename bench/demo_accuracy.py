"""Per-depth SST-2 dev accuracy of geep, fastbert, pabee and full under an earlier demo recipe (2 epochs each,
FastBERT in two stages of 2 epochs), kept because docs/measurements.md reports it as such.

The current `geep-deploy demo` trains differently (the suite's budget, FastBERT distilled from `full`) and writes
its own bench/results/demo_sst2.json. Settings here: `TrainConfig(method, epochs=2, max_len=64)`, default seed and
learning rates, the bundled 2,000-row train slice, no per-epoch dev evaluation; every checkpoint is then evaluated
per depth on the 872-row dev split.

Resumable: a method whose checkpoint exists under --work is loaded, not retrained (its training time is read from
the checkpoint, the load averages around its training from ``<method>.train.json`` next to it), so methods can
also be trained by parallel invocations (``--methods pabee --out /tmp/x.json``) and collected by a last full run. Use a --work folder of its own: the current demo's checkpoints follow another recipe.

On a loaded machine, train with OMP_NUM_THREADS=1 (several invocations in parallel): torch's default of one thread
per core oversubscribes a busy 2-core box badly. Each method's thread count is recorded next to its training time.

Usage:  .venv/bin/python bench/demo_accuracy.py [--work runs/demo_accuracy] [--out bench/results/demo_accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from geep_deploy.atomic import atomic_write_text

METHODS = ("geep", "fastbert", "pabee", "full")
DEMO_EPOCHS, DEMO_MAX_LEN = 2, 64  # the earlier demo's recipe (the current demo: geep_deploy/cli/demo.py)
RESULTS = Path(__file__).resolve().parent / "results"


def train_or_load(method: str, work: Path, epochs: int, max_len: int) -> tuple[Any, dict[str, Any]]:
    """The method's checkpoint under ``work`` (trained now if absent) and how it was obtained."""
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.checkpoint import load_checkpoint, save_checkpoint
    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.trainer import TrainConfig, train

    path = work / f"{method}.pt"
    sidecar = path.with_suffix(".train.json")  # how the training went, kept for resumed runs
    if path.is_file():
        ckpt = load_checkpoint(path)
        hp = ckpt.hparams
        if hp.get("epochs") != epochs or hp.get("max_len") != max_len:
            raise SystemExit(f"{path} was trained with epochs {hp.get('epochs')}, max_len {hp.get('max_len')}, "
                             f"not the demo's {epochs} / {max_len}: move it away or pass another --work")
        how = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {
            "load_average_before": None, "load_average_after": None, "torch_threads": None,
            "note": "trained by an earlier run that kept no load figures (e.g. `geep-deploy demo`)"}
        return ckpt, {"checkpoint": str(path), "trained_now": False,
                      "train_seconds": ckpt.metrics.get("train_seconds"), **how}
    train_ds = load_split(bundled_data_dir(), "train")
    cfg = TrainConfig(method=method, epochs=epochs, max_len=max_len)
    load_before = list(os.getloadavg())
    ckpt = train(load_backbone_dir(), train_ds, None, cfg)
    save_checkpoint(ckpt, path)
    import torch

    how = {"load_average_before": load_before, "load_average_after": list(os.getloadavg()),
           "torch_threads": torch.get_num_threads()}
    atomic_write_text(sidecar, json.dumps(how) + "\n")
    return ckpt, {"checkpoint": str(path), "trained_now": True, "train_seconds": ckpt.metrics["train_seconds"],
                  **how}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/demo_accuracy", help="checkpoint directory (default runs/demo_accuracy)")
    ap.add_argument("--out", default=str(RESULTS / "demo_accuracy.json"))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    ap.add_argument("--max-len", type=int, default=DEMO_MAX_LEN)
    a = ap.parse_args()

    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.machine import machine_info
    from geep_deploy.report import evaluate_checkpoint

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    dev = load_split(bundled_data_dir(), "dev")
    result: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "machine": {**machine_info("cpu"), "load_average_at_start": list(os.getloadavg())},
        "data": "geep_deploy/datasets/sst2_demo", "split": "dev", "rows": len(dev),
        "settings": {"epochs": a.epochs, "max_len": a.max_len, "trainer_defaults": "TrainConfig (seed 42)"},
        "methods": {},
    }
    for method in a.methods.split(","):
        t0 = time.perf_counter()
        ckpt, how = train_or_load(method, work, a.epochs, a.max_len)
        res = evaluate_checkpoint(ckpt, dev, progress=False)
        result["methods"][method] = {**how, "per_depth": res["per_depth"], "exit_sweeps": res["exit_sweeps"]}
        print(f"{method}: {time.perf_counter() - t0:.0f}s; " + ", ".join(
            f"d{r['depth']} {r['accuracy'] * 100:.2f}%" for r in res["per_depth"]), flush=True)
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    atomic_write_text(a.out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
