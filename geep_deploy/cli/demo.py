"""Run the end-to-end demo on the bundled SST-2 slice (2,000 train rows, 872 dev rows), on the CPU.

Steps: train `geep` and `fastbert` on the packaged all-MiniLM-L6-v2, evaluate both on SST-2 dev and print per-depth
accuracy and FLOPs speed-ups side by side; then calibrate GEEP's exit table, export per-depth ONNX engines and
bench GEEP against the baselines with ONNX Runtime. Everything is written under --out (default runs/demo);
finished steps are reused unless --fresh is given.

Example:
  geep-deploy demo --out runs/demo
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="working directory for checkpoints and results")
    p.add_argument("--epochs", type=int, default=2, help="epochs per training stage (default 2)")
    p.add_argument("--max-train", type=int, default=None, help="use only the first N of the 2,000 training rows")
    p.add_argument("--max-len", type=int, default=64, help="token limit (default 64; SST-2 rows are short)")
    p.add_argument("--fresh", action="store_true", help="retrain and re-export even if results exist")
    p.add_argument("--skip-deploy", action="store_true", help="stop after training and evaluation")


def _step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.perf_counter()


def run(args: argparse.Namespace) -> int:
    from geep_deploy.atomic import atomic_write_text
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.checkpoint import load_checkpoint, save_checkpoint
    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.report import evaluate_checkpoint, format_per_depth, format_sweeps
    from geep_deploy.trainer import TrainConfig, train

    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = bundled_data_dir()
    train_ds = load_split(data, "train").subset(args.max_train)
    dev_ds = load_split(data, "dev")
    backbone = load_backbone_dir()
    results = {}
    for method in ("geep", "fastbert"):
        ckpt_path = out / f"{method}.pt"
        t0 = _step(f"train {method} on {len(train_ds)} SST-2 rows")
        if ckpt_path.is_file() and not args.fresh:
            print(f"reusing {ckpt_path} (pass --fresh to retrain)")
            ckpt = load_checkpoint(ckpt_path)
        else:
            cfg = TrainConfig(method=method, epochs=args.epochs, max_len=args.max_len)
            ckpt = train(backbone, train_ds, None, cfg)
            save_checkpoint(ckpt, ckpt_path)
        print(f"{method}: {time.perf_counter() - t0:.0f}s")
        results[method] = evaluate_checkpoint(ckpt, dev_ds)
    _step("SST-2 dev accuracy per depth (static truncation; FLOPs speed-up vs depth 6)")
    print(format_per_depth(results))
    for method, res in results.items():
        print(f"\n{method}: exit-rule sweep on the students")
        print(format_sweeps(res))
    atomic_write_text(out / "eval.json", json.dumps(results, indent=2))
    if not args.skip_deploy:
        from geep_deploy.cli.demo_deploy import deploy_steps

        deploy_steps(out, data, fresh=args.fresh, step=_step)
    print(f"\ndemo finished in {time.perf_counter() - t_start:.0f}s; results under {out}/")
    return 0
