"""The bench's figure: accuracy against wall-clock speed-up (matplotlib, imported only here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(records: list[dict[str, Any]], out: Path) -> Path:
    """Accuracy against wall-clock speed-up, one series per (method family, precision, batch size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    series: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        if r["wall_speedup"] is not None:  # None: no full model at that cell to compare with
            series.setdefault((r["family"], r["precision"], r["batch_size"]), []).append(r)
    markers = {"full": "*", "static": "s", "geep": "o", "geep-pool": "D", "probe": "P", "entropy": "<", "fastbert": "^", "pabee": "v"}
    for (fam, prec, bs), rs in sorted(series.items()):
        rs = sorted(rs, key=lambda r: r["wall_speedup"])
        ax.plot([r["wall_speedup"] for r in rs], [r["accuracy"] for r in rs], marker=markers.get(fam, "x"),
                label=f"{fam} {prec} b{bs}", linestyle="-" if len(rs) > 1 else "none")
    ax.set_xlabel("wall-clock speed-up vs full (model time)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
