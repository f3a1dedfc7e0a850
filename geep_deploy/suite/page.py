"""Render ``docs/results.md`` and its plots from the per-dataset summary JSON files of the evaluation.

The page is generated (tables, goal checks, plots) so it always matches the committed JSON; the hand-written
discussion lives in ``<results>/notes.md`` and is included verbatim at the end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from geep_deploy.atomic import atomic_write_text
from geep_deploy.errors import ConfigError
from geep_deploy.suite.datasets import DATASETS
from geep_deploy.suite.points import TARGET_SLACK, frontier, noise_knob

METHODS = ("geep", "probe", "probe_esc", "probe_skip", "fastbert", "pabee", "static")
LABELS = {"full": "full", "geep": "GEEP, token table", "probe": "GEEP, layer-1 probe",
          "probe_esc": "GEEP, probe + escalation", "probe_skip": "GEEP, probe, shared exit path",
          "fastbert": "FastBERT (entropy)",
          "pabee": "PABEE (patience)", "static": "static truncation"}
STYLE = {"full": ("k", "*"), "geep": ("tab:blue", "o"), "probe": ("tab:purple", "D"),
         "probe_esc": ("tab:pink", "P"), "probe_skip": ("tab:red", "X"), "fastbert": ("tab:orange", "^"),
         "pabee": ("tab:green", "v"), "static": ("tab:gray", "s")}
GEEP_PREDICTORS = ("geep", "probe", "probe_esc", "probe_skip")
GOAL_POINTS = 0.5
FULL_GOAL_POINTS = 1.0  # GEEP's best predictor at 2x against `full`
FASTBERT_GOAL_POINTS = 0.3  # ... and against FastBERT at 2x; also "equal accuracy" for the wall-clock comparison
AUC_GOAL = 0.80
PROBE_COST_GOAL = 0.03  # the probe's own time (features, table, model) over batch-64 model time
STUDENT_GOAL_POINTS = 1.0  # GEEP's depths 1..L-1 (best exit path) against FastBERT's students, on average
DEPTH_L_GOAL_POINTS = 0.5  # GEEP's depth L against `full`
_EPS_POINTS = 1e-9  # accuracy gaps are sums of 1/n steps: -0.3 can arrive as -0.30000000000000027


def within(gap_points: float, goal_points: float) -> bool:
    """``gap_points`` (GEEP minus a reference, in points) is at most ``goal_points`` below zero, float noise aside."""
    return gap_points >= -goal_points - _EPS_POINTS
CHANCE_MARGIN = 0.02  # a classifier within 2 points of the majority-class share is "at chance"


def load_summaries(results: Path) -> list[dict[str, Any]]:
    """The per-dataset JSON files in the suite's dataset order (others after, by name)."""
    files = sorted(Path(results).glob("*.json"))
    if not files:
        raise ConfigError(f"suite | no summary JSON under {results}. Run bench/multi_dataset.py first.")
    order = {n: i for i, n in enumerate(DATASETS)}
    out = []
    for f in files:
        try:
            out.append(json.loads(f.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"suite | {f} is not a readable summary ({e}). Re-run bench/multi_dataset.py for "
                              "that dataset (finished steps are reused).") from None
    return sorted(out, key=lambda s: (order.get(s["dataset"]["name"], len(order)), s["dataset"]["name"]))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _x(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}x"


def _auc(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _wall(s: dict[str, Any], knob: str, bs: str) -> float | None:
    rec = (s.get("bench") or {}).get(bs, {}).get("records", {}).get(knob)
    return None if rec is None else rec["wall_speedup"]


def point_rows(s: dict[str, Any]) -> list[list[str]]:
    """Table rows: full, then every method at every target speed-up."""
    full = s["curves"]["full"][0]
    rows = [["full", "depth L", _pct(full["accuracy"]), _x(full["flops_speedup"]), _x(_wall(s, "full", "1")),
             _x(_wall(s, "full", "64"))]]
    for i, t in enumerate(s["targets"]):
        for m in METHODS:
            if m not in s["points"]:
                continue
            p = s["points"][m][i]
            if p is None:
                rows.append([f"{LABELS[m]} @{t:g}x", "not reached", "–", "–", "–", "–"])
                continue
            rows.append([f"{LABELS[m]} @{t:g}x", f"`{p['knob']}`", _pct(p["accuracy"]), _x(p["flops_speedup"]),
                         _x(_wall(s, p["knob"], "1")), _x(_wall(s, p["knob"], "64"))])
    return rows


LEARN_MARGIN = 0.01  # a set "learns" when some classifier beats the majority-class share by more than this


def degenerate(s: dict[str, Any]) -> bool:
    """No classifier of any method (nor `full`) beats the majority-class share by more than a point: the set did
    not learn, so its accuracy comparisons say nothing."""
    share = s.get("majority_share")
    accs = [a for v in s["per_depth_accuracy"].values() for a in v] + [s["full_accuracy"]]
    return share is not None and all(a <= share + LEARN_MARGIN for a in accs)


def best_geep(s: dict[str, Any], i: int) -> tuple[str, dict[str, Any]] | tuple[None, None]:
    """GEEP's predictor at target ``i`` (table, probe, probe + escalation, probe over the shared exit path) that
    was most accurate on the rows that choose operating points (``held_out``), as every knob is chosen:
    (method, point)."""
    found = [(m, s["points"][m][i]) for m in GEEP_PREDICTORS if s["points"].get(m) and s["points"][m][i]]
    if not found:
        return None, None
    return max(found, key=lambda mp: (_chosen_on(mp[1])["accuracy"], _chosen_on(mp[1])["flops_speedup"]))


def _chosen_on(p: dict[str, Any]) -> dict[str, Any]:
    """A point's figures on the rows it was chosen on (its own when it records none)."""
    return p.get("held_out") or p


def probe_cost(s: dict[str, Any]) -> float | None:
    """The probe's own time over model time at batch 64, at its 2x point (None when not benched)."""
    p = s["points"].get("probe", [None] * len(s["targets"]))[s["targets"].index(2.0)]
    rec = (s.get("bench") or {}).get("64", {}).get("records", {}).get(p["knob"]) if p else None
    if not rec or rec.get("exit_s") is None or not rec.get("model_s"):
        return None
    return rec["exit_s"] / rec["model_s"]


def equal_accuracy_point(s: dict[str, Any], accuracy: float) -> tuple[str, dict[str, Any], float] | None:
    """GEEP's fastest timed point (any predictor, any target) at most ``FASTBERT_GOAL_POINTS`` below ``accuracy``:
    (method, point, batch-64 wall speed-up), or None when none is that accurate."""
    best = None
    for m in GEEP_PREDICTORS:
        for p in s["points"].get(m) or []:
            w = _wall(s, p["knob"], "64") if p else None
            if w is not None and within(100 * (p["accuracy"] - accuracy), FASTBERT_GOAL_POINTS) and (
                    best is None or w > best[2]):
                best = (m, p, w)
    return best


def goal_checks(s: dict[str, Any]) -> dict[str, Any]:
    """GEEP's best predictor at 2x against full and FastBERT; per target the accuracy gap and batch-64 wall."""
    full = s["full_accuracy"]
    i2 = s["targets"].index(2.0)
    m2, g2 = best_geep(s, i2)
    f2 = s["points"]["fastbert"][i2]
    out: dict[str, Any] = {"geep_2x_method": m2,
                           "geep_2x_minus_full_points": None if g2 is None else 100 * (g2["accuracy"] - full),
                           "geep_2x_minus_fastbert_points": None if g2 is None or f2 is None
                           else 100 * (g2["accuracy"] - f2["accuracy"]),
                           "probe_auc": (s.get("hard_row_auc") or {}).get("probe"),
                           "probe_cost_b64": probe_cost(s)}
    vs = []
    for i, t in enumerate(s["targets"]):
        m, g = best_geep(s, i)
        f = s["points"]["fastbert"][i]
        if g is None or f is None:
            continue
        gw, fw = _wall(s, g["knob"], "64"), _wall(s, f["knob"], "64")
        eq = equal_accuracy_point(s, f["accuracy"])
        vs.append({"target": t, "method": m, "accuracy_points": 100 * (g["accuracy"] - f["accuracy"]),
                   "wall64_geep": gw, "wall64_fastbert": fw,
                   "geep_wall_over_flops": None if gw is None else gw / g["flops_speedup"],
                   "equal_accuracy": None if eq is None or fw is None else {
                       "method": eq[0], "knob": eq[1]["knob"], "wall64_geep": eq[2], "met": eq[2] >= fw}})
    out["geep_vs_fastbert"] = vs
    return out


def prediction_goal_row(s: dict[str, Any]) -> list[str]:
    """One row of the exit-prediction goals table."""
    name = s["dataset"]["name"]
    if degenerate(s):
        return [name, _pct(s["full_accuracy"]), "n/a: no classifier beats the majority class", "–", "–", "–",
                "–", "–"]
    g = goal_checks(s)
    a, df, dfb = g["probe_auc"], g["geep_2x_minus_full_points"], g["geep_2x_minus_fastbert_points"]
    vs = "; ".join(f"{v['target']:g}x: {v['accuracy_points']:+.2f} pts, {_x(v['wall64_geep'])} vs "
                   f"{_x(v['wall64_fastbert'])}" + ("" if v["equal_accuracy"] is None else
                                                   f" (at equal accuracy GEEP `{v['equal_accuracy']['knob']}` "
                                                   f"{_x(v['equal_accuracy']['wall64_geep'])}: "
                                                   f"{_met(v['equal_accuracy']['met'])})")
                   for v in g["geep_vs_fastbert"])
    ratio = next((v["geep_wall_over_flops"] for v in g["geep_vs_fastbert"] if v["target"] == 2.0), None)
    cost = g["probe_cost_b64"]
    return [name, _pct(s["full_accuracy"]),
            "–" if a is None else f"{a:.2f} ({_met(a >= AUC_GOAL)})",
            "–" if cost is None else f"{100 * cost:.1f}% ({_met(cost <= PROBE_COST_GOAL)})",
            "–" if dfb is None else f"{dfb:+.2f} ({_met(within(dfb, FASTBERT_GOAL_POINTS))}; {LABELS[g['geep_2x_method']]})",
            "–" if df is None else f"{df:+.2f} ({_met(within(df, FULL_GOAL_POINTS))})",
            vs or "–", "–" if ratio is None else f"{ratio:.2f}"]


def training_checks(s: dict[str, Any]) -> dict[str, Any]:
    """Training goals: GEEP's depths 1..L-1 against FastBERT's students, depth L against full, heads at chance.

    GEEP's accuracy at a depth is its better exit there: the student, or the shared exit path (which costs one
    layer more) when that is more accurate.
    """
    geep, fb = s["per_depth_accuracy"]["geep"], s["per_depth_accuracy"]["fastbert"]
    shared = s.get("per_depth_shared_path") or []
    L = len(geep)
    best = [max(geep[k], shared[k]) if k < len(shared) else geep[k] for k in range(L - 1)]
    chance = s["majority_share"] + CHANCE_MARGIN
    stuck = [k + 1 for k in range(L - 1) if geep[k] <= chance < fb[k]]
    secs = s.get("train_seconds") or {}
    return {"students_mean_points": 100 * (sum(best) - sum(fb[: L - 1])) / (L - 1),
            "students_only_mean_points": 100 * (sum(geep[: L - 1]) - sum(fb[: L - 1])) / (L - 1),
            "shared_path_better_at": [k + 1 for k in range(min(L - 1, len(shared))) if shared[k] > geep[k]],
            "geep_at_chance_where_fastbert_learns": stuck,
            "depth_l_minus_full_points": 100 * (geep[-1] - s["full_accuracy"]),
            "depth_l_ci95_points": [100 * x for x in s["depth_l_minus_full_ci95"][1:]]
            if s.get("depth_l_minus_full_ci95") else None,
            "train_seconds": {m: secs.get(m) for m in ("geep", "fastbert", "pabee")}}


def goal_tally(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """How many of the sets that learn meet each goal: {goal: [met, of]}, for the Goals section's summary lines."""
    learn = [s for s in summaries if not degenerate(s)]
    pred = [goal_checks(s) for s in learn]
    train = [training_checks(s) for s in learn]

    def count(oks: list[bool | None]) -> list[int]:
        return [sum(1 for ok in oks if ok), len(learn)]

    return {
        "sets_that_learn": [s["dataset"]["name"] for s in learn],
        "probe_auc": count([g["probe_auc"] is not None and g["probe_auc"] >= AUC_GOAL for g in pred]),
        "probe_cost": count([g["probe_cost_b64"] is not None and g["probe_cost_b64"] <= PROBE_COST_GOAL
                             for g in pred]),
        "fastbert_2x": count([g["geep_2x_minus_fastbert_points"] is not None
                              and within(g["geep_2x_minus_fastbert_points"], FASTBERT_GOAL_POINTS) for g in pred]),
        "full_2x": count([g["geep_2x_minus_full_points"] is not None
                          and within(g["geep_2x_minus_full_points"], FULL_GOAL_POINTS) for g in pred]),
        "equal_accuracy_wall": count([bool(g["geep_vs_fastbert"]) and all(
            v["equal_accuracy"] is not None and v["equal_accuracy"]["met"] for v in g["geep_vs_fastbert"])
            for g in pred]),
        "students": count([within(c["students_mean_points"], STUDENT_GOAL_POINTS) for c in train]),
        "no_head_at_chance": count([not c["geep_at_chance_where_fastbert_learns"] for c in train]),
        "depth_l": count([within(c["depth_l_minus_full_points"], DEPTH_L_GOAL_POINTS) for c in train]),
    }


def _tally_line(t: dict[str, Any], keys: list[tuple[str, str]]) -> str:
    return (f"Met on the {len(t['sets_that_learn'])} sets that learn: "
            + "; ".join(f"{label} {t[k][0]} of {t[k][1]}" for k, label in keys) + ".")


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def training_goal_row(s: dict[str, Any]) -> list[str]:
    name = s["dataset"]["name"]
    if degenerate(s):
        return [name, "n/a: no classifier beats the majority class", "–", "–", "–"]
    c = training_checks(s)
    sm, dl = c["students_mean_points"], c["depth_l_minus_full_points"]
    via = f" (shared path better at depths {c['shared_path_better_at']})" if c["shared_path_better_at"] else ""
    t = c["train_seconds"]
    secs = ", ".join(f"{m} {t[m]:.0f}" for m in t if t[m] is not None)
    if t.get("geep") and t.get("fastbert"):
        secs += f" (GEEP / FastBERT {t['geep'] / t['fastbert']:.2f})"
    return [name, f"{sm:+.2f} ({_met(within(sm, STUDENT_GOAL_POINTS))}){via}",
            ", ".join(map(str, c["geep_at_chance_where_fastbert_learns"])) or "none",
            f"{dl:+.2f}{_ci_text(c['depth_l_ci95_points'])} ({_met(within(dl, DEPTH_L_GOAL_POINTS))})", secs or "–"]


def _ci_text(ci: list[float] | None) -> str:
    return "" if not ci else f" [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _tune_text(s: dict[str, Any]) -> str:
    if s.get("points_chosen_on") == "test_half":
        return f"the other {s['rows']['tune']} test rows"
    return f"the {s['rows'].get('tune', '?')} pool rows"


def _loss_text(s: dict[str, Any]) -> str:
    opts = s.get("geep_loss")
    if not opts:
        return ""
    return ("GEEP's loss options: " + ", ".join(f"`{k}={v}`" for k, v in opts.items() if v is not None)
            + " (`geep_deploy/methods.py`, `GeepLossConfig`).")


def _budget_text(s: dict[str, Any]) -> str:
    if "epoch_budget" not in s:  # summaries written before equal budgets
        return f"{s.get('epochs_per_stage', '?')} epochs per stage"
    ep = s["epochs"]
    return (f"{s['epoch_budget']} epochs per method (GEEP {'+'.join(map(str, ep['geep']))}, FastBERT "
            f"{'+'.join(map(str, ep['fastbert']))}, PABEE {'+'.join(map(str, ep['pabee']))})")


def _training_table(s: dict[str, Any]) -> list[str]:
    secs, stages = s.get("train_seconds") or {}, s.get("stage_seconds") or {}
    rows = []
    for m in ("geep", "fastbert", "pabee", "full"):
        if secs.get(m) is None:
            continue
        parts = stages.get(m) or {}
        split = " + ".join(f"{v:.0f} ({k})" for k, v in parts.items()) if len(parts) > 1 else ""
        rows.append([m, "+".join(map(str, (s.get("epochs") or {}).get(m, ["?"]))), f"{secs[m]:.0f}", split or "–"])
    if not rows:
        return []
    return ["Training wall-clock (seconds on this machine's CPU, same rows and budget):", "",
            _table(["method", "epochs", "seconds", "per stage"], rows), ""]


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def plot_dataset(s: dict[str, Any], out: Path) -> Path:
    """Accuracy against FLOPs speed-up (every sweep point's frontier) and against wall-clock at batch 1 and 64."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bench = s.get("bench") or {}
    panels = [(f"FLOPs, all {s['rows']['test']} test rows", None)] + [
        (f"wall-clock, batch {bs}, ORT CPU fp32: {bench[bs]['rows']} timed rows", bs) for bs in ("1", "64")
        if bs in bench]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    full = s["curves"]["full"][0]
    for ax, (title, bs) in zip(axes[0], panels):
        for m in METHODS:
            if m not in s["curves"]:
                continue
            color, marker = STYLE[m]
            if bs is None:
                pts = frontier(s["curves"][m])
                xs, ys = [p["flops_speedup"] for p in pts], [100 * p["accuracy"] for p in pts]
            else:
                recs = s["bench"][bs]["records"]
                pts = sorted({p["knob"] for p in s["points"][m] if p is not None and p["knob"] in recs},
                             key=lambda k: recs[k]["wall_speedup"])
                xs, ys = [recs[k]["wall_speedup"] for k in pts], [100 * recs[k]["accuracy"] for k in pts]
            ax.plot(xs, ys, marker=marker, color=color, label=LABELS[m], markersize=4)
        fx = 1.0 if bs is None else s["bench"][bs]["records"]["full"]["wall_speedup"]
        fy = 100 * (full["accuracy"] if bs is None else s["bench"][bs]["records"]["full"]["accuracy"])
        ax.plot([fx], [fy], marker="*", color="k", markersize=11, linestyle="none", label="full")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("speed-up vs full")
        ax.set_ylabel("accuracy %")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(s["dataset"]["title"], fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def _noise_text(s: dict[str, Any], L: int) -> str:
    """How far the identical contender's wall-clock lands from `full`'s: the run's noise."""
    walls = {bs: _wall(s, noise_knob(L), bs) for bs in ("1", "64")}
    if any(w is None for w in walls.values()):
        return ""
    return (f" Noise: `{noise_knob(L)}` (GEEP's own depth L, the same graph as `full` with other weights) runs at "
            f"{walls['1']:.2f}x of `full` at batch 1 and {walls['64']:.2f}x at batch 64.")


def _dataset_section(s: dict[str, Any], img: str) -> list[str]:
    d, L = s["dataset"], len(next(iter(s["per_depth_accuracy"].values())))
    lines = [f"## {d['title']}", "",
             f"Rows: {s['rows']['train']} train / {s['rows'].get('pool', '–')} held-out pool / {s['rows']['test']} "
             f"test reported / operating points chosen on {_tune_text(s)} ({d['split_note']}) Max length "
             f"{d['max_len']} tokens; backbone: {s['backbone']}; {_budget_text(s)}, "
             f"seed {s['seed']}" + (f"; word embeddings at learning rate {s['embed_lr']:g}" if s.get("embed_lr")
                                    else "") + ".", ""]
    b = s.get("bench") or {}
    if b:
        lines += [f"Wall-clock: {b['1']['rows']} test rows at batch 1 and {b['64']['rows']} at batch 64, medians of "
                  f"{b['64']['repeats']} interleaved repeats, model time, speed-up against `full` in the same run."
                  + _noise_text(s, L), ""]
    lines += [_table(["method @ target", "knob", "accuracy %", "FLOPs speed-up", "wall b1", "wall b64"],
                     point_rows(s)), ""]
    depth_rows = [[m] + [_pct(a) for a in accs] for m, accs in s["per_depth_accuracy"].items()]
    if s.get("per_depth_shared_path"):
        depth_rows.insert(1, ["geep, shared exit path (+1 layer)"] + [_pct(a) for a in s["per_depth_shared_path"]]
                          + ["–"])
    lines += ["Per-depth accuracy (%) of every exit classifier (static truncation of each model; GEEP's shared exit "
              "path runs layers 1..k, then layer L and the teacher):", "",
              _table(["method"] + [f"d{k}" for k in range(1, L + 1)], depth_rows), ""]
    lines += _training_table(s)
    ep = s["exit_prediction"]
    lines += [f"Token exit table (built from the consistency labels of {ep.get('calib_rows', '?')} pool rows; "
              f"figures on the rows that choose operating points, at its 2x point): MAE {ep['dev_mae_layers']:.2f} layers "
              f"(a constant guess: {ep['dev_mae_layers_constant_median']:.2f}), "
              f"{100 * ep['dev_within_one_layer']:.1f}% within one layer; exit histogram "
              f"{ep['dev_exit_hist']}, predicted at the 2x point {ep['dev_predicted_hist']}; an oracle that knew "
              f"each row's exit would score {_pct(ep['oracle_accuracy'])}% at {ep['oracle_flops_speedup']:.2f}x "
              f"FLOPs. Exit table: {ep['table_keys']} keys."]
    ge = s.get("geep_students_entropy_points")
    if ge:
        reached = [f"{_pct(p['accuracy'])}% at {p['flops_speedup']:.2f}x" for p in ge if p]
        lines[-1] += (" GEEP's own students with FastBERT's entropy exit instead of the predictor (FLOPs only): "
                      + (", ".join(reached) if reached else f"no threshold reaches {s['targets'][0]:g}x") + ".")
    h = s.get("hard_row_auc")
    if h:
        lines[-1] += (f" Finding the {100 * h['hard_share']:.0f}% of rows that need more than depth 1 (ROC AUC; 0.5 "
                      f"is chance): the predictor's expected depth {_auc(h['predictor_expected_depth'])}, the row's "
                      f"length {_auc(h['length'])}, depth 1's entropy (needs layer 1 run) "
                      f"{_auc(h['depth1_entropy'])}")
        if h.get("probe") is not None:
            sizes = ", ".join(f"{n} rows {_auc(a)}" for n, a in h["probe_by_pool_size"].items())
            lines[-1] += (f", the layer-1 probe {_auc(h['probe'])} (with the table's features added "
                          f"{_auc(h.get('probe_with_table'))}; fitted on the first {sizes} of the pool)")
        lines[-1] += "."
    lines.append("")
    ab = s.get("vocab_ablation")
    if ab:
        ours = s["full_accuracy"]
        lines += [f"Vocabulary: with MiniLM's own vocabulary {100 * ab['unk_token_share']:.0f}% of the tokens are "
                  f"`[UNK]` and `full` scores {_pct(ab['accuracy'])}%, against {_pct(ours)}% with the transplanted "
                  f"bert-base-chinese vocabulary ({100 * (ours - ab['accuracy']):+.2f} points).", ""]
    lines += [f"![{d['name']}]({img})", ""]
    return lines


def write_page(results: Path, out: Path = Path("docs/results.md"), notes: Path | None = None) -> Path:
    """Write the results page and one PNG per dataset next to it (``docs/results/<name>.png``)."""
    summaries = load_summaries(results)
    img_dir = out.parent / "results"
    goal_rows = [prediction_goal_row(s) for s in summaries]
    tally = goal_tally(summaries)
    m = next((s["machine"] for s in summaries if s.get("machine")), {})
    lines = [
        f"# Results: GEEP against full, static truncation, FastBERT and PABEE on {len(summaries)} datasets", "",
        "Generated by `bench/multi_dataset.py` from `bench/results/multi_dataset/*.json`; do not edit by hand "
        "(the discussion at the end comes from `bench/results/multi_dataset/notes.md`).", "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpu_count', '?')} cores, no GPU; torch {m.get('torch', '?')}, "
        f"onnxruntime {m.get('onnxruntime', '?')}.", "",
        "Command that produces every figure below (finished steps are reused, so the committed run was resumed "
        "across invocations; wall-clock ratios of one dataset and batch size always come from one bench run):", "",
        f"    {summaries[0]['command']}", "",
        "How to read the tables:", "",
        "- Every method uses the same backbone (all-MiniLM-L6-v2), the same seeded train slice and seed, and the "
        f"same training budget: {_budget_text(summaries[0])}. `full` is plain fine-tuning "
        "for the whole budget; FastBERT's first stage is the same fine-tuning for half of it, its second stage "
        "trains only the students. "
        + _loss_text(summaries[0]),
        "- Each method's knob is swept on a held-out pool of the train split that no model trained on (the same "
        "rows for every method): GEEP's token-table quantile and margin, the probe's risk level (and escalation "
        "threshold; the probe over the shared exit path has its own risk level), FastBERT's entropy threshold (0 "
        "to 0.95 by 0.05), PABEE's patience (1-5), static depth (1-5, GEEP's students). The exit table and the "
        "probes are fitted on the same pool's exit labels (their pool scores are cross-fitted: each pool row is "
        "scored by a table or probe fitted on the other folds). The chosen knob is then reported on the test rows. SST-2 is the "
        "exception: its train split is mostly short phrases, unlike its test sentences, so its knobs are chosen on "
        "a seeded half of the test slice and reported on the other half. "
        f"An operating point is the most accurate pool sweep point whose FLOPs speed-up reaches the target "
        f"(within {100 * (1 - TARGET_SLACK):.0f}%: static depth 4 of 6 is 1.497x once embeddings and heads count).",
        "- Accuracy and FLOPs speed-up are over the whole test slice; FLOPs count real tokens (no padding) and, "
        "for FastBERT and PABEE, every exit classifier they apply. Wall-clock speed-ups are model time of the "
        "same knob on a seeded head of the test slice, run by the product's runtime (GeepEngine for GEEP and "
        "static depths, the shrinking-batch layer-by-layer runner for FastBERT and PABEE), length-sorted batches "
        "for every method.", "",
        "## Goals", "",
        f"Exit-prediction goals: the layer-1 probe finds the rows that need more than depth 1 with ROC AUC >= "
        f"{AUC_GOAL:.2f}; at 2x FLOPs GEEP's best predictor (token table, probe, probe + escalation, or probe over the shared exit path; picked on "
        f"the pool like every knob) within {FASTBERT_GOAL_POINTS:g} points of FastBERT (4 of 5 sets) and within "
        f"{FULL_GOAL_POINTS:g} point of `full` (3 of 5); at equal accuracy a batch-64 wall-clock speed-up at least "
        f"FastBERT's (GEEP's fastest timed point at most {FASTBERT_GOAL_POINTS:g} points below FastBERT's point, "
        "against that point; last column: GEEP's wall b64 / FLOPs at 2x); the "
        f"probe's own time (features, table lookup, probe; the layer-1 head runs inside layer 1's graph) at most "
        f"{100 * PROBE_COST_GOAL:.0f}% of batch-64 model time.", "",
        _table(["dataset", "full %", "probe AUC", "probe's own time / model time (b64, 2x)",
                "GEEP@2x - FastBERT@2x (pts)", "GEEP@2x - full (pts)",
                "best GEEP vs FastBERT per target (accuracy, wall b64)", "GEEP wall/FLOPs"], goal_rows), "",
        _tally_line(tally, [("probe_auc", "probe AUC"), ("probe_cost", "probe's own time"),
                            ("fastbert_2x", "within 0.3 of FastBERT at 2x (goal 4 of 5)"),
                            ("full_2x", "within 1 of `full` at 2x (goal 3 of 5)"),
                            ("equal_accuracy_wall", "equal-accuracy wall-clock at every target (goal 4 of 5)")]), "",
        f"Training goals at equal budgets: GEEP's depths 1..L-1 (the student, or the shared exit path where that is "
        f"better) within {STUDENT_GOAL_POINTS:g} point of FastBERT's students on average; no GEEP head at chance "
        f"(within {100 * CHANCE_MARGIN:.0f} points of the majority share) where FastBERT's learns; GEEP's depth L "
        f"within {DEPTH_L_GOAL_POINTS:g} points of `full` (in brackets: a 95% paired bootstrap interval over the "
        "test rows, the spread another draw of test rows of the same size could give; it does not cover training "
        "seeds).", "",
        _table(["dataset", "GEEP d1..L-1 - FastBERT students (mean pts)", "GEEP depths at chance",
                "GEEP depth L - full (pts)", "training seconds"], [training_goal_row(s) for s in summaries]), "",
        _tally_line(tally, [("students", "students against FastBERT's"), ("no_head_at_chance", "no head at chance"),
                            ("depth_l", "depth L within 0.5 of `full`")]), "",
        "GEEP's one step is slower than FastBERT's two at equal epochs: every GEEP step runs layer L once more for "
        "each depth in K (one stacked batch, forward and backward) and trains every student, while FastBERT's "
        "second stage runs the frozen backbone forward only. `bench/train_time.py` measures the same on "
        "interleaved runs ([training.md](training.md#training-time-at-equal-budgets)); the seconds above come from "
        "the suite's own runs, which shared the machine with other jobs.", "",
    ]
    for s in summaries:
        name = s["dataset"]["name"]
        plot_dataset(s, img_dir / f"{name}.png")
        lines += _dataset_section(s, f"results/{name}.png")
    notes = notes or Path(results) / "notes.md"
    if notes.is_file():
        lines += ["## Discussion", "", notes.read_text(encoding="utf-8").strip(), ""]
    atomic_write_text(out, "\n".join(lines))
    return out
