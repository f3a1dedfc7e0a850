"""The docs' blocks and values from the single-machine benches: the demo and its accuracy per depth, ONNX Runtime
fp32 and int8 benches, the exit table, padding and pre-packing, memory, export, exit prediction, GEEP's exit modes
and the probe's ROC AUC.

Noise: wall-clock ratios are shown with the spread of two identical methods run in the same bench (``full`` and
``static:L``; ``length_sorted_again``; ``prepacking_again``), and the text says "within noise" only where a
difference is smaller than that spread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geep_deploy.reporting.all_depth_l import load_checks, per_set_text
from geep_deploy.reporting.format import machine, pct, sci, table
from geep_deploy.reporting.sources import Results
from geep_deploy.suite.datasets import DATASETS

# ---- demo accuracy (bench/demo_accuracy.py) ---------------------------------------------------------------------

def _per_depth(r: Results) -> tuple[dict[str, Any], list[str], int]:
    d = r("demo_accuracy.json")
    methods = [m for m in ("geep", "fastbert", "full", "pabee") if m in d["methods"]]
    L = max(x["depth"] for m in methods for x in d["methods"][m]["per_depth"])
    return d, methods, L


def _acc(d: dict[str, Any], method: str, k: int) -> float | None:
    return next((x["accuracy"] for x in d["methods"][method]["per_depth"] if x["depth"] == k), None)


def block_demo_accuracy(r: Results) -> list[str]:
    d, methods, L = _per_depth(r)
    geep = d["methods"]["geep"]["per_depth"]
    rows = []
    for k in range(1, L + 1):
        fx = next(x["flops_speedup"] for x in geep if x["depth"] == k)
        rows.append([str(k), f"{fx:.2f}"] + ["" if (a := _acc(d, m, k)) is None else pct(a) for m in methods])
    def trained(m: str) -> str:
        x = d["methods"][m]
        how = []
        if x.get("torch_threads"):
            how.append(f"{x['torch_threads']} torch thread{'s' if x['torch_threads'] > 1 else ''}")
        if x.get("load_average_before") and x.get("load_average_after"):
            how.append(f"load average {x['load_average_before'][0]:.1f} -> {x['load_average_after'][0]:.1f}")
        return f"`{m}` {x['train_seconds']:.0f} s" + (f" ({', '.join(how)})" if how else "")

    s = d["settings"]
    return [r.source("demo_accuracy.json"), "",
            *table(["depth", "FLOPs x"] + methods, rows), "",
            f"SST-2 dev ({d['rows']} rows); each column is one checkpoint evaluated at every depth it trained "
            f"(`full` trains depth {L} only). Training wall-clock ({s['epochs']} epochs per stage, max length "
            f"{s['max_len']}, on {machine(d['machine'], load=False)}; the machine was shared, so these are upper "
            "bounds; load figures where the training run recorded them): "
            + ", ".join(trained(m) for m in methods) + "."]


DEMO = "demo_sst2.json"


def block_demo(r: Results) -> list[str]:
    """The demo's final table, verdict, noise and phase timings, as `geep-deploy demo` prints them."""
    from geep_deploy.cli.demo_deploy import format_table, noise_line, predictor, timing_line, verdict

    d = r(DEMO)
    s = d["settings"]
    return [r.source(DEMO), "", *format_table(d), "",
            f"{s['train_rows']} training rows, {s['epochs']} epochs; {s['pool_rows']} further train rows (labels "
            f"unused) calibrate GEEP's exit predictors, and GEEP runs with the `{predictor(d)}` dispatch; knobs chosen on {s['tune_rows']} dev rows, figures on the other "
            f"{s['report_rows']} (batch 1: the first {d['bench']['1'][0]['rows']} of them). {verdict(d)}", "", noise_line(d), "",
            f"{timing_line(d)} Machine: {machine(d['machine'], load=False)}."]


def value_demo_time(r: Results) -> str:
    d = r(DEMO)
    la = d["load_average"]
    return (f"{d['total_s'] / 60:.1f} minutes on {d['cpu_count']} CPU cores with a 1-minute load average of "
            f"{la['before'][0]:.1f} at the start and {la['after'][0]:.1f} at the end")


def value_demo_geep_minus_full(r: Results) -> str:
    d, _, L = _per_depth(r)
    return f"{100 * (_acc(d, 'geep', L) - _acc(d, 'full', L)):+.2f} points"


def value_demo_geep_vs_fastbert(r: Results) -> str:
    d, _, L = _per_depth(r)
    ge = [k for k in range(1, L + 1) if _acc(d, "geep", k) >= _acc(d, "fastbert", k)]
    lt = [k for k in range(1, L + 1) if k not in ge]
    say = ", ".join(map(str, ge)) or "none"
    return f"at least FastBERT's accuracy at depths {say}" + (f" and below it at {', '.join(map(str, lt))}"
                                                              if lt else "")


# ---- ONNX Runtime benches (geep-deploy bench) ---------------------------------------------------------------------

def _records(r: Results, name: str) -> list[dict[str, Any]]:
    return r(name)["records"]


def _rec(recs: list[dict[str, Any]], method: str, bs: int, precision: str = "fp32") -> dict[str, Any] | None:
    return next((x for x in recs if (x["method"], x["batch_size"], x["precision"]) == (method, bs, precision)), None)


def _twins(recs: list[dict[str, Any]], precision: str | None = None) -> list[dict[str, Any]]:
    """The `static:L` records: the same model as `full`, so their wall-clock ratio to `full` is pure noise."""
    L = max(x["mean_depth"] for x in recs if x["method"] == "full")
    if not any(x["method"] == f"static:{L:g}" for x in recs):
        raise SystemExit(f"bench records have no static:{L:g} next to full: their noise is not measured")
    return [x for x in recs if x["method"] == f"static:{L:g}" and precision in (None, x["precision"])]


def noise(recs: list[dict[str, Any]], precision: str | None = None) -> float:
    """Largest relative gap between `full` and the identical `static:L` in one run (0.05 means 5%)."""
    return max(abs(max(w, 1 / w) - 1) for w in (x["wall_speedup"] for x in _twins(recs, precision)))


def _noise_line(recs: list[dict[str, Any]]) -> str:
    twins = _twins(recs)
    pairs = [f"{x['wall_speedup']:.3f}x ({x['precision']}, batch {x['batch_size']})" for x in twins]
    return (f"Noise: `{twins[0]['method']}` is the same model as `full`; its measured speed-up over `full` in this "
            f"run is {', '.join(pairs)}, so wall-clock ratios here are uncertain by about {100 * noise(recs):.0f}%.")


def _bench_rows(recs: list[dict[str, Any]], methods: list[str], with_depth: bool) -> list[list[str]]:
    rows = []
    for m in methods:
        b1, b64 = _rec(recs, m, 1), _rec(recs, m, 64)
        base = b1 or b64
        row = [m, pct(base["accuracy"])] + ([f"{base['mean_depth']:.2f}"] if with_depth else [])
        row += [f"{base['flops_speedup']:.2f}", f"{b1['wall_speedup']:.2f}" if b1 else "",
                f"{b64['wall_speedup']:.2f}" if b64 else ""]
        if with_depth:
            twin = m == "full" or m in {x["method"] for x in _twins(recs)}
            row.append("" if twin or not b64 else f"{b64['wall_speedup'] / b64['flops_speedup']:.2f}")
        rows.append(row)
    return rows


ORT = "sst2_demo_ort_cpu_fp32.json"
README_METHODS = ["full", "static:6", "geep", "geep:0.9+0", "fastbert:0.8", "pabee:2", "static:3"]


def block_ort_bench_summary(r: Results) -> list[str]:
    recs = _records(r, ORT)
    return [r.source(ORT), "",
            *table(["method", "accuracy", "FLOPs x", "wall x, batch 1", "wall x, batch 64"],
                   _bench_rows(recs, README_METHODS, False)), "", _noise_line(recs)]


def block_ort_bench(r: Results) -> list[str]:
    recs = _records(r, ORT)
    methods = list(dict.fromkeys(x["method"] for x in recs))
    return [r.source(ORT), "",
            *table(["method", "accuracy", "mean depth", "FLOPs x", "wall x, batch 1", "wall x, batch 64",
                    "wall / FLOPs (b64)"], _bench_rows(recs, methods, True)), "", _noise_line(recs)]


def compare_walls(recs: list[dict[str, Any]], a: str, b: str, bs: int) -> str:
    """`a` against `b` at one batch size, saying "within noise" only when their gap is below the run's noise."""
    ra, rb = _rec(recs, a, bs), _rec(recs, b, bs)
    gap, n = abs(ra["wall_speedup"] / rb["wall_speedup"] - 1), noise(recs)
    verdict = "within" if gap < n else "outside"
    return (f"batch {bs}: `{a}` {ra['wall_speedup']:.2f}x, `{b}` {rb['wall_speedup']:.2f}x, a {100 * gap:.0f}% gap, "
            f"{verdict} this run's {100 * n:.0f}% noise")


def value_geep_vs_pool(r: Results) -> str:
    recs = _records(r, ORT)
    return "; ".join(compare_walls(recs, "geep", "geep-pool", bs) for bs in (1, 64))


def value_geep_vs_pool_09(r: Results) -> str:
    recs = _records(r, ORT)
    return "; ".join(compare_walls(recs, "geep:0.9+0", "geep-pool:0.9+0", bs) for bs in (1, 64))


def value_ort_noise(r: Results) -> str:
    return f"{100 * noise(_records(r, ORT)):.0f}%"


def value_geep_wall_over_flops_b64(r: Results) -> str:
    recs = _records(r, ORT)
    ratios = [x["wall_speedup"] / x["flops_speedup"] for x in recs if x["batch_size"] == 64
              and x["method"].startswith("geep")]
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


INT8 = "sst2_demo_ort_cpu_fp32_vs_int8.json"


def block_int8_bench(r: Results) -> list[str]:
    recs = _records(r, INT8)
    rows = [[x["precision"], x["method"], pct(x["accuracy"]), f"{x['flops_speedup']:.2f}", f"{x['model_s']:.2f}",
             f"{x['wall_speedup']:.2f}"] for x in recs]
    f32, i8 = _rec(recs, "full", 64, "fp32"), _rec(recs, "full", 64, "int8")
    noise_by = ", ".join(f"{p} {100 * noise(recs, p):.0f}%" for p in ("fp32", "int8"))
    return [r.source(INT8), "",
            *table(["precision", "method", "accuracy", "FLOPs x", "model s (dev, batch 64)", "wall x vs own full"],
                   rows, "--rrrr"), "",
            f"The int8 full model takes {i8['model_s']:.2f} s against {f32['model_s']:.2f} s for fp32 "
            f"({f32['model_s'] / i8['model_s']:.2f}x, same run). Noise (`static:6` against `full`, identical "
            f"models): {noise_by}; ratios closer than that are not distinguishable here."]


# ---- exit table (bench/exit_table_bench.py) ---------------------------------------------------------------------

TABLE = "exit_table_bench.json"


def block_exit_table(r: Results) -> list[str]:
    d = r(TABLE)
    rows = [[f"{x['keys']:,}", f"{x['load']:.2f}", f"{x['table_mb']:g}", sci(x["lookups_per_s_hit"]),
             sci(x["lookups_per_cpu_s_hit"]), sci(x["lookups_per_s_miss"]), sci(x["inserts_per_s"])]
            for x in d["numpy_table"]]
    share = [[str(x["batch_size"]), f"{x['model_ms_per_batch']:.2f}", f"{x['predict_plus_plan_ms_per_batch']:.3f}",
              f"{x['share_percent']:.2f}%", f"{x['share_percent_cpu']:.2f}%"]
             for x in d["prediction_share"]["rows"]]
    m = d["machine"]
    return [r.source(TABLE), "",
            f"NumPy table, L = {d['num_layers']}, one process on {machine(m)} (load average "
            f"{m['load_average_at_end'][0]:.1f} at end). Wall-clock per second, and per process CPU-second:", "",
            *table(["keys", "load", "MB", "lookups/s (hit)", "per CPU-s", "lookups/s (miss)", "inserts/s"], rows),
            "", f"Exit prediction + `plan_groups` against the full MiniLM model ({_share_model(d['prediction_share'])}, "
                "length-sorted SST-2 dev batches, interleaved):",
            "", *table(["batch", "model ms", "predict + plan ms", "share (wall)", "share (CPU time)"], share)]


def value_table_lookups(r: Results) -> str:
    rows = r(TABLE)["numpy_table"]
    return ", ".join(f"{sci(x['lookups_per_cpu_s_hit'])} per CPU-second ({sci(x['lookups_per_s_hit'])}/s wall) at "
                     f"{x['keys']:,} keys" for x in rows)


def _share_model(share: dict) -> str:
    """How the model side of the prediction share ran: ``onnxruntime, 1 thread`` (files before the backend was
    recorded timed the eager torch module)."""
    threads = share.get("threads", share.get("torch_threads"))
    return f"{share.get('model_backend', 'torch')}, {threads} thread{'s' if threads != 1 else ''}"


def value_prediction_share(r: Results) -> str:
    share = r(TABLE)["prediction_share"]
    return ", ".join(f"{x['share_percent_cpu']:.2f}% of CPU time ({x['share_percent']:.2f}% wall) at batch "
                     f"{x['batch_size']}" for x in share["rows"]) + f" of the full model's ({_share_model(share)})"


# ---- padding and pre-packing (bench/padding_bench.py) -----------------------------------------------------------

PAD = "padding_bench.json"


def block_padding(r: Results) -> list[str]:
    d = r(PAD)
    p, q = d["padding"], d["prepacking"]
    bs = p["batch_size"]

    def row(label: str, part: dict[str, Any], key: str, ref: str, real: float | None = None) -> list[str]:
        x, base = part[key], part[ref]
        return [label, f"{x['median_s']:.2f}", f"{x['median_s'] / base['median_s']:.2f}",
                f"{x['median_cpu_s'] / base['median_cpu_s']:.2f}", "" if real is None else pct(real)]

    rows = [row(f"batch {bs}, dataset order", p, "dataset_order", "length_sorted",
                p["real_token_fraction"]["dataset_order"]),
            row(f"batch {bs}, length-sorted (reference)", p, "length_sorted", "length_sorted",
                p["real_token_fraction"]["length_sorted"]),
            row(f"batch {bs}, length-sorted again (noise)", p, "length_sorted_again", "length_sorted"),
            row(f"batch 1 ({q['rows']} rows), pre-packing on (reference)", q, "prepacking", "prepacking"),
            row("batch 1, pre-packing on again (noise)", q, "prepacking_again", "prepacking"),
            row("batch 1, `disable_prepacking`", q, "prepacking_disabled", "prepacking")]
    c = d["config"]
    return [r.source(PAD), "",
            f"Full model (depth {c['depth']}, {c['precision']}) on ONNX Runtime CPU, {c['rows']} SST-2 {c['split']} "
            f"rows, max length {c['max_len']}, {c['threads'] or 'default'} intra-op thread(s), medians of {c['repeats']} "
            f"interleaved repeats; {machine(d['machine'])} "
            f"(load average {d['machine']['load_average_at_end'][0]:.1f} at end). Each configuration has its own "
            "session; the repeated ones measure the noise:", "",
            *table(["configuration", "seconds per pass", "wall time vs reference", "CPU time vs reference",
                    "real tokens"], rows)]


def _noise_pct(ratio: float) -> str:
    return f"{100 * abs(ratio - 1):.0f}%"


def value_padding_ratio(r: Results) -> str:
    p = r(PAD)["padding"]
    q = p["ratios"]
    return (f"{q['cpu_dataset_order_over_sorted']:.2f}x the CPU time ({q['dataset_order_over_sorted']:.2f}x the "
            f"wall-clock) of length-sorted batches at batch {p['batch_size']}, with "
            f"{pct(p['real_token_fraction']['dataset_order'])} real tokens against "
            f"{pct(p['real_token_fraction']['length_sorted'])} (noise: {_noise_pct(q['cpu_noise_sorted_again_over_sorted'])}"
            f" in CPU time, {_noise_pct(q['noise_sorted_again_over_sorted'])} in wall-clock)")


def value_prepacking_cost(r: Results) -> str:
    q = r(PAD)["prepacking"]["ratios"]
    return (f"{100 * (q['cpu_disabled_over_prepacking'] - 1):+.0f}% CPU time "
            f"({100 * (q['disabled_over_prepacking'] - 1):+.0f}% wall-clock) at batch 1 (noise: "
            f"{_noise_pct(q['cpu_noise_again_over_prepacking'])} in CPU time, "
            f"{_noise_pct(q['noise_again_over_prepacking'])} in wall-clock)")


# ---- ONNX Runtime's SkipLayerNormalization rewrite (bench/fusion_bench.py) --------------------------------------

FUSION = "fusion_bench.json"
FUSION_ROWS = (("full", "depth-L graph (`full`), runtime default (reference)"),
               ("full_again", "same, its own session again (noise)"),
               ("full_fused", "depth-L graph, rewrite allowed"),
               ("layerwise", "embed + layer1..L (the layer-wise walk), runtime default"),
               ("layerwise_fused", "embed + layer1..L, rewrite allowed (before this setting)"))


def block_fusion(r: Results) -> list[str]:
    d = r(FUSION)
    p, c = d["passes"], d["config"]
    ref = p["full"]
    rows = [[label, f"{p[k]['median_s']:.2f}", f"{p[k]['median_s'] / ref['median_s']:.3f}",
             f"{p[k]['median_cpu_s'] / ref['median_cpu_s']:.3f}"] for k, label in FUSION_ROWS]
    fused = ", ".join(f"`{g}` {n}" for g, n in d["fused_nodes_with_rewrite"].items())
    return [r.source(FUSION), "",
            f"ONNX Runtime CPU, fp32, {c['rows']} SST-2 {c['split']} rows in length-sorted batches of "
            f"{c['batch_size']}, {c['threads'] or 'default'} intra-op thread(s), medians of {c['repeats']} "
            f"interleaved repeats; {machine(d['machine'])} (load average {d['machine']['load_average_at_end'][0]:.1f} "
            f"at end). SkipLayerNormalization nodes ORT builds with the rewrite on: {fused}. Every configuration "
            "has its own sessions:", "",
            *table(["configuration", "seconds per pass", "wall time vs reference", "CPU time vs reference"], rows)]


def value_fusion_cost(r: Results) -> str:
    q = r(FUSION)["passes"]["ratios"]
    return (f"{q['layerwise_fused_over_full']:.2f}x `full`'s wall-clock with the rewrite and "
            f"{q['layerwise_over_full']:.2f}x without it (noise {_noise_pct(q['noise_again_over_full'])})")


def value_all_depth_l_overhead(r: Results) -> str:
    """Per suite set: what the split into ``prefix`` + ``cont{L}`` costs the engines on each seed (the two graphs
    alone against the depth-L graph alone), and the check (``probe:0`` within noise) by the per-set rule, with how
    many seeds pass it one by one."""
    parts = []
    for name, seeds in load_checks(r.root, list(DATASETS)).items():
        if not seeds:
            continue
        graphs = [d["ratios"].get("graphs_probe_over_graphs_full") for d in seeds.values()]  # None: --no-graphs
        cpus = sorted({d["machine"].get("cpu", "?") for d in seeds.values()})
        parts.append(f"{name} (seeds {', '.join(map(str, seeds))}; {', '.join(cpus)}): two graphs "
                     + " / ".join("not timed" if g is None else f"{g:.3f}x" for g in graphs)
                     + f", {per_set_text(seeds)}")
    return "; ".join(parts) or "not measured yet"


OUTSIDE = "dispatch_outside_engines_cpu.json"


def value_dispatch_outside(r: Results) -> str:
    """Per work folder: the time ``full``'s dispatch and ``probe:0``'s spend outside the engines in one pass, and
    the difference as a share of ``full``'s pass (`bench/dispatch_outside_engines.py`)."""
    d = r(OUTSIDE)

    def ms(x: dict[str, Any]) -> str:  # the median and, in brackets, the range over passes
        runs = x["outside_runs_s"]
        return f"{1e3 * x['outside_s']:.1f} ms [{1e3 * min(runs):.1f}-{1e3 * max(runs):.1f}]"

    parts = [f"{Path(w['work']).parent.name} seed {Path(w['work']).name.removeprefix('seed')}: `full` "
             f"{ms(w['full'])}, `probe:0` {ms(w['probe0'])} of a {1e3 * w['full']['wall_s']:.0f} ms pass "
             f"({100 * w['extra_outside_share_of_full']:+.2f}%)" for w in d["works"]]
    return "; ".join(parts) + f" ({machine(d['machine'], load=False)})"


# ---- memory, export, exit-prediction quality ---------------------------------------------------------------------

MEM = "runtime_memory_cpu.json"
MEM_LABELS = {
    "ort_full_depth_only": "ORT, full depth only",
    "ort_all_depths_naive": "ORT, 6 depths, naive (one session each)",
    "ort_all_depths_shared": "ORT, 6 depths, `OrtWeightPool` (shared weights, memory-mapped, shared arena)",
    "ort_all_depths_shared_copy": "same, weights copied once instead of memory-mapped",
    "ort_all_depths_shared_noprepack": "same as the pool, plus `disable_prepacking=True`",
    "torch_full_depth_only": "torch, full depth only",
    "torch_all_depths": "torch, 6 depths (one `ExitBert`)",
}


def _mem(r: Results, config: str) -> dict[str, Any]:
    return next(x for x in r(MEM)["rows"] if x["config"] == config)


def block_memory(r: Results) -> list[str]:
    rows = []
    for x in r(MEM)["rows"]:
        ref = _mem(r, "torch_full_depth_only" if x["backend"] == "torch" else "ort_full_depth_only")
        rows.append([MEM_LABELS.get(x["config"], x["config"]), f"+{x['load_mb']:,.0f} MB",
                     f"+{x['after_runs_mb']:,.0f} MB", f"{x['after_runs_mb'] / ref['after_runs_mb']:.2f}x"])
    return [r.source(MEM), "",
            *table(["configuration", "RSS after load", "RSS after batch-64 runs", "vs full depth only, same backend"],
                   rows)]


def value_memory_pool(r: Results) -> str:
    base = _mem(r, "ort_full_depth_only")["after_runs_mb"]
    return (f"{_mem(r, 'ort_all_depths_shared')['after_runs_mb'] / base:.2f}x of a full-depth-only engine after "
            f"batch-64 runs ({_mem(r, 'ort_all_depths_naive')['after_runs_mb'] / base:.2f}x with one plain "
            f"session per depth)")


EXPORT = "export_minilm.json"


def block_export(r: Results) -> list[str]:
    d = r(EXPORT)
    s, dev = d["sizes"], d["dev"]["per_precision_depth"]
    fp32 = [(name, o["max_abs"]) for k, v in d["validation"].items() if k.startswith("onnx/fp32/")
            for name, o in v["outputs"].items()]
    fp32_logits = max(x for name, x in fp32 if name == "logits")
    fp32_hidden = max((x for name, x in fp32 if name != "logits"), default=None)
    L = d["layers"]

    def accs(p: str) -> list[float]:
        return [dev[p][str(k)]["accuracy"] for k in range(1, L + 1)]

    def agree(p: str) -> list[float]:
        return [dev[p][str(k)]["argmax_agree_fp32"] for k in range(1, L + 1)]

    def drop(p: str) -> float:
        return max(100 * (a - b) for a, b in zip(accs("fp32"), accs(p)))

    same16 = all(a == b for a, b in zip(accs("fp32"), accs("fp16")))
    return [r.source(EXPORT), "",
            f"- exporting {d['model']} in {', '.join(_variant_name(v) for v in s)} ({L} depth graphs and {L + 1} "
            f"segment graphs each; the Q/DQ variant: depth graphs only) took "
            f"{d['export_seconds']} s with validation;",
            f"- the ONNX fp32 directory (graphs + shared weights file) is {s['fp32']['ratio_dir_to_one_fp32_model']:.2f}x "
            f"the size of one fp32 model ({d['one_fp32_model_bytes'] / 1e6:.1f} MB); since export format 2 the torch "
            f"backend reads the same weights file, and a whole fp32 export (every graph, tokenizer, exit table, "
            f"manifest) is {value_export_size_ratio(r)} the checkpoint's weights (`bench/results/{SIZE}`, "
            f"written by `{r(SIZE)['command']}`);",
            f"- fp32 graphs match PyTorch to {fp32_logits:.1e} in the logits on the validation inputs"
            + ("" if fp32_hidden is None else f" (segment graphs' hidden states to {fp32_hidden:.1e})") + ";",
            f"- on SST-2 dev ({d['dev']['rows']} rows): fp16 "
            + ("gives the same accuracy as fp32 at every depth" if same16 else
               f"loses up to {drop('fp16'):.2f} points") +
            f"; int8 (ONNX Runtime dynamic) agrees with fp32 on {100 * min(agree('int8')):.1f}-"
            f"{100 * max(agree('int8')):.1f}% of rows and loses up to {drop('int8'):.2f} points "
            f"({pct(accs('int8')[-1])} vs {pct(accs('fp32')[-1])} at depth {L}); the Q/DQ int8 graph for TensorRT "
            f"loses up to {drop('int8_qdq'):.2f} points on ONNX Runtime;",
            "- bf16 has no ONNX Runtime CPU kernels: checked with `onnx.reference` on the validation inputs only."]


def _variant_name(folder: str) -> str:
    """An ``onnx/<folder>`` name as precision and variant (``int8_qdq`` is precision int8, variant qdq)."""
    return "int8 (Q/DQ variant)" if folder == "int8_qdq" else folder


SIZE = "export_size.json"


def value_export_size_ratio(r: Results) -> str:
    return f"{r(SIZE)['ratio_export_to_weights']:.3f}x"


def value_export_fp32_onnx_ratio(r: Results) -> str:
    return f"{r(EXPORT)['sizes']['fp32']['ratio_dir_to_one_fp32_model']:.2f}x"


PRED = "exit_prediction_sst2.json"


def block_exit_prediction(r: Results) -> list[str]:
    d = r(PRED)
    f = d["geep_predicted"]["log"]["figures"]
    rows = []
    for p in d["at_same_flops_speedup"]:
        if p["target_flops_speedup"] not in (1.5, 2.0, 3.0):
            continue
        cells = [p.get(k) for k in ("geep_predicted", "geep_entropy_dynamic", "fastbert_entropy")]
        rows.append([f"{p['target_flops_speedup']:g}x"] + [
            "not reached" if c is None else f"{pct(c['accuracy'])} ({c['flops_speedup']:.2f}x)" for c in cells])
    return [r.source(PRED), "",
            f"Consistency labels on SST-2 dev ({d['dev_rows']} rows): predicting the median depth for every row "
            f"has an MAE of {f['dev_mae_layers_constant_median']:.2f} layers, the predictor at q 0.5 has "
            f"{f['dev_mae_layers_q50_m0']:.2f}; the tuned predictor has an MAE of {f['dev_mae_layers']:.2f} layers "
            f"with {100 * f['dev_within_one_layer']:.1f}% within one layer (tuned for accuracy, so it errs deep).",
            "", "Best accuracy reaching each FLOPs speed-up (the speed-up reached in brackets):", "",
            *table(["FLOPs target", "GEEP predicted depth", "GEEP students, entropy exit", "FastBERT, entropy exit"],
                   rows)]


def value_pred_at_2x(r: Results) -> str:
    p = next(x for x in r(PRED)["at_same_flops_speedup"] if x["target_flops_speedup"] == 2.0)
    return f"{pct(p['fastbert_entropy']['accuracy'])} against {pct(p['geep_predicted']['accuracy'])}"


MODES = "demo_exit_modes.json"


def block_exit_modes(r: Results) -> list[str]:
    """GEEP's students against its shared exit path, compared at equal FLOPs (skip at k costs k + 1 layers)."""
    d = r(MODES)
    students = {x["depth"]: x for x in d["per_depth"]}
    rows = [[str(x["depth"]), f"{pct(students[x['depth']]['accuracy'])} ({students[x['depth']]['flops_speedup']:.2f}x)",
             f"{pct(x['accuracy'])} ({x['flops_speedup']:.2f}x)"] for x in d["per_depth_skip"]]
    same = [(x, students[x["depth"] + 1]) for x in d["per_depth_skip"] if x["depth"] + 1 < d["num_layers"]]
    wins = sum(s["accuracy"] > x["accuracy"] for x, s in same)
    verdict = (f"At equal FLOPs (the shared path at depth k against the student at depth k+1, k = 1..{len(same)}) "
               f"the student is more accurate {wins} time{'s' if wins != 1 else ''} of {len(same)}, by "
               f"{min(100 * (s['accuracy'] - x['accuracy']) for x, s in same):.2f} to "
               f"{max(100 * (s['accuracy'] - x['accuracy']) for x, s in same):.2f} points.")
    return [r.source(MODES), "",
            *table(["depth k", "student S_k (FLOPs x)", "shared exit path: layers 1..k, layer L, teacher (FLOPs x)"],
                   rows), "", verdict]


PROBE = "probe_auc_sst2.json"


def block_probe_auc(r: Results) -> list[str]:
    """Which signal finds the rows that need more than depth 1, and what a two-level probe dispatch buys."""
    d = r(PROBE)
    rows = [[name, f"{v:.3f}"] for name, v in d["auc"].items()]

    def best(points: list[dict], target: float) -> str:
        ok = [p for p in points if p["flops_speedup"] >= target]
        if not ok:
            return "not reached"
        p = max(ok, key=lambda p: p["accuracy"])
        return f"{pct(p['accuracy'])} ({p['flops_speedup']:.2f}x)"

    speed = [[f"{t:g}x", best(d["two_level_probe_curve"], t), best(d["students_entropy_exit"], t)]
             for t in (1.5, 2.0, 3.0)]
    return [r.source(PROBE), "",
            f"SST-2 dev ({d['dev_rows']} rows, not trained on); {pct(d['share_needing_more_than_depth_1'])} of them "
            "need more than depth 1 (consistency rule). ROC AUC of each signal for those rows:", "",
            *table(["signal", "ROC AUC"], rows), "",
            "Best accuracy reaching each FLOPs speed-up (reached in brackets): the probe's two-level dispatch (rows "
            "under a threshold answer at depth 1, the rest at depth L) against the students' entropy exit:", "",
            *table(["FLOPs target", "probe, two levels", "students, entropy exit"], speed)]
