"""Fill the generated figure blocks of README.md and docs/*.md from the committed JSON files in bench/results/.

A block is ``<!-- figures:NAME -->`` ... ``<!-- /figures -->``; an inline figure in prose is
``<!-- value:NAME -->TEXT<!-- /value -->``. Everything between the markers is replaced by what NAME renders from
its JSON (``BLOCKS``, ``VALUES``: one ``blocks_*`` module per topic), and every block starts by naming the JSON and
the command that wrote it (``sources.Results.source``), so no figure in the docs is typed by hand. With ``check``,
``run`` rewrites nothing and returns the docs whose text differs from what their JSON renders
(tests/test_docs_figures.py runs it, so CI fails on drift). docs/results.md is written by ``results_page`` and is
not touched here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from geep_deploy.atomic import atomic_write_text
from geep_deploy.reporting import blocks_bench as bench
from geep_deploy.reporting import blocks_serving as serving
from geep_deploy.reporting import blocks_suite as suite
from geep_deploy.reporting import blocks_training as training
from geep_deploy.reporting.sources import Results

DOCS = ("README.md", "docs/runtime.md", "docs/export.md", "docs/exit_prediction.md", "docs/training.md",
        "docs/serving.md", "docs/gpu.md", "docs/how-it-works.md", "docs/measurements.md")
"""The pages with marked blocks or values, relative to the repository root."""

BLOCK = re.compile(r"(<!-- figures:([\w-]+) -->\n)(.*?)(<!-- /figures -->)", re.S)
VALUE = re.compile(r"(<!-- value:([\w.-]+) -->)(.*?)(<!-- /value -->)", re.S)

BLOCKS: dict[str, Callable[[Results], list[str]]] = {
    "demo": bench.block_demo, "demo_accuracy": bench.block_demo_accuracy,
    "ort_bench_summary": bench.block_ort_bench_summary, "ort_bench": bench.block_ort_bench,
    "int8_bench": bench.block_int8_bench, "exit_table": bench.block_exit_table, "padding": bench.block_padding,
    "memory": bench.block_memory, "export": bench.block_export, "exit_prediction": bench.block_exit_prediction,
    "train_diagnostics": training.block_train_diagnostics, "train_time": training.block_train_time,
    "train_diagnostics_ag_news": training.block_train_diagnostics_ag_news, "probe_suite": suite.block_probe_suite,
    "multi_dataset": suite.block_multi_dataset, "serving": serving.block_serving,
    "serving_threads1": serving.block_serving_threads1, "exit_modes": bench.block_exit_modes,
    "probe_auc": bench.block_probe_auc, "depth_l_all_test": training.block_depth_l_all_test,
    "fusion": bench.block_fusion, "retrain_check": training.block_retrain_check,
}
VALUES: dict[str, Callable[[Results], str]] = {
    "demo.time": bench.value_demo_time, "demo.geep_minus_full": bench.value_demo_geep_minus_full,
    "demo.geep_vs_fastbert": bench.value_demo_geep_vs_fastbert, "ort.noise": bench.value_ort_noise,
    "ort.geep_vs_pool": bench.value_geep_vs_pool, "ort.geep_vs_pool_09": bench.value_geep_vs_pool_09,
    "ort.geep_wall_over_flops_b64": bench.value_geep_wall_over_flops_b64, "table.lookups": bench.value_table_lookups,
    "table.prediction_share": bench.value_prediction_share, "padding.ratio": bench.value_padding_ratio,
    "padding.prepacking": bench.value_prepacking_cost, "memory.pool": bench.value_memory_pool,
    "pred.at_2x": bench.value_pred_at_2x, "export.fp32_onnx_ratio": bench.value_export_fp32_onnx_ratio,
    "export_size.ratio": bench.value_export_size_ratio, "md.auc": suite.value_md_auc,
    "md.distill_weight": suite.value_md_distill_weight, "serve.pool_chunking": serving.value_pool_chunking,
    "train.depth_l_gap_ag": training.value_depth_l_gap_ag, "fusion.layerwise": bench.value_fusion_cost,
    "probe0.overhead": bench.value_all_depth_l_overhead, "probe0.outside": bench.value_dispatch_outside,
}


def render_text(text: str, r: Results, where: str = "") -> str:
    """``text`` with every block and inline value replaced by what its JSON renders."""
    def block(m: re.Match) -> str:
        if m.group(2) not in BLOCKS:
            raise SystemExit(f"{where}: unknown figures block {m.group(2)!r} (known: {', '.join(BLOCKS)})")
        return m.group(1) + "\n".join(BLOCKS[m.group(2)](r)) + "\n" + m.group(4)

    def value(m: re.Match) -> str:
        if m.group(2) not in VALUES:
            raise SystemExit(f"{where}: unknown value {m.group(2)!r} (known: {', '.join(VALUES)})")
        return m.group(1) + VALUES[m.group(2)](r) + m.group(4)

    return VALUE.sub(value, BLOCK.sub(block, text))


def run(check: bool, root: Path, results: Path | None = None) -> list[str]:
    """Render (or, with ``check``, compare) every doc under the repository ``root`` from ``results`` (default
    ``root/bench/results``); returns the docs whose generated text is stale."""
    r, stale = Results(Path(root) / "bench" / "results" if results is None else results), []
    for rel in DOCS:
        path = Path(root) / rel
        old = path.read_text(encoding="utf-8")
        new = render_text(old, r, rel)
        if new != old:
            stale.append(rel)
            if not check:
                atomic_write_text(path, new)
    return stale
