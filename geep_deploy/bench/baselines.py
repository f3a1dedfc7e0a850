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
modules on torch) through the runner protocol of `engines.base`, as every other method does, on the runtime's
layer-by-layer walk (`runtime.layerwise`): the code the product's entropy dispatch (predictor ``entropy``) runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from geep_deploy.bench.methods import DISPATCHED, GEEP_FAMILIES, MethodSpec, probe_knobs
from geep_deploy.encoding import Encoded, pad_batch
from geep_deploy.errors import ConfigError
from geep_deploy.names import ENTROPY
from runtime.layerwise import (  # noqa: F401 - Segments, EngineSegments, state_width re-exported (bench, tests)
    EngineSegments,
    EntropyExit,
    ExitRule,
    PatienceExit,
    Segments,
    state_width,
)
from runtime.layerwise import run_layerwise as walk_layers
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


def exit_rule(spec: MethodSpec) -> ExitRule:
    """The runtime's exit rule of a layer-by-layer method: ``fastbert:s`` -> `EntropyExit` (s), ``pabee:p`` ->
    `PatienceExit` (p)."""
    if spec.family == "fastbert":
        return EntropyExit(float(spec.param))
    if spec.family == "pabee":
        return PatienceExit(int(spec.param))
    raise ConfigError(f"bench | {spec.name} is not a layer-by-layer method (fastbert:s or pabee:p).")


def run_layerwise(segments: Segments, feed: dict[str, np.ndarray], num_layers: int, spec: MethodSpec,
                  trim: bool = True, call_cost: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """FastBERT/PABEE batch inference with a shrinking batch; returns (logits, exit depth) per row: the runtime's
    walk (`runtime.layerwise.run_layerwise`, the product's entropy dispatch runs it too) under ``spec``'s rule."""
    return walk_layers(segments, feed, num_layers, exit_rule(spec), trim=trim, call_cost=call_cost)


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
        elif spec.family == ENTROPY:
            if spec.param is None and engine.entropy is None:
                raise ConfigError("bench | bare `entropy` runs the export's own entropy threshold, and this export "
                                  "has none: give one (entropy:0.3) or export with --entropy.")
            engine = engine.with_entropy(engine.entropy.threshold if spec.param is None else float(spec.param))
        self.spec, self.engine, self.segments = spec, engine, segments
        self.num_layers = engine.num_layers
        self.rule = exit_rule(spec) if spec.layerwise else None

    def run_batch(self, enc: Encoded) -> BatchOut:
        s, eng = self.spec, self.engine
        if s.family in DISPATCHED:
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
        logits, d = walk_layers(self.segments, feed, self.num_layers, self.rule, call_cost=eng.call_cost)
        return BatchOut(logits, d, d.copy(), time.perf_counter() - t0)
