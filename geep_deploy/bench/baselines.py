"""The compared methods, run by the same runtime and backends and timed the same way.

- ``full``: depth L for every row.
- ``static:k``: depth k for every row.
- ``geep``: predicted depths, rows grouped by (depth, length), one dense group per depth (`GeepEngine`).
- ``probe:<risk>[+esc<threshold>]``: the layer-1 probe dispatch (`runtime.probe_dispatch`) at those knobs.
- ``fastbert:<speed>``: layer by layer with a shrinking batch: after layer k its head classifies the rows still
  in the batch, and rows whose normalised entropy is below ``speed`` leave (FastBERT's batch inference).
- ``pabee:<patience>``: layer by layer; a row leaves once its prediction stayed the same for ``patience``
  consecutive layers.

Every method is handed the same batches (rows sorted by length), and every method cuts a batch into engine calls
the same way: by padded work plus the engine's cost per call (``runtime.dispatch.length_cuts``, the engine's
``call_cost``). ``full`` and ``static`` run through GEEP's own dispatch with every row at one depth; the
layer-by-layer methods cut the batch before layer 1 and cut the rows still running again whenever rows leave.
They run the export's segment engines (``embed``, ``layer{k}``: graphs on ONNX Runtime/TensorRT, the `ExitBert`
modules on torch) through the runner protocol of `engines.base`, as every other method does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from geep_deploy.bench.methods import GEEP_FAMILIES, MethodSpec, probe_knobs
from geep_deploy.encoding import Encoded, pad_batch
from geep_deploy.errors import ConfigError
from geep_deploy.exits import normalized_entropy
from runtime.timing import StageTimes


@dataclass
class BatchOut:
    """One batch's result: logits, depth per row, exit heads and layers run per row, and the seconds spent.

    ``model_s`` is the method's whole time on the batch after tokenisation, its exit decisions included (GEEP's
    exit prediction, FastBERT's entropy and PABEE's patience checks), so every method is timed alike;
    ``exit_s`` is the part of it GEEP spends predicting exits (0 for the others, whose checks run between layers).
    ``layers`` defaults to ``depths``; the probe dispatch runs more for escalated rows (`runtime.probe.probe_cost`).
    """

    logits: np.ndarray
    depths: np.ndarray
    heads: np.ndarray
    model_s: float
    exit_s: float = 0.0
    layers: np.ndarray | None = None
    escalated: np.ndarray | None = None


class Segments(Protocol):
    """Embedding then one layer at a time, on any backend (the baselines' view of an engine)."""

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


def run_layerwise(segments: Segments, feed: dict[str, np.ndarray], num_layers: int, spec: MethodSpec,
                  trim: bool = True, call_cost: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """FastBERT/PABEE batch inference with a shrinking batch; returns (logits, exit depth) per row.

    With a ``call_cost`` (tokens; the engine's, as GEEP's dispatch uses it) the batch is cut into calls the way
    GEEP's groups are (``runtime.dispatch.length_cuts``: rows sorted by length, least padded work plus the cost
    per call), and every time rows leave, the rows still running are cut again the same way, each piece trimmed
    to its own longest row. Without one the batch runs as one call, trimmed as it shrinks (``trim``).
    """
    n = feed["input_ids"].shape[0]
    lengths = feed["attention_mask"].sum(axis=1)
    walk = _LayerWalk(segments, num_layers, spec, lengths, n, trim, call_cost)
    if call_cost is None:
        walk.advance(segments.embed(feed), np.arange(n), 1)
    else:
        order = np.argsort(lengths, kind="stable")
        for rows in walk.pieces(order):
            width = int(lengths[rows].max())
            walk.advance(segments.embed({k: np.ascontiguousarray(v[rows, :width]) for k, v in feed.items()}), rows, 1)
    assert walk.logits is not None
    return walk.logits, walk.depth


class _LayerWalk:
    """The exit rule applied layer by layer to rows of one batch, with the cuts of ``run_layerwise``."""

    def __init__(self, segments: Segments, num_layers: int, spec: MethodSpec, lengths: np.ndarray, n: int,
                 trim: bool, call_cost: float | None) -> None:
        self.segments, self.L, self.spec, self.lengths = segments, num_layers, spec, lengths
        self.trim, self.call_cost = trim, call_cost
        self.logits: np.ndarray | None = None
        self.depth = np.full(n, num_layers, dtype=np.int64)
        self.prev = np.full(n, -1, dtype=np.int64)  # PABEE: the last prediction and how long it held, per row
        self.run = np.zeros(n, dtype=np.int64)

    def pieces(self, rows: np.ndarray) -> list[np.ndarray]:
        """``rows`` (sorted by length) cut into calls by padded work plus the cost per call."""
        from runtime.dispatch import length_cuts

        cuts = length_cuts(self.lengths[rows], len(rows), float(self.call_cost))
        return [rows[a:b] for a, b in zip([0, *cuts[:-1]], cuts)]

    def leave(self, k: int, lg: np.ndarray, rows: np.ndarray) -> np.ndarray:
        if k == self.L:
            return np.ones(len(rows), dtype=bool)
        if self.spec.family == "fastbert":
            return normalized_entropy(lg) < float(self.spec.param)
        pred = lg.argmax(axis=1)
        self.run[rows] = np.where(pred == self.prev[rows], self.run[rows] + 1, 0)
        self.prev[rows] = pred
        return self.run[rows] >= int(self.spec.param)

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
            state = self.segments.keep(state, stay, width)


def state_width(state: Any) -> int:
    """The padded width a segment state runs at (its attention mask's second axis)."""
    return int(state["attention_mask"].shape[1])


class MethodRunner:
    """Runs one method on a batch of tokenized rows and times the model part (and GEEP's exit prediction)."""

    def __init__(self, spec: MethodSpec, engine: Any, segments: Segments | None = None) -> None:
        if spec.layerwise and segments is None:
            raise ConfigError(f"bench | {spec.name} needs segment engines (embed, layer1..L).")
        if spec.family in GEEP_FAMILIES:  # the token table, also on an export that dispatches by a probe
            predictor = engine.predictor
            if isinstance(spec.param, str) and predictor is not None:
                q, m = spec.param.split("+")
                predictor = predictor.with_params(float(q), int(m))
            engine = engine.with_predictor(predictor)
        elif spec.family == "probe":
            engine = engine.with_probe(*probe_knobs(spec.param)) if spec.param else engine.with_probe()
        self.spec, self.engine, self.segments = spec, engine, segments
        self.num_layers = engine.num_layers

    def run_batch(self, enc: Encoded) -> BatchOut:
        s, eng = self.spec, self.engine
        if s.family in (*GEEP_FAMILIES, "probe"):
            t = StageTimes()
            t0 = time.perf_counter()  # the whole dispatch, exit prediction included, as `full`'s below
            out = eng.dispatch(enc, batch_size=len(enc), times=t)
            return BatchOut(out.logits, out.depths, out.heads, time.perf_counter() - t0, t.seconds["predict_exits"],
                            layers=out.layers, escalated=out.escalated)
        t0 = time.perf_counter()
        if s.family in ("full", "static"):  # the same cut dispatch as GEEP's groups (one depth, every row)
            k = self.num_layers if s.family == "full" else int(s.param)
            out = eng.dispatch(enc, depths=np.full(len(enc), k, dtype=np.int64), batch_size=len(enc))
            return BatchOut(out.logits, out.depths, out.heads, time.perf_counter() - t0)
        feed = pad_batch(enc, pad_id=eng.encoder.pad_id)
        logits, d = run_layerwise(self.segments, feed, self.num_layers, s, call_cost=eng.call_cost)
        return BatchOut(logits, d, d.copy(), time.perf_counter() - t0)
