"""The deploy half of the demo: calibrate (the product default), export, bench, serve, and the final report.

GEEP runs with the product's default predictor for the demo's device (`DEVICE`, the CPU):
``geep_deploy.names.DEFAULT_PREDICTOR``, the kind ``geep-deploy calibrate`` defaults to there (the layer-1 probe, or
the entropy exit over GEEP's own heads). It is calibrated by calibrate's own calls at calibrate's default flags
(`geep_deploy.cli.calibrate.calibrate_predictor`, ``save_table``, ``save_predictor``) and exported with that file as
``export --probe``/``--entropy`` passes it (``ExportOptions(probe=...)`` or ``ExportOptions(entropy=...)``). The
results say which kind ran (``predictor``).

Kept apart from ``demo.py`` so that its argument parsing imports nothing of ``export``/``runtime``. Not a
subcommand.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

BATCH_SIZES = (1, 64)
B1_ROWS = 150  # batch 1 runs one row per call: fewer rows keep the demo inside its budget
REPEATS = 3
TARGET = 2.0  # the second operating point of each method: the most accurate reaching 2x FLOPs on the tuning rows
DEVICE = "cpu"  # the demo's device (it benches ONNX Runtime CPU): GEEP runs with DEFAULT_PREDICTOR[DEVICE]
SERVE_TEXTS = ["a charming and often affecting journey", "unflinchingly bleak and desperate",
               "the acting is fine but the script is a mess", "one of the year's best films"]


def calibrate_args(out: Path) -> argparse.Namespace:
    """``geep-deploy calibrate``'s flags at their defaults for the demo's GEEP checkpoint on `DEVICE` (the demo
    hands calibrate's calls its rows itself: ``--data`` is not read)."""
    from geep_deploy.cli import calibrate

    p = argparse.ArgumentParser()
    calibrate.add_args(p)
    return p.parse_args(["--checkpoint", str(out / "geep.pt"), "--data", str(out), "--out",
                         str(out / "exit_table.npz"), "--device", DEVICE])


def default_predictor(out: Path = Path(".")) -> str:
    """The predictor kind GEEP runs with in the demo: calibrate's default for `DEVICE` (``DEFAULT_PREDICTOR``).

    Raises:
        ConfigError: a default the demo cannot show (it shows the probe and the entropy exit).
    """
    from geep_deploy.cli.calibrate import predictor_kind
    from geep_deploy.errors import ConfigError
    from geep_deploy.names import ENTROPY, PROBE

    kind = predictor_kind(calibrate_args(out))
    if kind not in (PROBE, ENTROPY):
        raise ConfigError(f"demo | the product's default predictor on {DEVICE} is {kind!r}; the demo shows GEEP with "
                          f"the {PROBE} or the {ENTROPY} exit.")
    return kind


def bench_method(knob: str) -> str:
    """The bench's method for a knob of the demo's table: ``entropy:T`` (the entropy exit over GEEP's heads) is the
    bench's ``fastbert:T`` rule on GEEP's export (the same walk, `runtime.layerwise`); the others are their own."""
    from geep_deploy.suite.protocol import GEEP_EXPORT

    family, _, tau = knob.partition(":")
    return f"fastbert:{tau}@{GEEP_EXPORT}" if family == "entropy" else knob


def _same_predictor(bundle: Any, kind: str, file: str | Path) -> bool:
    """Whether an export dispatches by the predictor of ``kind`` in ``file`` (a probe's JSON byte for byte, an
    entropy exit's threshold)."""
    from export.entropy_exit import load_entropy
    from geep_deploy.names import PROBE

    if bundle.predictor != kind:
        return False
    if kind == PROBE:
        return bundle.probe is not None and bundle.probe.read_bytes() == Path(file).read_bytes()
    return bundle.entropy is not None and bundle.entropy["threshold"] == load_entropy(file)["threshold"]


def _export(ckpt: Path, out: Path, fresh: bool, **options: Any) -> Path:
    """``export_checkpoint`` into ``out``, reused when it loads, is newer than the checkpoint and dispatches by the
    predictor file given (``probe=`` or ``entropy=``, as ``export --probe``/``--entropy`` pass it)."""
    from export.bundle import export_checkpoint, load_export
    from geep_deploy.errors import GeepError
    from geep_deploy.names import ENTROPY, PROBE

    kind = next((k for k in (PROBE, ENTROPY) if options.get(k) is not None), None)
    if out.is_dir() and not fresh and out.stat().st_mtime > ckpt.stat().st_mtime:
        try:
            bundle = load_export(out)
            if kind is None or _same_predictor(bundle, kind, options[kind]):
                print(f"reusing {out} (pass --fresh to re-export)")
                return out
        except (GeepError, OSError) as e:  # missing, stale or corrupted: rebuilt
            print(f"rebuilding {out}: {e}")
    export_checkpoint(ckpt, out, precisions=("fp32",), force=True, progress=False, **options)
    print(f"wrote {out}")
    return out


def _choose(name: str, curve: list[dict[str, Any]], depth_l_accuracy: float, max_drop: float,
            budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """The knob at the budget (``budget``: the point a calibration already chose; else chosen by its rule) and the
    most accurate one at `TARGET` x FLOPs (else the fastest)."""
    from export.calibration import choose
    from geep_deploy.suite.points import pick

    budget = budget or choose(curve, depth_l_accuracy, max_drop, None)
    fast = pick(curve, TARGET) or max(curve, key=lambda c: c["flops_speedup"])
    for what, c in (("budget", budget), (f"{TARGET:g}x", fast)):
        print(f"  {name} at {what}: {c['knob']}: tuning accuracy {100 * c['accuracy']:.2f}%, FLOPs speed-up "
              f"{c['flops_speedup']:.2f}x")
    return {"budget": budget["knob"], "fast": fast["knob"]}


def _calibrate(out: Path, ckpts: dict[str, Any], pool: Any, tune: Any) -> dict[str, Any]:
    """GEEP as `calibrate` ships it by default on `DEVICE` (its default predictor and flags: student exits, no
    escalation), FastBERT's threshold by the same rule on the same tuning rows. Returns the predictor kind, the
    knobs and the table/predictor paths."""
    import numpy as np

    from geep_deploy.cli import calibrate
    from geep_deploy.encoding import TextEncoder
    from geep_deploy.evaluate import collect_depth_logits
    from geep_deploy.suite.points import entropy_curve

    args, kind = calibrate_args(out), default_predictor(out)
    geep, fast = ckpts["geep"], ckpts["fastbert"]
    res, other = calibrate.calibrate_predictor(args, geep, pool, tune, progress=False)
    table = calibrate.save_table(res, geep, args.out)
    file = calibrate.save_predictor(args, other, geep)
    print(f"GEEP's default predictor on {DEVICE}: {kind} (geep_deploy.names.DEFAULT_PREDICTOR); calibrated on "
          f"{len(pool)} unlabeled calibration rows; knobs chosen on {len(tune)} tuning rows (budget: at most "
          f"{args.max_drop} points below the model's own depth L; one row is {100 / len(tune):.2f} points); wrote "
          f"{table} and {file}")
    knobs = {"geep": _choose(f"GEEP ({kind})", other.curve, other.figures["full_accuracy"], args.max_drop,
                             budget=other.chosen)}
    enc = TextEncoder(fast.tokenizer_json, fast.max_len).encode(tune.texts_a, tune.texts_b)
    logits = collect_depth_logits(fast.model, enc, 64, "cpu")
    labels = np.asarray(tune.labels)
    curve = entropy_curve(logits, labels, enc.lengths, fast.shape)
    knobs["fastbert"] = _choose("FastBERT (entropy)", curve, float((logits[:, -1].argmax(-1) == labels).mean()),
                                args.max_drop)
    return {"predictor": kind, "knobs": knobs, "table": table, "file": file, "max_drop": args.max_drop}


def _write_rows(ds: Any, folder: Path) -> Path:
    from geep_deploy.atomic import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "labels.txt", "\n".join(ds.label_names) + "\n")
    atomic_write_text(folder / "dev.tsv", "label\ttext\n" + "".join(f"{y}\t{t}\n" for y, t in
                                                                   zip(ds.labels, ds.texts_a)))
    return folder


def table_rows(kind: str) -> tuple[tuple[str, str, str], ...]:
    """The table's rows: (method, which knob, label); GEEP's labels name its predictor ``kind``."""
    return (("full", "full", "`full` (depth 6)"),
            ("noise", "noise", "GEEP at depth 6 (`full`'s graph and cost: the noise)"),
            ("geep", "budget", f"GEEP's default ({kind}), knob at the budget"),
            ("fastbert", "budget", "FastBERT as published, same rule"),
            ("geep", "fast", f"GEEP ({kind}), most accurate at {TARGET:g}x FLOPs (else its fastest)"),
            ("fastbert", "fast", f"FastBERT, most accurate at {TARGET:g}x FLOPs (else its fastest)"))


def predictor(d: dict[str, Any]) -> str:
    """The predictor kind GEEP ran with in the demo's results ``d`` (results written before they named it: the kind
    the served engine reported, the probe)."""
    return d.get("predictor") or d["served"]["kind"]


def deploy_and_report(out: Path, ckpts: dict[str, Any], pool: Any, tune: Any, report: Any, fresh: bool,
                      phase: Callable[[str, str], None]) -> dict[str, Any]:
    """Calibrate, export, bench, serve; returns the demo's results (``finish`` prints and writes them)."""
    from geep_deploy.bench.harness import BenchConfig, run_bench
    from geep_deploy.names import ENTROPY
    from geep_deploy.suite.protocol import GEEP_EXPORT
    from runtime.engine import GeepEngine

    phase("calibrate", f"calibrate GEEP as `geep-deploy calibrate` does by default on {DEVICE}; FastBERT's threshold "
                       "likewise")
    cal = _calibrate(out, ckpts, pool, tune)
    kind = cal["predictor"]
    phase("export", f"export full, GEEP (dispatching by its {kind}) and FastBERT: per-depth ONNX fp32")
    exports = {"geep": _export(out / "geep.pt", out / "export_geep", fresh, exit_table=cal["table"],
                               segments=None if kind == ENTROPY else False, **{kind: cal["file"]}),
               "full": _export(out / "full.pt", out / "export_full", fresh),
               "fastbert": _export(out / "fastbert.pt", out / "export_fastbert", fresh)}
    L = int(ckpts["geep"].model.num_layers)
    knobs = {"full": {"full": "full"}, "noise": {"noise": f"static:{L}"}, **cal["knobs"]}
    layout = table_rows(kind)
    methods = list(dict.fromkeys(bench_method(knobs[m][k]) for m, k, _ in layout))
    data = _write_rows(report, out / "report_rows")
    bench: dict[str, Any] = {}
    for bs in BATCH_SIZES:
        n = min(B1_ROWS, len(report)) if bs == 1 else len(report)
        phase(f"bench_b{bs}", f"bench on ONNX Runtime CPU fp32, batch {bs}, {n} reported rows, "
                              f"{len(methods)} methods, {REPEATS} interleaved repeats")
        res = run_bench(BenchConfig(export=exports["geep"], data=data, split="dev", batch_sizes=(bs,),
                                    methods=",".join(methods), repeats=REPEATS, max_rows=n, progress=False,
                                    baseline_exports={"full": exports["full"], "fastbert": exports["fastbert"],
                                                      GEEP_EXPORT: exports["geep"]}))
        if res.get("errors"):
            from geep_deploy.errors import ConfigError

            raise ConfigError("demo | the bench failed: " + "; ".join(
                f"{e.get('method')}: {e.get('reason', '')[:200]}" for e in res["errors"]))
        bench[str(bs)] = res
        for r in res["records"]:
            print(f"  {r['method']:<16} accuracy {100 * r['accuracy']:6.2f}%  FLOPs {r['flops_speedup']:.2f}x  "
                  f"wall {r['wall_speedup']:.2f}x  model {r['model_s']:.2f}s")
    phase("serve", "serve a few requests through GeepEngine (the API a service embeds)")
    with GeepEngine.load(exports["geep"], "onnxruntime", "cpu") as engine:
        res = engine.predict(SERVE_TEXTS)
        for p, text in zip(res.predictions, SERVE_TEXTS):
            print(f"  {p.label:<9} {max(p.probabilities):.3f}  depth {p.depth}/{L}  {text}")
        served = {"kind": engine.info.get("predictor"), "timings": res.timings.as_dict()}
    print(f"  exit predictor: {served['kind']} (GEEP's default on {DEVICE}: {kind}); "
          f"{1e3 * served['timings']['total_s']:.1f} ms for {len(SERVE_TEXTS)} texts")
    records = {bs: {r["method"]: r for r in b["records"]} for bs, b in bench.items()}
    table = []
    for method, which, label in layout:
        knob = knobs[method][which]
        r64, r1 = records["64"][bench_method(knob)], records["1"][bench_method(knob)]
        table.append({"row": label, "method": method, "knob": knob, "accuracy": r64["accuracy"],
                      "flops_speedup": r64["flops_speedup"], "wall_speedup_b1": r1["wall_speedup"],
                      "wall_speedup_b64": r64["wall_speedup"], "mean_depth": r64["mean_depth"]})
    noise = {bs: round(abs(records[bs][f"static:{L}"]["wall_speedup"] - 1.0), 3) for bs in records}
    return {"predictor": kind, "table": table, "noise": noise, "knobs": knobs, "max_drop": cal["max_drop"],
            "served": served, "machine": bench["64"]["machine"], "bench": {bs: b["records"] for bs, b in bench.items()},
            "exports": {k: str(v) for k, v in exports.items()}, "num_layers": L}


def format_table(d: dict[str, Any]) -> list[str]:
    """The demo's one table, as markdown (printed by the demo, rendered into the README)."""
    s = d["settings"]
    lines = [f"| configuration (knob chosen on {s['tune_rows']} tuning rows) | knob | accuracy | FLOPs x | "
             "wall x, batch 1 | wall x, batch 64 |", "|---|---|---:|---:|---:|---:|"]
    for (_, _, label), r in zip(table_rows(predictor(d)), d["table"]):  # labels from the code: the JSON keeps data
        lines.append(f"| {label} | `{r['knob']}` | {100 * r['accuracy']:.2f}% | {r['flops_speedup']:.2f} | "
                     f"{r['wall_speedup_b1']:.2f} | {r['wall_speedup_b64']:.2f} |")
    return lines


def verdict(d: dict[str, Any]) -> str:
    """One line: the product default against FastBERT, at batch 64, read against the noise."""
    rows = {(r["method"], r["knob"]): r for r in d["table"]}
    g = rows[("geep", d["knobs"]["geep"]["budget"])]
    f = rows[("fastbert", d["knobs"]["fastbert"]["budget"])]
    n, rows_n = d["noise"]["64"], d["settings"]["report_rows"]
    diff = 100 * (g["accuracy"] - f["accuracy"])
    ratio = g["wall_speedup_b64"] / f["wall_speedup_b64"]
    half = accuracy_gap_halfwidth(g["accuracy"], f["accuracy"], rows_n)
    acc = (f"{abs(diff):.2f} points {'more' if diff > 0 else 'less'} accurate" if abs(diff) > half
           else f"level in accuracy with FastBERT ({diff:+.2f} points, inside the +-{half:.2f} a difference on "
                f"{rows_n} rows can move)")
    speed = ("within the noise of FastBERT's speed" if abs(ratio - 1.0) <= n
             else f"at {ratio:.2f}x FastBERT's wall-clock speed")
    g2 = rows[("geep", d["knobs"]["geep"]["fast"])]
    f2 = rows[("fastbert", d["knobs"]["fastbert"]["fast"])]
    lead, other = (("GEEP", "FastBERT") if g2["accuracy"] >= f2["accuracy"] else ("FastBERT", "GEEP"))
    return (f"Verdict: at the same accuracy budget ({d['max_drop']} points, chosen on the tuning rows), GEEP's "
            f"default ({predictor(d)}) is {acc}{'' if abs(diff) <= half else ' than FastBERT as published'} "
            f"({100 * g['accuracy']:.2f}% vs {100 * f['accuracy']:.2f}%) and runs {speed} at batch 64 "
            f"({g['wall_speedup_b64']:.2f}x vs {f['wall_speedup_b64']:.2f}x `full`). Pushed to about {TARGET:g}x "
            f"FLOPs, {_lead(g2['accuracy'], f2['accuracy'], rows_n, lead, other)} "
            f"({100 * g2['accuracy']:.2f}% at {g2['wall_speedup_b64']:.2f}x wall-clock vs "
            f"{100 * f2['accuracy']:.2f}% at {f2['wall_speedup_b64']:.2f}x).")


def _lead(a: float, b: float, rows: int, lead: str, other: str) -> str:
    gap, half = 100 * abs(a - b), accuracy_gap_halfwidth(a, b, rows)
    if gap > half:
        return f"{lead} is {gap:.2f} points more accurate than {other}"
    return f"{lead} leads {other} by {gap:.2f} points, inside the +-{half:.2f} the rows can move (level)"


def accuracy_gap_halfwidth(a: float, b: float, rows: int) -> float:
    """Points a difference of two accuracies on ``rows`` rows can move (95%, normal approximation), without the
    per-row answers a paired interval needs: as if the two were measured on independent rows, which overstates
    the spread when, as here, both answer the same rows and mostly agree.

    Example:
        >>> round(accuracy_gap_halfwidth(0.8, 0.8, 400), 2)
        5.54
    """
    return 100 * 1.96 * math.sqrt((a * (1 - a) + b * (1 - b)) / rows)


def noise_line(d: dict[str, Any]) -> str:
    return (f"Noise: `static:6` (GEEP's export at depth 6) runs a graph of `full`'s shape and cost and timed "
            f"{100 * d['noise']['1']:.0f}% (batch 1) and "
            f"{100 * d['noise']['64']:.0f}% (batch 64) away from it; wall-clock ratios closer than that are not "
            f"distinguishable on this machine ({d['cpu_count']} CPUs, 1-minute load average "
            f"{d['load_average']['before'][0]:.1f} before, {d['load_average']['after'][0]:.1f} after).")


def timing_line(d: dict[str, Any]) -> str:
    return ("Phases: " + ", ".join(f"{k} {v:.0f} s" for k, v in d["phases_s"].items())
            + f"; total {d['total_s'] / 60:.1f} min.")


NEXT_STEPS = """Next steps:
  geep-deploy serve --export {export}       # HTTP service (docs/serving.md)
  your own data: the README's quickstart (train -> calibrate -> export -> predict -> serve)
  the multi-dataset results, GEEP against every baseline: docs/results.md"""


def plot(d: dict[str, Any], path: Path) -> Path:
    """Accuracy against wall-clock speed-up (batch 64 filled, batch 1 hollow), every row, with the noise band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    n = d["noise"]["64"]
    ax.axvspan(1 - n, 1 + n, color="grey", alpha=0.2, label=f"noise band, batch 64 (±{100 * n:.0f}%)")
    colors = {"full": "black", "noise": "grey", "geep": "tab:blue", "fastbert": "tab:orange"}
    for r in d["table"]:
        for bs, fill in (("64", True), ("1", False)):
            x = r[f"wall_speedup_b{bs}"]
            ax.errorbar([x], [100 * r["accuracy"]], xerr=[[x * d["noise"][bs]], [x * d["noise"][bs]]],
                        marker="*" if r["method"] == "full" else "o" if r["method"] == "geep" else "^",
                        color=colors[r["method"]], mfc=colors[r["method"]] if fill else "white", capsize=2,
                        linestyle="none", label=f"{r['knob']} (batch {bs})")
    ax.set_xlabel("wall-clock speed-up over `full` (ONNX Runtime CPU fp32; filled batch 64, hollow batch 1)")
    ax.set_ylabel(f"accuracy on {d['settings']['report_rows']} SST-2 dev rows (%)")
    ax.set_title(f"geep-deploy demo: GEEP's default ({predictor(d)}) vs FastBERT as published", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def finish(d: dict[str, Any], json_path: Path, plot_path: Path) -> None:
    """Print the final table, the verdict, the noise, the next steps and the timings; write JSON and plot."""
    from geep_deploy.atomic import atomic_write_text

    print("\n=== result ===")
    print("\n".join(format_table(d)))
    print(verdict(d))
    print(noise_line(d))
    print(timing_line(d))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json_path, json.dumps(d, indent=1) + "\n")
    print(f"wrote {json_path} and {plot(d, plot_path)}")
    print(NEXT_STEPS.format(export=d["exports"]["geep"]))
