"""Two costs the docs quote, measured on the full model with ONNX Runtime (CPU, fp32): writes padding_bench.json.

1. Padding at batch 64: the full-depth graph over the dev split in dataset-order batches (each padded to its own
   longest row) against length-sorted batches (what every method of `geep-deploy bench` gets). This is why the
   fair baseline for an early-exit speed-up is the length-sorted full model.
2. ORT's MatMul pre-packing at batch 1: the same graph with ``session.disable_prepacking`` on and off (off saves
   one packed weight copy per session; see runtime_memory.py for the memory side).

Noise is measured the way every wall-clock table here states it: an identical contender (``length_sorted_again``,
``prepacking_again``: same graph, same batches, its own session) runs in the same interleaved repeats, and the
ratio between the identical pair is the noise figure written next to the ratios.

The benchmark is ``geep_deploy.bench.padding_bench``.

example:
  .venv/bin/python bench/padding_bench.py --export runs/demo/export_geep [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geep_deploy.atomic import atomic_write_text
from geep_deploy.bench.padding_bench import run_padding_bench

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", default="runs/demo/export_geep", help="an export directory (the demo's GEEP export)")
    ap.add_argument("--data", default=None, help="dataset directory (default: the bundled SST-2 slice)")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--batch-size", type=int, default=64, help="batch size of the padding comparison")
    ap.add_argument("--batch1-rows", type=int, default=218, help="rows timed at batch 1 (evenly spread over the split)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="ORT intra-op threads (default: ORT's, one per core)")
    ap.add_argument("--out", default=str(RESULTS / "padding_bench.json"))
    a = ap.parse_args()
    result = run_padding_bench(a.export, a.data, a.split, a.batch_size, a.batch1_rows, a.repeats, a.threads,
                               command=" ".join([".venv/bin/python", *sys.argv]))
    atomic_write_text(a.out, json.dumps(result, indent=1) + "\n")
    p, q = result["padding"], result["prepacking"]["ratios"]
    real = p["real_token_fraction"]
    print(f"batch {p['batch_size']}: dataset order / length-sorted {p['ratios']['dataset_order_over_sorted']:.2f}x "
          f"(real tokens {real['dataset_order']:.0%} vs {real['length_sorted']:.0%}; "
          f"noise {p['ratios']['noise_sorted_again_over_sorted']:.3f}x)")
    print(f"batch 1: prepacking disabled / enabled {q['disabled_over_prepacking']:.2f}x "
          f"(noise {q['noise_again_over_prepacking']:.3f}x)")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
