"""Resident memory of a GeepEngine with every depth loaded vs only the full depth, each in a fresh process.

Usage:
  .venv/bin/python bench/runtime_memory.py --export runs/export_geep --data geep_deploy/datasets/sst2_demo \
      --json bench/results/runtime_memory_cpu.json

Per configuration a child process records RSS before loading, after loading, and after running the dev split
at batch 64 through every loaded depth (arenas grow on first use). Configurations: ONNX Runtime with the full
depth only; all depths as naive independent sessions; all depths sharing weights and one arena; the same with
pre-packing disabled; shared but copied instead of memory-mapped; torch with one shared ExitBert.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "ort_full_depth_only": {"backend": "onnxruntime", "all_depths": False, "share": True},
    "ort_all_depths_naive": {"backend": "onnxruntime", "all_depths": True, "share": False},
    "ort_all_depths_shared": {"backend": "onnxruntime", "all_depths": True, "share": True},
    "ort_all_depths_shared_copy": {"backend": "onnxruntime", "all_depths": True, "share": True, "mmap": False},
    "ort_all_depths_shared_noprepack": {"backend": "onnxruntime", "all_depths": True, "share": True,
                                        "no_prepack": True},
    "torch_full_depth_only": {"backend": "torch", "all_depths": False, "share": True},
    "torch_all_depths": {"backend": "torch", "all_depths": True, "share": True},
}


def child(export: str, data: str, name: str) -> dict:
    from geep_deploy.data import load_split
    from runtime.memory import rss_mb, uss_mb

    cfg = CONFIGS[name]
    base, base_u = rss_mb(), uss_mb()
    from runtime.artifacts import load_export
    from runtime.engine import GeepEngine

    L = load_export(export, verify=False).shape.num_hidden_layers
    depths = list(range(1, L + 1)) if cfg["all_depths"] else [L]
    eng = GeepEngine.load(export, cfg["backend"], "cpu", "fp32", depths=depths, fixed_depth=L,
                          share_weights=cfg["share"], verify=False,
                          disable_prepacking=bool(cfg.get("no_prepack")), mmap_weights=cfg.get("mmap", True))
    after_load, after_load_u = rss_mb(), uss_mb()
    ds = load_split(data, "dev")
    for k in depths:
        eng.predict(ds.texts_a, batch_size=64, depths=[k] * len(ds))
    after_run, after_run_u = rss_mb(), uss_mb()
    return {"config": name, **cfg, "depths_loaded": len(depths), "rss_base_mb": round(base, 1),
            "load_mb": round(after_load - base, 1), "after_runs_mb": round(after_run - base, 1),
            "uss_load_mb": round(after_load_u - base_u, 1), "uss_after_runs_mb": round(after_run_u - base_u, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--json", type=Path)
    p.add_argument("--child", choices=sorted(CONFIGS))
    p.add_argument("--configs", default=",".join(CONFIGS))
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.export, a.data, a.child)))
        return 0
    rows = []
    for name in a.configs.split(","):
        out = subprocess.run([sys.executable, __file__, "--export", a.export, "--data", a.data, "--child", name],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{name:<34} RSS load +{r['load_mb']:>7.1f} MB, after batch-64 runs +{r['after_runs_mb']:>7.1f} MB; "
              f"USS +{r['uss_load_mb']:>7.1f} / +{r['uss_after_runs_mb']:>7.1f} MB")
    if a.json:
        from geep_deploy.atomic import atomic_write_text
        from geep_deploy.machine import machine_info

        # the command goes into the JSON so docs generated from it can name it (bench/render_docs.py)
        result = {"command": " ".join([".venv/bin/python", *sys.argv]), "machine": machine_info("cpu"),
                  "export": a.export, "rows": rows}
        atomic_write_text(a.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
