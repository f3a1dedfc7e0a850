"""Size of a whole fp32 export against the checkpoint's weights: is every weight stored once?

Exports every depth graph, every segment graph, the tokenizer, an exit table calibrated on the bundled SST-2
slice and the manifest (what `geep-deploy export --calib-data` writes), then divides the bytes of the whole
directory by the bytes of the model's state dict. Sizes do not depend on training, so without ``--checkpoint``
the packaged all-MiniLM-L6-v2 with fresh exit heads is exported.

    .venv/bin/python bench/export_size.py --json bench/results/export_size.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkpoint(path: Path | None):  # a geep_deploy Checkpoint
    from geep_deploy.bench.minilm import fresh_head_checkpoint
    from geep_deploy.checkpoint import load_checkpoint

    if path is not None:
        return load_checkpoint(path), str(path)
    return fresh_head_checkpoint(), "packaged all-MiniLM-L6-v2 with fresh exit heads"


def measure(ckpt_path: Path | None) -> dict:
    from export import export_checkpoint
    from geep_deploy.data import bundled_data_dir
    from geep_deploy.machine import machine_info

    ckpt, source = checkpoint(ckpt_path)
    weights = sum(t.numel() * t.element_size() for t in ckpt.model.state_dict().values())
    with tempfile.TemporaryDirectory(prefix="geep-size-") as d:
        t0 = time.perf_counter()
        bundle = export_checkpoint(ckpt, Path(d) / "export", calib_data=bundled_data_dir(), progress=True)
        seconds = time.perf_counter() - t0
        files = {p.relative_to(bundle.root).as_posix(): p.stat().st_size
                 for p in sorted(bundle.root.rglob("*")) if p.is_file()}
        graphs = sum(1 for f in files if f.endswith(".onnx"))
    total = sum(files.values())
    return {"command": "python bench/export_size.py" + (f" --checkpoint {ckpt_path}" if ckpt_path else ""),
            "machine": machine_info("cpu"), "source": source, "checkpoint_weights_bytes": weights,
            "export_bytes": total, "ratio_export_to_weights": round(total / weights, 4), "graphs": graphs,
            "export_seconds": round(seconds, 1), "files": files}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None, help="a ckpt.pt (default: packaged MiniLM)")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "export_size.json")
    a = p.parse_args()
    from geep_deploy.atomic import atomic_write_text

    report = measure(a.checkpoint)
    atomic_write_text(a.json, json.dumps(report, indent=1) + "\n")
    print(f"export {report['export_bytes'] / 1e6:.1f} MB for {report['checkpoint_weights_bytes'] / 1e6:.1f} MB of "
          f"weights: {report['ratio_export_to_weights']}x ({report['graphs']} graphs); wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
