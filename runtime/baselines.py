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
They run the export's segment graphs (``embed``, ``layer{k}``) on ONNX Runtime/TensorRT, and the `ExitBert`
modules directly on torch.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engines.torch_cuda import fp32_precision_scope
from geep_deploy.encoding import Encoded, pad_batch
from geep_deploy.errors import ConfigError
from geep_deploy.exits import BENCH_SWEEPS, normalized_entropy
from runtime.timing import StageTimes

FAMILIES = ("full", "static", "geep", "geep-pool", "probe", "fastbert", "pabee")
GEEP_FAMILIES = ("geep", "geep-pool")
DEFAULT_SWEEPS = BENCH_SWEEPS


@dataclass(frozen=True)
class MethodSpec:
    """A method name with its parameter: ``fastbert:0.3`` -> ("fastbert", 0.3)."""

    family: str
    param: float | int | str | None = None
    source: str | None = None  # ``probe:0.3@skip``: runs on the bench's export named ``skip``

    @property
    def name(self) -> str:
        at = "" if self.source is None else f"@{self.source}"
        if self.param is None:
            return self.family + at
        return (f"{self.family}:{self.param}" if isinstance(self.param, str) else f"{self.family}:{self.param:g}") + at

    @property
    def layerwise(self) -> bool:
        return self.family in ("fastbert", "pabee")


def parse_methods(text: str, num_layers: int) -> list[MethodSpec]:
    """Parse ``full,geep,fastbert:0.3,pabee,static:2``; a bare fastbert/pabee/static expands to a sweep.

    ``geep`` uses the export's tuned exit table; ``geep:Q+M`` overrides its quantile Q and margin M.
    ``probe`` uses the export's probe at its stored knobs; ``probe:R`` sets the risk R, ``probe:R+escT`` also the
    escalation threshold T (``export.probe_fit.probe_knob`` writes these strings).
    ``geep-pool`` (same parameters) pools the whole split per predicted depth before batching, as a service
    that collects requests does: batches are cut from rows sorted by (depth, length), not from length order.
    A suffix ``@NAME`` runs the method on another export the bench was given under that name
    (``probe:0.3@skip``: the probe dispatch of an export that exits through the shared exit path).

    Raises:
        ConfigError: unknown family or bad parameter, naming the expected form.
    """
    out: list[MethodSpec] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        method, at, source = item.partition("@")
        if at and not source.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"bench | bad method {item!r}: after @ comes the name of an export given to the bench "
                              "(letters, digits, - and _), e.g. probe:0.3@skip.")
        before = len(out)
        family, _, arg = method.partition(":")
        if family not in FAMILIES:
            raise ConfigError(f"bench | unknown method {family!r}. Expected one of {FAMILIES} "
                              "(with :speed for fastbert, :patience for pabee, :k for static).")
        try:
            if family == "full":
                if arg:
                    raise ValueError
                out.append(MethodSpec(family))
            elif family in GEEP_FAMILIES:
                if arg:
                    q, _, m = arg.partition("+")
                    if not 0.0 <= float(q) <= 1.0 or int(m or 0) < 0:
                        raise ValueError
                    out.append(MethodSpec(family, f"{float(q):g}+{int(m or 0)}"))
                else:
                    out.append(MethodSpec(family))
            elif family == "probe":
                out.append(MethodSpec(family, _probe_param(arg) if arg else None))
            elif family == "static":
                ks = [int(arg)] if arg else list(range(1, num_layers))
                if any(not 1 <= k <= num_layers for k in ks):
                    raise ValueError
                out += [MethodSpec("static", k) for k in ks]
            elif family == "fastbert":
                speeds = [float(arg)] if arg else list(DEFAULT_SWEEPS["fastbert"])
                if any(not 0.0 <= s <= 1.0 for s in speeds):
                    raise ValueError
                out += [MethodSpec("fastbert", s) for s in speeds]
            else:
                ps = [int(arg)] if arg else list(DEFAULT_SWEEPS["pabee"])
                if any(p < 1 for p in ps):
                    raise ValueError
                out += [MethodSpec("pabee", p) for p in ps]
        except ValueError:
            raise ConfigError(f"bench | bad method {item!r}: static:k needs 1 <= k <= {num_layers}, fastbert:s "
                              "needs 0 <= s <= 1, pabee:p needs p >= 1, geep:Q+M needs quantile 0 <= Q <= 1 and "
                              "margin M >= 0 (e.g. geep:0.5+1), probe:R[+escT] needs risk and threshold in [0, 1] "
                              "(e.g. probe:0.3+esc0.6).") from None
        if at:
            out[before:] = [MethodSpec(m.family, m.param, source) for m in out[before:]]
    if not out:
        raise ConfigError(f"bench | --methods {text!r} names no method. Give a comma list such as full,geep.")
    return list(dict.fromkeys(out))


def _probe_param(arg: str) -> str:
    """``0.3`` or ``0.3+esc0.6`` checked and normalised (ValueError when malformed)."""
    risk, esc = probe_knobs(arg)
    return f"{risk:g}" + ("" if esc is None else f"+esc{esc:g}")


def probe_knobs(param: str) -> tuple[float, float | None]:
    """(risk, escalation threshold or None) of a ``probe:`` parameter; ValueError when malformed."""
    r, plus, e = param.partition("+")
    if plus and not e.startswith("esc"):
        raise ValueError(param)
    risk, esc = float(r), float(e[3:]) if plus else None
    if not 0.0 <= risk <= 1.0 or (esc is not None and not 0.0 <= esc <= 1.0):
        raise ValueError(param)
    return risk, esc


@dataclass
class BatchOut:
    """One batch's result: logits, depth per row, exit heads and layers run per row, and the seconds spent.

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
    """Segments over `BaseEngine` objects (ONNX Runtime, TensorRT, or torch engines of kind embed/layer)."""

    def __init__(self, embed: Any, layers: list[Any]) -> None:
        self.embed_engine, self.layers = embed, layers

    def embed(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        h = self.embed_engine.infer({"input_ids": feed["input_ids"], "token_type_ids": feed["token_type_ids"]},
                                    check_inputs=False)["hidden"]
        return {"hidden": h, "attention_mask": feed["attention_mask"]}

    def layer(self, k: int, state: dict[str, np.ndarray]) -> np.ndarray:
        out = self.layers[k - 1].infer(state, check_inputs=False)
        state["hidden"] = next(v for n, v in out.items() if n != "logits")
        return out["logits"]

    def keep(self, state: dict[str, np.ndarray], rows: np.ndarray, width: int) -> dict[str, np.ndarray]:
        return {"hidden": np.ascontiguousarray(state["hidden"][rows, :width]),
                "attention_mask": np.ascontiguousarray(state["attention_mask"][rows, :width])}

    def close(self) -> None:
        for eng in (self.embed_engine, *self.layers):
            eng.close()


class TorchSegments:
    """Segments straight on a loaded `ExitBert` (tensors stay on the device between layers)."""

    def __init__(self, model: Any, device: str = "cpu", precision: str = "fp32") -> None:
        import torch

        self.torch, self.model, self.device, self.precision = torch, model, device, precision

    def _scope(self) -> Any:
        """The engines' TF32/fp32 setting, so the baselines run in the same arithmetic as GEEP and ``full``."""
        if self.device != "cuda":  # the TF32 switch only governs CUDA matmuls
            return contextlib.nullcontext()
        return fp32_precision_scope(self.torch, self.precision)

    def embed(self, feed: dict[str, np.ndarray]) -> dict[str, Any]:
        from geep_deploy.model import mask_to_bias

        t = {k: self.torch.from_numpy(v).to(self.device) for k, v in feed.items()}
        with self.torch.inference_mode(), self._scope():
            h = self.model.embeddings(t["input_ids"], t["token_type_ids"])
            return {"hidden": h, "mask": t["attention_mask"], "bias": mask_to_bias(t["attention_mask"], h.dtype)}

    def layer(self, k: int, state: dict[str, Any]) -> np.ndarray:
        with self.torch.inference_mode(), self._scope():
            h = self.model.run_layers(state["hidden"], state["bias"], k - 1, k)
            state["hidden"] = h
            return self.model.classify(k, h, state["mask"]).float().cpu().numpy()

    def keep(self, state: dict[str, Any], rows: np.ndarray, width: int) -> dict[str, Any]:
        idx = self.torch.from_numpy(rows).to(self.device)
        return {k: v.index_select(0, idx)[..., :width] if k == "bias" else v.index_select(0, idx)[:, :width]
                for k, v in state.items()}

    def close(self) -> None:  # the model belongs to the engine that loaded it
        pass


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
    mask = state["attention_mask"] if "attention_mask" in state else state["mask"]
    return int(mask.shape[1])


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
            out = eng.dispatch(enc, batch_size=len(enc), times=t)
            return BatchOut(out.logits, out.depths, out.heads, t.seconds["model"], t.seconds["predict_exits"],
                            layers=out.layers, escalated=out.escalated)
        t0 = time.perf_counter()
        if s.family in ("full", "static"):  # the same cut dispatch as GEEP's groups (one depth, every row)
            k = self.num_layers if s.family == "full" else int(s.param)
            logits, d = eng.run_encoded(enc, depths=np.full(len(enc), k, dtype=np.int64), batch_size=len(enc))
            return BatchOut(logits, d, np.ones_like(d), time.perf_counter() - t0)
        feed = pad_batch(enc, pad_id=eng.encoder.pad_id)
        logits, d = run_layerwise(self.segments, feed, self.num_layers, s, call_cost=eng.call_cost)
        return BatchOut(logits, d, d.copy(), time.perf_counter() - t0)
