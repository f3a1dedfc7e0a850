"""The docs' training figures: per-variant diagnostics (``bench/train_diagnostics.py``), training time at equal
budgets (``bench/train_time.py``) and GEEP's depth L against ``full`` on whole test splits
(``bench/depth_l_all_test.py``)."""

from __future__ import annotations

from typing import Any

from geep_deploy.reporting.format import NONE, interval, slashed, table
from geep_deploy.reporting.sources import Results


def _pcts(xs: list[float]) -> str:
    return slashed((100 * x for x in xs), "{:.1f}")


def _seed(v: dict[str, Any]) -> int:
    """A diagnostics variant's training seed; variants written before seeds were recorded used the suite's."""
    from geep_deploy.suite.run import SuiteConfig

    return SuiteConfig.seed if v.get("seed") is None else v["seed"]


DIAG_OPTIONS = {"student_ce_weight": 0.0, "distill_warmup": 0.0, "skip_weight": 1.0, "distill_weight": 1.0}  # shown when not the default


def block_train_diagnostics(r: Results, name: str = "train_diagnostics_thucnews_titles.json") -> list[str]:
    d = r(name)
    rows = []
    for v_name, v in d["variants"].items():
        fd, steps = v["final_per_depth"], v["steps"]
        early = [s["teacher_entropy"] for s in steps if s["progress"] <= 0.25]
        opts = {k: x for k, x in v["loss_options"].items() if k in DIAG_OPTIONS and x != DIAG_OPTIONS[k]}
        if _seed(v) != _seed({}):  # variants on the suite's seed show none
            opts["seed"] = _seed(v)
        label = f"{v_name} ({v['method']}{', ' + ', '.join(f'{k}={x:g}' for k, x in opts.items()) if opts else ''})"
        rows.append([label, "+".join(map(str, v["epochs"]["per_stage"])), _pcts(fd["students"]),
                     _pcts(fd["shared_path"]) if v["method"] == "geep" else NONE,
                     f"{sum(early) / len(early):.2f}" if early else NONE, f"{v['train_seconds']:.0f}"])
    return [r.source(name), "",
            *table(["variant", "epochs", "held-out accuracy % per depth (d1 / ... / dL)",
                    "shared exit path % (d1 / ... / dL-1)",
                    "teacher's mean normalised entropy, first quarter of the steps", "training s"], rows, "----r"),
            "",
            *_early_gradients(d),
            f"{d['rows']['train']} training rows (the suite's slice), {d['rows']['held_out']} held-out rows of the "
            f"same split (majority class {100 * d['held_out_majority_share']:.1f}%); training seconds include the "
            "per-epoch evaluation and the monitor, on a shared machine."]


def block_train_diagnostics_ag_news(r: Results) -> list[str]:
    return block_train_diagnostics(r, "train_diagnostics_ag_news.json")


def value_depth_l_gap_ag(r: Results) -> str:
    """GEEP's depth L minus `full`'s on the held-out rows of the AG News diagnostics, per GEEP variant."""
    d = r("train_diagnostics_ag_news.json")
    full = {_seed(v): v["final_per_depth"]["students"][-1] for v in d["variants"].values() if v["method"] == "full"}
    gaps = [f"{name} {100 * (v['final_per_depth']['students'][-1] - full[_seed(v)]):+.2f}"
            for name, v in d["variants"].items() if v["method"] == "geep" and _seed(v) in full]
    return (f"{', '.join(gaps)} points ({d['rows']['held_out']} held-out rows; each against `full` trained with "
            "the same seed)")


def block_depth_l_all_test(r: Results) -> list[str]:
    """GEEP's depth L minus `full`'s on the suite's slice, on the whole test split, and outside the slice."""
    d = r("depth_l_all_test.json")

    def cell(f: dict[str, Any] | None) -> str:
        if f is None:
            return NONE
        gap = interval(100 * f["depth_l_minus_full"], 100 * f["ci95"][0], 100 * f["ci95"][1])
        return f"{gap} ({f['rows']:,} rows)"

    rows = [[n, x["test_split"], cell(x["suite_slice"]), cell(x["outside_suite_slice"]), cell(x["all_rows"])]
            for n, x in d["datasets"].items()]
    return [r.source("depth_l_all_test.json"), "",
            "GEEP's depth L minus `full`, points, with a 95% paired bootstrap interval over the rows (the suite's "
            "own `geep` and `full` checkpoints; SST-2's slice is its whole dev split, of which the suite reports "
            "half):", "",
            *table(["dataset", "split", "the suite's test slice", "the rest of the split", "the whole split"], rows,
                   "--r")]


def _early_gradients(d: dict[str, Any]) -> list[str]:
    """The reference run's gradient norms on the students' heads while the teacher is still near-uniform."""
    ref = next((v for v in d["variants"].values() if v["method"] == "geep" and v["steps"]), None)
    if ref is None:
        return []
    early = [s for s in ref["steps"] if s["teacher_entropy"] >= 0.9]
    late = [s for s in ref["steps"] if s["progress"] >= 0.5]
    if not early or not late:
        return []

    def mean(rows: list[dict[str, Any]], term: str) -> float:
        return sum(s["grad_norm"][term]["students"] for s in rows) / len(rows)

    return [f"Gradient norm on the students' heads (reference run, unweighted terms): while the teacher's "
            f"entropy is at least 0.9 ({len(early)} recorded steps), distillation {mean(early, 'distill'):.3f} "
            f"against {mean(early, 'student_ce'):.3f} for gold-label CE; in the second half of training "
            f"{mean(late, 'distill'):.3f} against {mean(late, 'student_ce'):.3f}.", ""]


def block_train_time(r: Results) -> list[str]:
    d = r("train_time.json")
    rec = d["records"]
    rows = [[m, "+".join(map(str, x["budget_epochs"])),
             " + ".join(f"{v:.1f} ({k})" for k, v in x["seconds_per_epoch"].items()), f"{x['seconds_at_budget']:.0f}"]
            for m, x in rec.items()]
    return [r.source("train_time.json"), "",
            *table(["method", "epochs at the budget", "seconds per epoch of each stage (median)",
                    "seconds at the budget"], rows, "---r"), "",
            f"{d['rows']} SST-2 rows per epoch, batch {d['batch_size']}, {d['max_len']} tokens, medians of "
            f"{d['repeats']} interleaved repeats. GEEP / FastBERT "
            + ("as published (`full`'s epochs + distillation): " if d.get("fastbert_teacher") == "full"
               else "at equal epochs (FastBERT's own teacher; the previous protocol): ")
            + f"{d['geep_over_fastbert']:.2f}; "
            f"GEEP / PABEE: {d['geep_over_pabee']:.2f}; noise (two identical `full` runs): "
            f"{100 * d['noise']:.0f}%."]


RETRAIN_CHECKS = ("retrain_check/weibo_seed43_fastbert.json", "retrain_check/thucnews_titles_seed43_pabee.json")
"""The committed retrain checks the training page quotes (``bench/retrain_check.py``)."""


def block_retrain_check(r: Results) -> list[str]:
    lines = []
    for name in RETRAIN_CHECKS:
        d = r(name)
        verdict = ("reproduced bit for bit (same weights hash)" if d["identical"] else
                   f"{len(d['differ'])} of {d['tensors']} tensors differ, by at most {d['max_abs_diff']:.3g}")
        lines += [r.source(name), "",
                  f"- {d['dataset']} seed {d['seed']}, {d['method']}, retrained on {d['machine']['cpu']} "
                  f"({d['machine']['cpu_count']} cores, torch {d['machine'].get('torch', NONE)}) against the "
                  f"checkpoint the suite cached there: {verdict}; {d['tensors']} tensors compared.", ""]
    return lines[:-1]
