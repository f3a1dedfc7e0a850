"""The probe dispatch: layer 1 for every row, then each row continues from its cached layer-1 states.

Per call (its FLOPs are ``runtime.probe.probe_cost``, the model ``export.probe_fit.dispatch_figures`` prices):

1. ``prefix`` (embeddings + layer 1 + head 1) on length-sorted chunks of at most ``max_group`` rows, each padded
   to its own longest row; the chunks' layer-1 states stay as the prefix left them, with head 1's logits.
2. The probe's features (``probe_features``; the exit table's mass when the probe reads it) give each row a
   depth, raised to the next depth with a loaded continuation graph (never lowered).
3. Rows at depth 1 answer from head 1. The others are grouped by (depth, length) with ``plan_groups``; each group
   is re-padded to its own longest row and runs one ``cont{d}`` graph (layers 2..d and exit d). With a probe
   fitted for the shared exit path (``ProbeModel.exit_mode == "skip"``) exit d < L is layer L and the teacher,
   so depth-1 rows continue too (``cont1``: layer L and the teacher on their layer-1 states).
4. Escalation (``ProbeModel.escalate``, None = off): rows below depth L whose exit head's normalised entropy is
   above the threshold are pooled across the call and continued from their cached layer-1 states by ``cont{L}``
   in one dense pass (grouped by length, chunks of ``max_group``); they answer, and report, depth L.

Layer-1 states stay where the prefix left them, as its padded per-chunk outputs (`PrefixStates`), and each
continuation group is gathered, re-padded and masked from them in one vectorised step per source chunk
(`gather_states`); a group that is one whole prefix chunk (every row of it to one depth) runs on that chunk as it
is, with no copy. When the prefix and every continuation engine are ``device_resident`` (torch on CUDA, TensorRT)
that is on the device (torch or CuPy) and only logits and small index arrays cross to and from the host; other
engines (ONNX Runtime) do the same with NumPy arrays.

Thread safety: a ``ProbeDispatch`` holds no per-call state (the probe is frozen; layer-1 states live in the
call's own arrays), and its engines are the runtime's engines, as safe to share as ``GeepEngine``'s.

Lifetime: a dispatch borrows its engines and has no ``close``; `with_knobs` makes another dispatch over the same
engines. The `GeepEngine` that loaded them closes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import BaseEngine
from geep_deploy.encoding import Encoded, pad_batch
from geep_deploy.errors import ConfigError
from geep_deploy.exits import check_logits
from geep_deploy.names import CONT, PREFIX, first_continuation
from geep_deploy.options import KEEP, Keep
from runtime.dispatch import Group, depth_map, plan_groups, restore_order
from runtime.keys import pad_rows
from runtime.probe import ProbeModel, check_probe_fits, probe_cost, probe_features
from runtime.timing import StageTimes


@dataclass
class Dispatched:
    """One call's dispatch, in input order: answers, the depth that answered, and what each row cost.

    ``planned`` is the depth a row was sent to first, ``depths`` the one that answered (L for escalated rows);
    ``layers`` and ``heads`` are what ran for it (``geep_deploy.flops.flops_speedup`` takes them).
    """

    logits: np.ndarray
    depths: np.ndarray
    planned: np.ndarray
    escalated: np.ndarray
    layers: np.ndarray
    heads: np.ndarray

    @classmethod
    def direct(cls, logits: np.ndarray, depths: np.ndarray) -> Dispatched:
        """Rows that ran straight to their depth with one exit head (the table and fixed-depth dispatch)."""
        return cls(logits, depths, depths, np.zeros(len(depths), dtype=bool), depths, np.ones_like(depths))


class ProbeDispatch:
    """The layer-1 probe with the ``prefix`` and ``cont{d}`` engines it dispatches to.

    Args:
        probe: the fitted probe (its ``risk`` and ``escalate`` are the knobs used).
        prefix: the ``prefix`` engine (input_ids, attention_mask, token_type_ids -> hidden, logits).
        continuations: ``cont{d}`` engines by depth d >= 2 (d >= 1 for the shared exit path); depth L is required
            (rows at L, and escalation). They must exit through the probe's ``exit_mode``.
        num_labels: width of the logits.
        table: an ``ExitPredictor`` whose ``exit_mass`` feeds the table features; required when the probe
            ``uses_table``, ignored otherwise.
        pad_id: the tokenizer's padding id.

    Raises:
        ConfigError: the probe does not fit the engines (layer count, no depth-L continuation, no table).
    """

    def __init__(self, probe: ProbeModel, prefix: BaseEngine, continuations: Mapping[int, BaseEngine], *,
                 num_labels: int, table: Any = None, pad_id: int = 0) -> None:
        L = probe.num_layers
        first = first_continuation(probe.exit_mode)
        if max(continuations, default=0) != L or min(continuations, default=first) < first:
            raise ConfigError(f"probe | the dispatch needs continuation graphs for depths in {first}..{L}, depth {L} "
                              f"included (deep rows and escalation run it); got {sorted(continuations)}.")
        check_probe_fits(probe, getattr(table, "num_layers", L), exit_mode=None, has_table=table is not None,
                         where="probe | this probe", owner="the dispatch")
        self.probe, self.prefix, self.continuations = probe, prefix, dict(sorted(continuations.items()))
        self.num_labels, self.table, self.pad_id = num_labels, table if probe.uses_table else None, pad_id
        self.num_layers, self.first = L, first
        self.resident = all(getattr(e, "device_resident", False) for e in (prefix, *continuations.values()))
        self._map = depth_map([1, *self.continuations] if first > 1 else list(self.continuations), L)

    def with_knobs(self, risk: float | None = None, escalate: float | None | Keep = KEEP) -> ProbeDispatch:
        """The same engines with the probe at another risk level and/or escalation threshold (None: off)."""
        return ProbeDispatch(self.probe.with_knobs(risk, escalate), self.prefix, self.continuations,
                             num_labels=self.num_labels, table=self.table, pad_id=self.pad_id)

    def describe(self) -> dict[str, Any]:
        """The knobs and graphs ``GeepEngine.info`` reports."""
        p = self.probe
        return {"risk": p.risk, "escalate": p.escalate, "uses_table": p.uses_table, "exit_mode": p.exit_mode,
                "continuations": sorted(self.continuations), "states_on_device": self.resident}

    @property
    def engines(self) -> list[BaseEngine]:
        """The prefix and continuation engines, borrowed: whoever opened them closes them (`GeepEngine`)."""
        return [self.prefix, *self.continuations.values()]

    # -- one call ------------------------------------------------------------------------------------------------
    def run(self, enc: Encoded, max_group: int, times: StageTimes | None = None,
            call_cost: float | None = None) -> Dispatched:
        """Dispatch tokenized rows (steps 1-4 of the module docstring); results in input order. ``call_cost``
        cuts every pass into engine calls by padded work (``plan_groups``)."""
        times = times if times is not None else StageTimes()
        L = self.num_layers
        lengths = enc.lengths
        with times.stage("model"):
            states, logits1 = self._prefix(enc, max_group, call_cost)
        with times.stage("predict_exits"):
            mass = self._table_mass(enc, max_group) if self.table is not None else None
            planned = self._map[self.probe.depths(probe_features(logits1, lengths, mass))]
        with times.stage("model"):
            logits = logits1.copy()
            deep = np.flatnonzero(planned >= self.first)  # the rest answer from head 1
            if deep.size:
                logits[deep] = self._continue(states, deep, planned[deep], lengths, max_group, call_cost)
            escalated = self.probe.escalated(logits, planned)
            if escalated.any():
                with times.stage("escalate"):
                    rows = np.flatnonzero(escalated)
                    logits[rows] = self._continue(states, rows, np.full(rows.size, L), lengths, max_group,
                                                  call_cost)
        times.count("escalated", int(escalated.sum()))
        layers, heads = probe_cost(planned, escalated, L, self.probe.exit_mode)
        return Dispatched(logits, np.where(escalated, L, planned), planned, escalated, layers, heads)

    def _prefix(self, enc: Encoded, max_group: int,
                call_cost: float | None = None) -> tuple[PrefixStates, np.ndarray]:
        """Layer-1 states (`PrefixStates`: the prefix's padded chunk outputs where the engine left them, host
        arrays or device tensors) and head-1 logits, in input order."""
        groups = _length_chunks(enc, max_group, call_cost)
        logits, chunks = [], []
        chunk_of, pos = np.zeros(len(enc), np.int64), np.zeros(len(enc), np.int64)
        for c, g in enumerate(groups):
            feed = pad_batch(enc.take(g.indices), pad_id=self.pad_id)
            if self.resident:
                out = self.prefix.infer_states(feed)
                out["logits"] = self.prefix.to_host(out["logits"])
            else:
                out = self.prefix.infer(feed, check_inputs=False)
            logits.append(check_logits(out["logits"], len(g.indices), self.num_labels, "prefix"))
            chunks.append(out["hidden"])
            chunk_of[g.indices], pos[g.indices] = c, np.arange(len(g.indices))
        return PrefixStates(chunks, chunk_of, pos), restore_order(groups, logits)

    def _table_mass(self, enc: Encoded, max_group: int) -> np.ndarray:
        """(B, L) exit mass of the token table, for the probe's table features."""
        groups = _length_chunks(enc, max_group)
        masses = [self.table.exit_mass(*pad_rows([enc.ids[i] for i in g.indices])) for g in groups]
        return restore_order(groups, masses)

    def _continue(self, states: PrefixStates, rows: np.ndarray, depths: np.ndarray, lengths: np.ndarray,
                  max_group: int, call_cost: float | None = None) -> np.ndarray:
        """Logits of ``rows`` continued to ``depths`` from their layer-1 states: one ``cont{d}`` call per
        (depth, length) group, each re-padded to its own longest row. Returned in the order of ``rows``."""
        groups = plan_groups(depths, lengths[rows], max_group=max_group, call_cost=call_cost)
        outs = []
        for g in groups:
            sub = rows[g.indices]
            eng = self.continuations[g.depth]
            hidden, mask = gather_states(states, sub, lengths[sub], int(lengths[sub].max()))
            if self.resident:
                logits = eng.to_host(eng.infer_states({"hidden": hidden, "attention_mask": mask})["logits"])
            else:
                logits = eng.infer({"hidden": hidden, "attention_mask": mask}, check_inputs=False)["logits"]
            outs.append(check_logits(logits, sub.size, self.num_labels, f"cont{g.depth}"))
        return restore_order(groups, outs)

    def check(self, enc: Encoded) -> None:
        """Run ``enc`` through the prefix and every continuation graph: a graph whose logits are not as wide as
        the label list (or not finite) fails here, at load, not on a request."""
        states, _ = self._prefix(enc, len(enc))
        rows, lengths = np.arange(len(enc)), enc.lengths
        for d in self.continuations:
            self._continue(states, rows, np.full(len(enc), d), lengths, len(enc))


@dataclass
class PrefixStates:
    """One call's layer-1 states: the prefix's padded chunk outputs, where the engine left them (NumPy arrays on
    the host path; torch tensors or CuPy arrays on device-resident engines, never copied to the host), and where
    each row lies in them (``chunk_of[i]``, row ``pos[i]`` of that chunk)."""

    chunks: list[Any]
    chunk_of: np.ndarray
    pos: np.ndarray


def gather_states(states: PrefixStates, rows: np.ndarray, lengths: np.ndarray, width: int) -> tuple[Any, Any]:
    """``rows``' states as one (n, width, H) array, zero past each row's length, and its int64 mask.

    One vectorised gather per prefix chunk the rows come from, in the chunks' own library and device (NumPy,
    torch or CuPy); on a device only the small index arrays are uploaded. Zeroing past each row's length makes
    the padded input independent of which chunk a row came from, so every path gives the same logits.

    ``rows`` that are one whole prefix chunk, in its order and at its width (every row continued to one depth,
    as when all rows go to depth L), get that chunk itself: no copy. Its padded positions keep the prefix's
    values instead of zeros, which changes nothing: the additive -10000 mask gives them an attention weight of
    exactly 0 (``exp`` underflows), and no head reads a padded position.
    """
    first = states.chunks[int(states.chunk_of[rows[0]])]
    xp = _namespace(first)
    mask = xp.arange(width)[None, :] < xp.put(np.asarray(lengths, dtype=np.int64))[:, None]
    whole = _whole_chunk(states, rows, width)
    if whole is not None:
        return whole, xp.int64(mask)
    out = xp.zeros((rows.size, width, first.shape[-1]), first)
    src = states.chunk_of[rows]
    for c in np.unique(src):
        j = np.flatnonzero(src == c)
        chunk = states.chunks[int(c)]
        w = min(width, int(chunk.shape[1]))
        out[xp.put(j), :w] = chunk[xp.put(states.pos[rows[j]])][:, :w]
    out *= xp.cast(mask[..., None], out)
    return out, xp.int64(mask)


def _whole_chunk(states: PrefixStates, rows: np.ndarray, width: int) -> Any | None:
    """The prefix chunk that ``rows`` are, row for row in order and at ``width`` columns; None otherwise."""
    c = int(states.chunk_of[rows[0]])
    chunk = states.chunks[c]
    if rows.size != int(chunk.shape[0]) or width != int(chunk.shape[1]):
        return None
    if (states.chunk_of[rows] != c).any() or (states.pos[rows] != np.arange(rows.size)).any():
        return None
    return chunk


@dataclass(frozen=True)
class _Namespace:
    """The few array operations `gather_states` needs, in the library of the states (NumPy, torch or CuPy)."""

    put: Any  # host index array -> the library's array, on the states' device
    zeros: Any  # (shape, like) -> zeros of like's dtype and device
    arange: Any
    cast: Any  # (array, like) -> array in like's dtype
    int64: Any


def _namespace(like: Any) -> _Namespace:
    if type(like).__module__.startswith("torch"):
        import torch

        dev = like.device
        return _Namespace(lambda a: torch.as_tensor(a, device=dev), lambda shape, a: a.new_zeros(shape),
                          lambda n: torch.arange(n, device=dev), lambda x, a: x.to(a.dtype),
                          lambda x: x.to(torch.int64))
    if isinstance(like, np.ndarray):
        xp: Any = np
    else:
        import cupy as xp
    return _Namespace(xp.asarray, lambda shape, a: xp.zeros(shape, dtype=a.dtype), xp.arange,
                      lambda x, a: x.astype(a.dtype), lambda x: x.astype(xp.int64))


def continuation_kinds(bundle: Any) -> list[tuple[str, int | None]]:
    """The (kind, depth) graphs the probe dispatch of ``bundle`` runs: ``prefix`` and ``cont{d}`` for every
    exported depth from the exit mode's first continuation on."""
    first = first_continuation(bundle.exit_mode)
    return [(PREFIX, None), *((CONT, d) for d in bundle.depths if d >= first)]


def _length_chunks(enc: Encoded, max_group: int, call_cost: float | None = None) -> list[Group]:
    """The whole call as length-sorted chunks of at most ``max_group`` rows (one ``plan_groups`` depth)."""
    return plan_groups(np.ones(len(enc), dtype=np.int64), enc.lengths, max_group=max_group, call_cost=call_cost)
