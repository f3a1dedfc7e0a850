"""The deploy half of the demo: calibrate + export both models, show the export, bench on ONNX Runtime (CPU).

Kept apart from ``demo.py`` so the training half imports nothing of ``export``/``runtime``. Not a subcommand.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

BENCH_METHODS = "full,geep,fastbert:0.6,fastbert:0.8,pabee:2,static:3"
BENCH_BATCH_SIZES = (1, 64)


def _export(ckpt: Path, out: Path, calib_data: Path | None, fresh: bool, precisions: tuple[str, ...]) -> Path:
    from export.bundle import export_checkpoint, load_export
    from geep_deploy.errors import GeepError

    if out.is_dir() and not fresh:
        try:
            load_export(out)
            print(f"reusing {out} (pass --fresh to re-export)")
            return out
        except GeepError as e:  # a missing, stale or corrupted previous export is simply rebuilt
            print(f"rebuilding {out}: {e}")
    export_checkpoint(ckpt, out, calib_data=calib_data, precisions=precisions, force=True)
    return out


def describe_export(path: Path) -> str:
    """A short listing of what an export holds: files per folder with sizes, and the predictor's parameters."""
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    files = sorted(p for p in path.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    lines = [f"{path}: {len(files)} files, {total / 2**20:.1f} MiB"]
    folders: dict[str, list[Path]] = {}
    for p in files:
        folders.setdefault(str(p.parent.relative_to(path)), []).append(p)
    for folder, ps in folders.items():
        size = sum(p.stat().st_size for p in ps)
        names = ", ".join(p.name for p in ps[:4]) + (f", ... ({len(ps)} files)" if len(ps) > 4 else "")
        lines.append(f"  {folder + '/':<16} {size / 2**20:>8.2f} MiB  {names}")
    table = manifest.get("exit_table") or {}
    if table.get("predictor"):
        chosen = (table.get("calibration") or {}).get("chosen", {})
        lines.append(f"  exit predictor: {json.dumps(table['predictor'])}; tuned on dev: "
                     + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in chosen.items()))
    return "\n".join(lines)


def deploy_steps(out: Path, data: Path, fresh: bool, step: Callable[[str], float]) -> None:
    from runtime.benchmark import BenchConfig, format_table, plot, run_bench

    t0 = step("export geep (calibrate the exit table on train, tune on dev; fp32 + int8 ONNX)")
    geep = _export(out / "geep.pt", out / "export_geep", data, fresh, ("fp32", "int8"))
    print(f"export: {time.perf_counter() - t0:.0f}s")
    print(describe_export(geep))
    t0 = step("export fastbert (its per-layer graphs run the shrinking-batch baseline)")
    fast = _export(out / "fastbert.pt", out / "export_fastbert", None, fresh, ("fp32",))
    print(f"export: {time.perf_counter() - t0:.0f}s")
    t0 = step(f"bench on ONNX Runtime CPU fp32, SST-2 dev, batch sizes {BENCH_BATCH_SIZES}")
    cfg = BenchConfig(export=geep, data=data, split="dev", backend="onnxruntime", device="cpu",
                      precisions=("fp32",), batch_sizes=BENCH_BATCH_SIZES, methods=BENCH_METHODS,
                      baseline_exports={"fastbert": fast}, repeats=3)
    result = run_bench(cfg)
    print(format_table(result["records"]))
    print(f"bench: {time.perf_counter() - t0:.0f}s (model time medians of 3 interleaved repeats; "
          f"{result['machine']['cpu']})")
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out / 'bench.json'} and {plot(result['records'], out / 'bench.png')}")
