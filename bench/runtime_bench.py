"""The runtime measurements behind bench/results/runtime_*.json, as one re-runnable script.

Usage (after `geep-deploy train` + `geep-deploy export` of the GEEP and FastBERT checkpoints):
  .venv/bin/python bench/runtime_bench.py --geep-export runs/export_geep --fastbert-export runs/export_fastbert

Runs `geep-deploy bench` on SST-2 dev (bundled slice, 872 rows) with ONNX Runtime on the CPU at the given batch
sizes, every method on length-sorted batches, interleaved repeats; writes JSON and a plot per precision set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from geep_deploy.cli import main as cli
    from geep_deploy.data import bundled_data_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--geep-export", required=True)
    p.add_argument("--fastbert-export", default=None)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--batch-sizes", default="64")
    p.add_argument("--methods", default="full,geep,fastbert,pabee,static")
    p.add_argument("--repeats", default="5")
    p.add_argument("--tag", default="cpu_ort_fp32")
    a = p.parse_args()
    out = ROOT / "bench" / "results" / f"runtime_{a.tag}"
    argv = ["bench", "--export", a.geep_export, "--data", str(bundled_data_dir()), "--backend", a.backend,
            "--precision", a.precision, "--batch-sizes", a.batch_sizes, "--methods", a.methods,
            "--repeats", a.repeats, "--json", f"{out}.json", "--plot", f"{out}.png"]
    if a.fastbert_export:
        argv += ["--baseline-export", f"fastbert={a.fastbert_export}"]
    print("geep-deploy " + " ".join(argv), flush=True)
    return cli(argv)


if __name__ == "__main__":
    raise SystemExit(main())
