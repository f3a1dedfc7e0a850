"""The layer-by-layer walk: FastBERT/PABEE batch inference with a shrinking batch, over segment engines.

One code path for the product's entropy dispatch (`GeepEngine` with predictor ``entropy``, `runtime.engine`) and
the bench's FastBERT/PABEE baselines (`geep_deploy.bench.baselines`): after layer k its head classifies the rows
still in the batch, and the rows the exit rule lets go leave (`EntropyExit`: normalised entropy below the
threshold; `PatienceExit`: the same prediction for ``patience`` layers in a row); the others go on, in their
order. The walk runs the export's segment engines (``embed``, ``layer{k}``: graphs on ONNX Runtime/TensorRT,
the `ExitBert` modules on torch) through the runner protocol of `engines.base`; on device-resident engines
(torch on CUDA, TensorRT) the states stay on the device between layers.

Engine calls are cut the way GEEP's groups are: with a ``call_cost`` (tokens; the engine's) the batch is sorted by
length and cut into calls by least padded work plus the cost per call (``runtime.dispatch.length_cuts``, via the
pure `cut_rows`), and every time rows leave, the rows still running are cut again the same way, each piece
trimmed to its own longest row. Without one the batch runs as one call (or fixed chunks of ``max_rows``),
trimmed as it shrinks.

A rule is a small frozen object; ``rule.start(n)`` gives the per-batch state the walk asks (`RowExits`): the
entropy exit has none, the patience exit a fresh count per row and batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from geep_deploy.encoding import Encoded, pad_batch
from geep_deploy.errors import ConfigError
from geep_deploy.exits import check_logits, normalized_entropy
from runtime.timing import StageTimes


class Segments(Protocol):
    """Embedding then one layer at a time, on any backend (the walk's view of an engine)."""

    def embed(self, feed: dict[str, np.ndarray]) -> Any: ...
    def layer(self, k: int, state: Any) -> np.ndarray: ...
    def keep(self, state: Any, rows: np.ndarray, width: int) -> Any: ...
    def close(self) -> None: ...


class EngineSegments:
    """Segments over `BaseEngine` objects of kind ``embed`` and ``layer`` (ONNX Runtime, TensorRT or torch).

    When every engine is ``device_resident`` (torch on CUDA, TensorRT) the states stay on the device between
    layers (``infer_states``; only each layer's logits cross to the host), else they are host arrays (``infer``).
    """

    def __init__(self, embed: Any, layers: list[Any]) -> None:
        self.embed_engine, self.layers = embed, layers
        self.resident = all(getattr(e, "device_resident", False) for e in (embed, *layers))

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def engines(self) -> list[Any]:
        """The ``embed`` engine, then ``layer1..L``."""
        return [self.embed_engine, *self.layers]

    def _run(self, engine: Any, feed: dict[str, Any]) -> dict[str, Any]:
        return engine.infer_states(feed) if self.resident else engine.infer(feed, check_inputs=False)

    def embed(self, feed: dict[str, np.ndarray]) -> dict[str, Any]:
        h = self._run(self.embed_engine, {"input_ids": feed["input_ids"],
                                          "token_type_ids": feed["token_type_ids"]})["hidden"]
        mask = feed["attention_mask"]
        return {"hidden": h, "attention_mask": _beside(mask, h) if self.resident else mask}

    def layer(self, k: int, state: dict[str, Any]) -> np.ndarray:
        engine = self.layers[k - 1]
        out = self._run(engine, state)
        state["hidden"] = next(v for n, v in out.items() if n != "logits")
        return engine.to_host(out["logits"]) if self.resident else out["logits"]

    def keep(self, state: dict[str, Any], rows: np.ndarray, width: int) -> dict[str, Any]:
        return {k: _take(v, rows, width) for k, v in state.items()}

    def close(self) -> None:
        for eng in (self.embed_engine, *self.layers):
            eng.close()


def _beside(a: np.ndarray, ref: Any) -> Any:
    """Host array ``a`` on the device and library of ``ref`` (a torch tensor or a CuPy array)."""
    if type(ref).__module__.startswith("torch"):
        import torch

        return torch.as_tensor(a, device=ref.device)
    import cupy as cp

    return cp.asarray(a)


def _take(x: Any, rows: np.ndarray, width: int) -> Any:
    """Rows ``rows`` of ``x`` cut to ``width`` columns, contiguous, where ``x`` lives (NumPy, torch or CuPy)."""
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x[rows, :width])
    if type(x).__module__.startswith("torch"):
        return x[_beside(rows, x), :width].contiguous()
    import cupy as cp

    return cp.ascontiguousarray(x[cp.asarray(rows), :width])


def state_width(state: Any) -> int:
    """The padded width a segment state runs at (its attention mask's second axis)."""
    return int(state["attention_mask"].shape[1])


# -- exit rules ------------------------------------------------------------------------------------------------

class RowExits(Protocol):
    """A rule's state over one batch: which of ``rows`` leave after layer k < L, given head k's ``logits``."""

    def leave(self, k: int, logits: np.ndarray, rows: np.ndarray) -> np.ndarray: ...


class ExitRule(Protocol):
    """A layer-by-layer exit rule; ``start(n)`` is its state for a batch of ``n`` rows."""

    def start(self, n: int) -> RowExits: ...


@dataclass(frozen=True)
class EntropyExit:
    """FastBERT's exit: a row leaves after layer k when head k's normalised entropy is below ``threshold``
    (0: no row leaves before depth L; 1: nearly every row leaves after layer 1). Stateless: ``start`` is itself.

    Raises:
        ConfigError: ``threshold`` is not a number in [0, 1].
    """

    threshold: float

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float, np.floating)) or not 0.0 <= float(t) <= 1.0:
            raise ConfigError(f"runtime | the entropy exit's threshold is a normalised entropy in [0, 1], got "
                              f"{t!r}.")
        object.__setattr__(self, "threshold", float(t))

    def start(self, n: int) -> EntropyExit:
        return self

    def leave(self, k: int, logits: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return normalized_entropy(logits) < self.threshold


@dataclass(frozen=True)
class PatienceExit:
    """PABEE's exit: a row leaves once its prediction stayed the same for ``patience`` consecutive layers.

    Raises:
        ConfigError: ``patience`` is not an integer >= 1.
    """

    patience: int

    def __post_init__(self) -> None:
        p = self.patience
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1:
            raise ConfigError(f"runtime | the patience exit needs patience >= 1, got {p!r}.")
        object.__setattr__(self, "patience", int(p))

    def start(self, n: int) -> _PatienceCount:
        return _PatienceCount(self.patience, n)


class _PatienceCount:
    """One batch's patience state: each row's last prediction and how long it held."""

    def __init__(self, patience: int, n: int) -> None:
        self.patience = patience
        self.prev = np.full(n, -1, dtype=np.int64)
        self.run = np.zeros(n, dtype=np.int64)

    def leave(self, k: int, logits: np.ndarray, rows: np.ndarray) -> np.ndarray:
        pred = logits.argmax(axis=1)
        self.run[rows] = np.where(pred == self.prev[rows], self.run[rows] + 1, 0)
        self.prev[rows] = pred
        return self.run[rows] >= self.patience


# -- the walk --------------------------------------------------------------------------------------------------

def cut_rows(rows: np.ndarray, lengths: np.ndarray, call_cost: float | None,
             max_rows: int | None = None) -> list[np.ndarray]:
    """``rows`` (ids into ``lengths``, sorted by length) cut into engine calls, in order.

    With a ``call_cost``: by least padded work plus that many tokens per call (``runtime.dispatch.length_cuts``),
    at most ``max_rows`` rows a call (default: all). Without one: chunks of ``max_rows`` rows (default: one call).
    Pure; the pieces concatenate back to ``rows``.
    """
    from runtime.dispatch import length_cuts

    if not len(rows):
        return []
    cap = len(rows) if max_rows is None else min(int(max_rows), len(rows))
    if call_cost is None:
        return [rows[a: a + cap] for a in range(0, len(rows), cap)]
    cuts = length_cuts(lengths[rows], cap, float(call_cost))
    return [rows[a:b] for a, b in zip([0, *cuts[:-1]], cuts)]


def run_layerwise(segments: Segments, feed: dict[str, np.ndarray], num_layers: int, rule: ExitRule,
                  trim: bool = True, call_cost: float | None = None,
                  max_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Batch inference with a shrinking batch under ``rule``; returns (logits, exit depth) per row of ``feed``.

    With a ``call_cost`` (tokens; the engine's, as GEEP's dispatch uses it) the batch is cut into calls the way
    GEEP's groups are (`cut_rows`), and every time rows leave, the rows still running are cut again the same
    way, each piece trimmed to its own longest row. Without one the batch runs as one call (chunks of
    ``max_rows`` rows when it has more), trimmed as it shrinks (``trim``).
    """
    n = feed["input_ids"].shape[0]
    lengths = feed["attention_mask"].sum(axis=1)
    walk = LayerWalk(segments, num_layers, rule.start(n), lengths, trim, call_cost, max_rows)
    if call_cost is None and (max_rows is None or n <= max_rows):
        walk.advance(segments.embed(feed), np.arange(n), 1)
    else:
        order = np.argsort(lengths, kind="stable")
        for rows in walk.pieces(order):
            width = int(lengths[rows].max())
            walk.advance(segments.embed({k: np.ascontiguousarray(v[rows, :width]) for k, v in feed.items()}), rows, 1)
    assert walk.logits is not None
    return walk.logits, walk.depth


class LayerWalk:
    """The exit rule applied layer by layer to rows of one batch, with the cuts of `run_layerwise`."""

    def __init__(self, segments: Segments, num_layers: int, exits: RowExits, lengths: np.ndarray, trim: bool,
                 call_cost: float | None, max_rows: int | None = None) -> None:
        self.segments, self.L, self.exits, self.lengths = segments, num_layers, exits, lengths
        self.trim, self.call_cost, self.max_rows = trim, call_cost, max_rows
        self.logits: np.ndarray | None = None
        self.depth = np.full(len(lengths), num_layers, dtype=np.int64)

    def pieces(self, rows: np.ndarray) -> list[np.ndarray]:
        """``rows`` (sorted by length) cut into calls (`cut_rows`)."""
        return cut_rows(rows, self.lengths, self.call_cost, self.max_rows)

    def leave(self, k: int, lg: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if k == self.L:
            return np.ones(len(rows), dtype=bool)
        return self.exits.leave(k, lg, rows)

    def advance(self, state: Any, rows: np.ndarray, first: int) -> None:
        """Run ``rows`` (whose state ``state`` holds, in that order) from layer ``first`` until every row left."""
        for k in range(first, self.L + 1):
            lg = self.segments.layer(k, state)
            if self.logits is None:
                self.logits = np.empty((len(self.depth), lg.shape[1]), dtype=np.float32)
            leave = self.leave(k, lg, rows)
            self.logits[rows[leave]], self.depth[rows[leave]] = lg[leave], k
            if leave.all():
                return
            stay = np.flatnonzero(~leave)
            if self.call_cost is not None:
                parts = self.pieces(rows[stay])
                if len(parts) > 1:  # cut again: each piece continues on its own, trimmed to its longest row
                    at = 0
                    for part in parts:
                        sel = stay[at: at + len(part)]
                        at += len(part)
                        self.advance(self.segments.keep(state, sel, int(self.lengths[part].max())), part, k + 1)
                    return
            rows = rows[stay]
            width = int(self.lengths[rows].max()) if self.trim else state_width(state)
            if stay.size < leave.size or width < state_width(state):  # no row left, same width: no copy
                state = self.segments.keep(state, stay, width)


# -- the product dispatch --------------------------------------------------------------------------------------

class LayerwiseDispatch:
    """A layer-by-layer exit rule as a `GeepEngine` dispatch (the product's entropy exit over the export's own
    heads): every row of a call in one walk (`run_layerwise`), at most ``max_group`` rows a call, cut by the
    engine's ``call_cost``; answers in input order with what each row ran (a head check after every layer it
    passed: ``heads = layers = depth``).

    Lifetime: it borrows its segment engines (the `GeepEngine` that opened them closes them). Thread safety: no
    per-call state outside the call (a rule's per-batch state comes from ``rule.start``).

    Args:
        segments: the ``embed`` and ``layer1..L`` engines (`EngineSegments`).
        rule: the exit rule (`EntropyExit` in the product).
        num_layers: L. num_labels: the logits' width. pad_id: the tokenizer's padding id.
    """

    def __init__(self, segments: Segments, rule: ExitRule, *, num_layers: int, num_labels: int,
                 pad_id: int = 0) -> None:
        self.segments, self.rule = segments, rule
        self.num_layers, self.num_labels, self.pad_id = num_layers, num_labels, pad_id

    def run(self, enc: Encoded, max_group: int, times: StageTimes | None = None,
            call_cost: float | None = None) -> Any:
        """Dispatch tokenized rows; returns a `runtime.probe_dispatch.Dispatched` in input order. The exit checks
        run between layers, so ``times`` books the whole walk under ``model``."""
        from runtime.probe_dispatch import Dispatched

        times = times if times is not None else StageTimes()
        with times.stage("model"):
            feed = pad_batch(enc, pad_id=self.pad_id)
            logits, depth = run_layerwise(self.segments, feed, self.num_layers, self.rule, call_cost=call_cost,
                                          max_rows=max_group)
            check_logits(logits, len(enc), self.num_labels, "layer")
        return Dispatched(logits, depth, depth, np.zeros(len(depth), dtype=bool), depth, depth.copy())

    def check(self, enc: Encoded) -> None:
        """Run ``enc`` through the embedding and every layer (no row leaves early): a graph whose logits are not
        as wide as the label list (or not finite) fails here, at load, not on a request."""
        LayerwiseDispatch(self.segments, EntropyExit(0.0), num_layers=self.num_layers, num_labels=self.num_labels,
                          pad_id=self.pad_id).run(enc, len(enc))
