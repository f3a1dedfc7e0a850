"""Export report for all-MiniLM-L6-v2 (``bench/export_report.py`` is its command line): export time, size against
one model, validation errors per depth, and agreement/accuracy of every precision variant on the bundled SST-2 dev
slice (ONNX Runtime, CPU).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from geep_deploy.machine import machine_info


def load_source(ckpt_path: Path | None):
    from geep_deploy.bench.minilm import fit_heads_on_frozen_states, fresh_head_checkpoint
    from geep_deploy.checkpoint import load_checkpoint

    if ckpt_path is not None and ckpt_path.is_file():
        return load_checkpoint(ckpt_path), f"trained checkpoint {ckpt_path}"
    ckpt = fresh_head_checkpoint()
    fit_heads_on_frozen_states(ckpt)
    return ckpt, ("pretrained all-MiniLM-L6-v2 encoder (frozen) with exit heads fitted as linear probes on the "
                  "bundled 2,000 train rows (no runs/geep.pt yet)")


def dev_logits(path: Path, enc, batches, threads: int) -> tuple[np.ndarray, float]:
    from engines.registry import open_engine
    from geep_deploy.encoding import pad_batch

    eng = open_engine("onnxruntime", path, threads=threads, check_inputs=False)
    out = np.zeros((len(enc), 2), dtype=np.float32)
    t0 = time.perf_counter()
    for idx in batches:
        feed = pad_batch(enc.take(idx))
        out[idx] = eng.infer(feed)["logits"]
    return out, time.perf_counter() - t0


def run_export_report(checkpoint: Path | None, work_dir: Path,
                      precisions: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8"), eval_depths: str = "all",
                      dev_rows: int | None = None, threads: int = 2, keep: Path | None = None,
                      command: str = "") -> dict:
    """Export ``checkpoint`` (or MiniLM with fitted heads, see ``load_source``) at every precision in a temporary
    folder under ``work_dir`` (or into ``keep``), and measure it; the result JSON's record."""
    from export import export_checkpoint
    from export.onnx_export import export_graph
    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.encoding import TextEncoder, length_sorted_batches
    from geep_deploy.names import QDQ, variant_dir

    ckpt, source = load_source(checkpoint)
    L = ckpt.model.num_layers
    precisions = tuple(precisions)
    report: dict = {"command": command, "machine": machine_info("cpu"), "model": source, "layers": L}
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        out = keep or Path(tmp) / "minilm"
        t0 = time.perf_counter()
        b = export_checkpoint(ckpt, out, precisions=precisions, force=keep is not None, progress=True)
        report["export_seconds"] = round(time.perf_counter() - t0, 1)
        m = b.manifest
        one = len(export_graph(ckpt.model, "depth", L).SerializeToString())
        sizes = {}
        # every graph variant by its folder name: fp32, fp16, bf16, int8 (ORT dynamic), int8_qdq (for TensorRT)
        variants = [(p, "") for p in b.precisions()] + ([("int8", QDQ)] if "int8" in b.precisions() else [])
        for p, v in variants:
            d = b.root / "onnx" / variant_dir(p, v)
            depth_files = [d / f"depth{k}.onnx" for k in b.depths]
            total = sum(f.stat().st_size for f in d.iterdir())
            depth_only = sum(f.stat().st_size for f in depth_files) + (d / "weights.bin").stat().st_size
            sizes[variant_dir(p, v)] = {"dir_bytes": total, "depth_graphs_plus_weights_bytes": depth_only,
                                        "ratio_dir_to_one_fp32_model": round(total / one, 3),
                                        "ratio_depths_to_one_fp32_model": round(depth_only / one, 3)}
        report["one_fp32_model_bytes"] = one
        report["sizes"] = sizes
        report["validation"] = {a["file"]: a["validation"] for a in m["artifacts"] if a.get("validation")}
        report["not_validated"] = m["not_validated"]

        dev = load_split(bundled_data_dir(), "dev")
        texts, labels = dev.texts_a[: dev_rows], np.asarray(dev.labels[: dev_rows])
        enc_ = TextEncoder(ckpt.tokenizer_json, ckpt.max_len)
        enc = enc_.encode(texts)
        batches = length_sorted_batches(enc.lengths, 64)
        depths = b.depths if eval_depths == "all" else [int(x) for x in eval_depths.split(",")]
        agree: dict = {}
        fp32_logits: dict[int, np.ndarray] = {}
        for p, v in sorted(variants, key=lambda pv: pv != ("fp32", "")):
            key = variant_dir(p, v)
            agree[key] = {}
            for k in depths:
                path = b.find(depth=k, precision=p, variant=v).path
                try:
                    logits, secs = dev_logits(path, enc, batches, threads)
                except Exception as e:  # record what ORT cannot run
                    agree[key][k] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
                    print(f"{key} depth{k}: not runnable on ORT CPU", flush=True)
                    continue
                pred = logits.argmax(-1)
                if p == "fp32":
                    fp32_logits[k] = logits
                diff = np.abs(logits - fp32_logits[k])
                agree[key][k] = {"accuracy": float((pred == labels).mean()),
                               "argmax_agree_fp32": float((pred == fp32_logits[k].argmax(-1)).mean()),
                               "max_abs_logit_diff_fp32": float(diff.max()),
                               "mean_abs_logit_diff_fp32": float(diff.mean()),
                               "predicted_positive_rate": float(pred.mean()),
                               "ort_seconds": round(secs, 2)}
                print(key, k, agree[key][k], flush=True)
        report["dev"] = {"rows": len(texts), "batch": 64, "threads": threads,
                         "note": "ONNX Runtime CPU, length-sorted batches; bf16 has no ORT CPU kernels",
                         "per_precision_depth": agree}
    return report
