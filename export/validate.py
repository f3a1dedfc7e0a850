"""An export is not done until validated: run each graph through its engine (``engines/``) on real tokenised
inputs at several shapes and compare with PyTorch. Running (``run_reference``/``run_graph``) is kept apart from
judging (``compare``).

fp32 graphs must match within ``atol`` with identical argmax, else ``ToleranceExceeded``/``ShapeMismatch`` is
raised (recorded instead only with ``allow_mismatch``). Reduced-precision graphs are approximations by design:
their figures are recorded, and only a shape mismatch is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.errors import ShapeMismatch, ToleranceExceeded

# Rows of the bundled SST-2 dev slice used as validation inputs: one short, a mixed batch, a long batch.
FEED_PLAN = ((1, "short"), (4, "mixed"), (3, "long"))


@dataclass
class OutputDiff:
    """How one output of the export differs from the reference."""

    name: str
    max_abs: float
    max_rel: float
    argmax_agree: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs": self.max_abs, "max_rel": self.max_rel, "argmax_agree": self.argmax_agree}


@dataclass
class Comparison:
    """Result of comparing outputs over several feeds; truthy when every output is within tolerance."""

    atol: float
    diffs: dict[str, OutputDiff] = field(default_factory=dict)
    shapes: list[list[int]] = field(default_factory=list)
    passed: bool = True

    def __bool__(self) -> bool:
        return self.passed

    def table(self) -> str:
        rows = [f"{'output':<12} {'max_abs':>10} {'max_rel':>10} {'argmax':>7}"]
        for d in self.diffs.values():
            agree = "-" if d.argmax_agree is None else f"{d.argmax_agree:.3f}"
            rows.append(f"{d.name:<12} {d.max_abs:>10.3g} {d.max_rel:>10.3g} {agree:>7}")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"atol": self.atol, "passed": self.passed, "shapes": self.shapes,
                "outputs": {k: v.to_dict() for k, v in self.diffs.items()}}


def compare(refs: Sequence[dict[str, np.ndarray]], outs: Sequence[dict[str, np.ndarray]], atol: float,
            *, what: str = "graph") -> Comparison:
    """Compare export outputs with reference outputs, feed by feed.

    Raises:
        ShapeMismatch: if an output is missing or has another shape (never a tolerance question).
    """
    cmp = Comparison(atol=atol)
    agree: dict[str, list[float]] = {}
    for ref, out in zip(refs, outs):
        for name, r in ref.items():
            if name not in out:
                raise ShapeMismatch(f"validate | {what} has no output {name!r}; it has {sorted(out)}.")
            o = np.asarray(out[name], dtype=np.float64)
            r = np.asarray(r, dtype=np.float64)
            if o.shape != r.shape:
                raise ShapeMismatch(
                    f"validate | {what} output {name!r} has shape {o.shape}, the reference {r.shape}. "
                    "The graph's dynamic axes are wrong; re-export."
                )
            ad = float(np.max(np.abs(o - r))) if o.size else 0.0
            rd = float(np.max(np.abs(o - r) / (np.abs(r) + 1e-6))) if o.size else 0.0
            d = cmp.diffs.setdefault(name, OutputDiff(name, 0.0, 0.0))
            d.max_abs, d.max_rel = max(d.max_abs, ad), max(d.max_rel, rd)
            if name == "logits":
                agree.setdefault(name, []).extend((o.argmax(-1) == r.argmax(-1)).astype(float).tolist())
        cmp.shapes.append(list(next(iter(ref.values())).shape))
    for name, a in agree.items():
        cmp.diffs[name].argmax_agree = float(np.mean(a))
    cmp.passed = all(d.max_abs <= atol and d.argmax_agree in (None, 1.0) for d in cmp.diffs.values())
    return cmp


def judge(cmp: Comparison, what: str, allow_mismatch: bool) -> Comparison:
    """Raise ``ToleranceExceeded`` for a failed comparison unless the user allowed mismatches."""
    if not cmp and not allow_mismatch:
        raise ToleranceExceeded(
            f"validate | {what} differs from PyTorch beyond atol={cmp.atol} or in argmax:\n{cmp.table()}\n"
            "Re-export with --exporter dynamo, or pass --allow-mismatch to keep it anyway (recorded in the manifest)."
        )
    return cmp


def validation_feeds(tokenizer_json: str, max_len: int, texts: Sequence[str] | None = None) -> list[dict[str, np.ndarray]]:
    """Real tokenised batches at different (batch, seq) shapes, from the bundled SST-2 dev slice."""
    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.encoding import TextEncoder, pad_batch

    enc = TextEncoder(tokenizer_json, max_len)
    if texts is None:
        texts = load_split(bundled_data_dir(), "dev").texts_a[:64]
    e = enc.encode(list(texts))
    order = np.argsort(e.lengths, kind="stable")
    picks = {"short": order[:1], "mixed": order[:: max(1, len(order) // 4)][:4], "long": order[-3:]}
    return [pad_batch(e.take(picks[name][:n]), pad_id=enc.pad_id) for n, name in FEED_PLAN]


def calibration_feeds(tokenizer_json: str, max_len: int, texts: Sequence[str] | None = None, *,
                      rows: int = 256, batch: int = 32) -> list[dict[str, np.ndarray]]:
    """Up to ``rows`` tokenised texts in length-sorted batches, for int8 calibration (the 8 validation rows are
    too few to set activation ranges). Defaults to the bundled SST-2 train slice."""
    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.encoding import TextEncoder, length_sorted_batches, pad_batch

    enc = TextEncoder(tokenizer_json, max_len)
    if texts is None:
        texts = load_split(bundled_data_dir(), "train").texts_a
    e = enc.encode(list(texts)[:rows])
    return [pad_batch(e.take(idx), pad_id=enc.pad_id) for idx in length_sorted_batches(e.lengths, batch)]


def run_reference(model: Any, kind: str, depth: int | None, exit_mode: str,
                  feeds: Sequence[dict[str, np.ndarray]]) -> tuple[list[dict], list[dict]]:
    """PyTorch outputs of one graph kind (through the torch engine), and the feeds for that graph: a graph that
    takes hidden states gets the real ones (``layer{k}``: what layers 1..k-1 produce; ``cont{d}``: layer 1's)."""
    from engines.registry import open_engine
    from geep_deploy.names import CONT, EMBED, LAYER, TORCH

    def engine(kind: str, depth: int | None) -> Any:
        return open_engine(TORCH, model, kind=kind, depth=depth, exit_mode=exit_mode, check_inputs=False)

    with engine(kind, depth) as ref:
        wanted = set(ref.input_metadata())
        graph_feeds = [{k: v for k, v in f.items() if k in wanted} for f in feeds]
        before = {LAYER: (depth or 1) - 1, CONT: 1}.get(kind)  # layers applied to the graph's hidden input
        if before is not None:
            with engine(EMBED, None) as embed:
                hidden = [embed.infer(f)["hidden"] for f in feeds]
            for j in range(1, before + 1):
                with engine(LAYER, j) as layer:
                    hidden = [layer.infer({"hidden": h, "attention_mask": f["attention_mask"]})["hidden_out"]
                              for h, f in zip(hidden, feeds)]
            for g, h in zip(graph_feeds, hidden):
                g["hidden"] = h
        return [ref.infer(g) for g in graph_feeds], graph_feeds


def run_graph(backend: str, path: str | Path, feeds: Sequence[dict[str, np.ndarray]], *,
              precision: str = "fp32", **options: Any) -> list[dict[str, np.ndarray]]:
    """Run one exported graph or plan on every feed through the engine protocol; outputs by name, as float32.

    The same engines serve at runtime, so what validation checked is what runs. Feeds may carry more inputs
    than the graph takes (a segment graph takes fewer); only the graph's own are passed.
    """
    from engines.registry import open_engine

    with open_engine(backend, path, precision=precision, check_inputs=False, **options) as eng:
        wanted = set(eng.input_metadata())
        outs = [eng.infer({k: v for k, v in f.items() if k in wanted}) for f in feeds]
    return [{n: np.asarray(v, dtype=np.float32) for n, v in o.items()} for o in outs]
