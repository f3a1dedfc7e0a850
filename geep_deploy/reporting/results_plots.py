"""The results page's plots: one PNG per measured set, accuracy against FLOPs and against batch-64 wall-clock."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.reporting.suite_results import SetResults
from geep_deploy.reporting.suite_tables import LABELS
from geep_deploy.suite.points import interpolate_at
from geep_deploy.suite.protocol import ABLATIONS, HEADLINE

STYLE = {"full": ("k", "*"), "probe": ("tab:purple", "D"), "geep": ("tab:blue", "o"), "probe_esc": ("tab:pink", "P"),
         "probe_skip": ("tab:red", "X"), "geep_entropy": ("tab:cyan", "<"), "fastbert": ("tab:orange", "^"),
         "pabee": ("tab:green", "v"), "static": ("tab:gray", "s")}


def mean_frontier(s: SetResults, method: str, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A method's interpolated accuracy/FLOPs curve (tuning-chosen frontier), mean over seeds where every seed
    reaches the speed-up."""
    ys = []
    for seed in s.seeds.values():
        by = {c["knob"]: c for c in seed["curves"][method]}
        curve = [by[k] for k in seed["fair"]["methods"][method]["frontier"]]
        ys.append([None if (a := interpolate_at(curve, float(x))) is None else a["accuracy"] for x in xs])
    ok = [i for i in range(len(xs)) if all(y[i] is not None for y in ys)]
    return xs[ok], np.array([100 * np.mean([y[i] for y in ys]) for i in ok])


def plot_set(s: SetResults, out: Path) -> Path:
    """Accuracy against FLOPs speed-up (every method's frontier, mean over seeds) and against batch-64 wall-clock
    (every benched point, each seed, bars = run-to-run range; shaded: the noise band around `full`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.4, 4.2))
    xs = np.linspace(1.0, 4.0, 61)
    for m in (HEADLINE, "fastbert", "pabee", *ABLATIONS):
        color, marker = STYLE[m]
        x, y = mean_frontier(s, m, xs)
        ax1.plot(x, y, color=color, label=LABELS[m], linewidth=2.2 if m == HEADLINE else 1.2)
    full = 100 * np.mean([x["full_accuracy"] for x in s.seeds.values()])
    ax1.plot([1.0], [full], marker="*", color="k", markersize=11, linestyle="none", label="full")
    _wall_panel(ax2, s)
    for ax, xlabel in ((ax1, "FLOPs speed-up vs full"), (ax2, "batch-64 wall-clock speed-up vs full")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy %")
        ax.grid(alpha=0.3)
    ax1.set_title(f"interpolated on tuning-chosen frontiers, mean of {len(s.seeds)} seed(s)", fontsize=9)
    ax1.legend(fontsize=7)
    fig.suptitle(s.title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def _wall_panel(ax: Any, s: SetResults) -> None:
    noise = max([x["bench"]["64"].get("noise") or 0.0 for x in s.seeds.values() if "64" in (x.get("bench") or {})],
                default=None)
    if noise is None:
        ax.set_title("not benched", fontsize=9)
        return
    ax.axvspan(1 - noise, 1 + noise, color="k", alpha=0.08, label=f"noise band ±{100 * noise:.1f}%")
    for m in (HEADLINE, "fastbert", "pabee", "static", "geep_entropy"):
        color, marker = STYLE[m]
        pts = [(x["bench"]["64"]["records"][p["knob"]]) for x in s.seeds.values() if "64" in (x.get("bench") or {})
               for p in x["points"].get(m) or [] if p is not None and p["knob"] in x["bench"]["64"]["records"]]
        if pts:
            w = np.array([r["wall_speedup"] for r in pts])
            lo = w - np.array([min(r["wall_speedup_runs"]) for r in pts])
            hi = np.array([max(r["wall_speedup_runs"]) for r in pts]) - w
            ax.errorbar(w, [100 * r["accuracy"] for r in pts], xerr=[lo, hi], fmt=marker, color=color,
                        label=LABELS[m], markersize=4)
    full = [x["bench"]["64"]["records"]["full"]["accuracy"] for x in s.seeds.values() if "64" in (x.get("bench") or {})]
    ax.plot([1.0] * len(full), [100 * a for a in full], marker="*", color="k", markersize=11, linestyle="none")
    ax.set_title("every benched operating point, each seed", fontsize=9)
    ax.legend(fontsize=7)
