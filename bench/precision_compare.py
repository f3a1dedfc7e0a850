"""Latency across precisions: one table and one plot of precision x method x batch, in ms and as speed-up vs fp32
``full`` at the same batch size.

    python bench/precision_compare.py RESULT.json [MORE.json ...] --out DIR

RESULT is a ``geep-deploy bench --precision fp32,fp16,bf16,... --json`` file or a ``bench/gpu_check.py`` JSON (its
``bench_<precision>`` sections). Writes ``DIR/precision_compare.md`` and ``DIR/precision_compare.png`` (both
written, then renamed). ms is the median batch latency (p50, end to end); the speed-up is fp32 ``full``'s model
time over the row's model time, on the same rows, backend and batch size. int8 means what
``export.trt_build.INT8_MEANING`` says.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def records_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Bench records from a bench JSON or a gpu_check JSON."""
    if "records" in data:
        return list(data["records"])
    out = []
    for name, sec in (data.get("sections") or {}).items():
        if name.startswith("bench_") and sec.get("status") == "ok":
            out += sec.get("result", {}).get("records", [])
    return out


def compare(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (precision, method, batch): p50 ms and speed-up vs fp32 ``full`` at that batch (None without)."""
    base = {r["batch_size"]: r["model_s"] for r in records if r["method"] == "full" and r["precision"] == "fp32"}
    rows = []
    for r in records:
        b = base.get(r["batch_size"])
        rows.append({"precision": r["precision"], "method": r["method"], "batch_size": r["batch_size"],
                     "p50_ms": r["batch_latency_ms"]["p50"], "p99_ms": r["batch_latency_ms"].get("p99"),
                     "speedup_vs_fp32_full": round(b / r["model_s"], 3) if b and r["model_s"] else None,
                     "accuracy": r.get("accuracy")})
    order = {"fp32": 0, "tf32": 1, "fp16": 2, "bf16": 3, "int8": 4}
    return sorted(rows, key=lambda x: (x["batch_size"], x["method"], order.get(x["precision"], 9)))


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| batch | method | precision | p50 ms | p99 ms | speed-up vs fp32 full | accuracy |",
             "|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        sp = "-" if r["speedup_vs_fp32_full"] is None else f"{r['speedup_vs_fp32_full']:.2f}x"
        p99 = "-" if r["p99_ms"] is None else f"{r['p99_ms']:.2f}"
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        lines.append(f"| {r['batch_size']} | {r['method']} | {r['precision']} | {r['p50_ms']:.2f} | {p99} | {sp} | "
                     f"{acc} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    """One panel per batch size: grouped bars of speed-up vs fp32 full, a bar per precision within each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch_size"] for r in rows})
    precisions = list(dict.fromkeys(r["precision"] for r in rows))
    fig, axes = plt.subplots(1, len(batches), figsize=(4.5 * len(batches), 4), squeeze=False)
    for ax, bs in zip(axes[0], batches):
        methods = list(dict.fromkeys(r["method"] for r in rows if r["batch_size"] == bs))
        w = 0.8 / max(len(precisions), 1)
        for i, p in enumerate(precisions):
            ys = [next((r["speedup_vs_fp32_full"] or 0.0 for r in rows if (r["batch_size"], r["method"],
                        r["precision"]) == (bs, m, p)), 0.0) for m in methods]
            ax.bar([j + i * w for j in range(len(methods))], ys, width=w, label=p)
        ax.set_xticks([j + 0.4 - w / 2 for j in range(len(methods))], methods, rotation=30, fontsize=7)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(f"batch {bs}")
        ax.set_ylabel("speed-up vs fp32 full (model time)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path, help="bench --json or gpu_check.py JSON files")
    ap.add_argument("--out", type=Path, required=True, help="folder for precision_compare.md and .png")
    args = ap.parse_args(argv)
    recs = []
    for p in args.results:
        try:
            recs += records_of(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as e:
            print(f"precision_compare | cannot read {p}: {e}", file=sys.stderr)
            return 1
    if not recs:
        print("precision_compare | no bench records in the given files (run `geep-deploy bench --precision "
              "fp32,fp16 --json F` first).", file=sys.stderr)
        return 1
    rows = compare(recs)
    args.out.mkdir(parents=True, exist_ok=True)
    md = args.out / "precision_compare.md"
    tmp = md.with_name(f".{md.name}.tmp")
    tmp.write_text(markdown(rows), encoding="utf-8")
    os.replace(tmp, md)
    plot(rows, args.out / "precision_compare.png")
    print(markdown(rows), end="")
    print(f"wrote {md} and {args.out / 'precision_compare.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
