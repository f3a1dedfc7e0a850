"""ONNX Runtime's SkipLayerNormalization rewrite on the CPU (`engines.ort.CPU_DISABLED_OPTIMIZERS`): where it
matches and what it costs; writes fusion_bench.json.

The rewrite matches in the graphs that start from hidden states (``layer{k}``, ``cont{d}``) and not in the depth
graphs, so with it on, the layer-wise walk (FastBERT, PABEE, the entropy exit) and the probe's continuations ran
the same layers on a slower kernel than `full`. This times the depth-L graph against the embed + layer1..L chain
with the rewrite off (the runtime's default) and on, an identical `full` contender giving the noise.

The benchmark is ``geep_deploy.bench.fusion_bench``.

example:
  .venv/bin/python bench/fusion_bench.py --export runs/demo/export_geep [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geep_deploy.atomic import atomic_write_text
from geep_deploy.bench.fusion_bench import run_fusion_bench

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", default="runs/demo/export_geep", help="an export with segment graphs (the demo's)")
    ap.add_argument("--data", default=None, help="dataset directory (default: the bundled SST-2 slice)")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: ORT's, one per core)")
    ap.add_argument("--out", default=str(RESULTS / "fusion_bench.json"))
    a = ap.parse_args()
    result = run_fusion_bench(a.export, a.data, a.split, a.batch_size, a.repeats, a.threads,
                              command=" ".join([".venv/bin/python", *sys.argv]))
    atomic_write_text(a.out, json.dumps(result, indent=1) + "\n")
    q = result["passes"]["ratios"]
    print(f"fused nodes with the rewrite on: {result['fused_nodes_with_rewrite']}")
    print(f"layer-wise / full: {q['layerwise_over_full']:.3f}x (rewrite on: {q['layerwise_fused_over_full']:.3f}x); "
          f"depth graph with the rewrite on: {q['full_fused_over_full']:.3f}x; noise {q['noise_again_over_full']:.3f}x")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
