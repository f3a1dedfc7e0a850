"""`GeepEngine`: load an export directory once, then classify texts with exit-sorted dispatch.

Three dispatches, one per predictor:

- **table** (exports without a probe): predict each row's exit depth from its tokens (the exit table, on the GPU
  for GPU backends, its NumPy twin otherwise); sort rows by (depth, length) with `plan_groups`; run each group on
  the engine of its depth, padded only to the group's own longest row; put the results back in input order with
  `restore_order`.
- **probe** (exports with a probe, the default there): layer 1 for every row, the probe picks each row's depth
  from what layer 1 knows, and the rows continue from their cached layer-1 states, one dense group per (depth,
  length); unsure exits may escalate to depth L in one pooled pass (`runtime.probe_dispatch`).
- **entropy** (exports calibrated with ``--predictor entropy``, or any export with segment graphs through
  `with_entropy`): FastBERT's exit over the export's own heads, layer by layer with a shrinking batch: after
  layer k, rows whose head-k normalised entropy is below the threshold leave (`runtime.layerwise`, the walk the
  bench's FastBERT baseline runs). A head check per layer and no dense depth groups.

Rows given explicit ``depths`` run on the depth graphs either way.

Thread safety: one `GeepEngine` may serve several threads. ONNX Runtime sessions are safe for concurrent ``run``;
torch modules in inference mode hold no per-call state (each CUDA-graph engine locks its static buffers); the
TensorRT engines share one scratch block and serialise on its lock. The exit predictor and the probe are
read-only after load, and the probe dispatch keeps each call's layer-1 states in that call's own arrays (the
entropy walk likewise its states); views made by `with_predictor`/`with_probe`/`with_entropy` (`EngineView`)
borrow the engines and are as safe. The segment engines of the entropy dispatch are opened once, under a lock,
when first needed.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BaseEngine, EngineStateError
from geep_deploy.encoding import Encoded, TextEncoder, pad_batch
from geep_deploy.errors import ConfigError
from geep_deploy.exits import check_logits, softmax
from geep_deploy.limits import check_count
from geep_deploy.names import ENTROPY, PROBE, TABLE
from geep_deploy.options import KEEP, Keep
from runtime.dispatch import depth_map
from runtime.layerwise import EntropyExit, LayerwiseDispatch
from runtime.options import LoadOptions
from runtime.predictor import FixedDepth  # noqa: F401 - re-exported: `from runtime.engine import FixedDepth`
from runtime.probe_dispatch import Dispatched, ProbeDispatch
from runtime.timing import StageTimes


@dataclass(frozen=True)
class Prediction:
    """One input's result: label name and id, class probabilities and the depth that produced them."""

    label: str
    label_id: int
    probabilities: list[float]
    depth: int


@dataclass
class PredictResult:
    """Results of one ``predict`` call, in input order, plus the time each stage took."""

    logits: np.ndarray
    depths: np.ndarray
    label_names: list[str]
    timings: StageTimes = field(default_factory=StageTimes)
    escalated: np.ndarray | None = None  # probe dispatch: rows whose answer was escalated to depth L
    heads: np.ndarray | None = None  # exit heads each row ran (1, or its depth under the entropy exit)

    @property
    def num_escalated(self) -> int:
        return 0 if self.escalated is None else int(self.escalated.sum())

    def __len__(self) -> int:
        return len(self.depths)

    @property
    def label_ids(self) -> np.ndarray:
        return self.logits.argmax(axis=-1)

    @property
    def probabilities(self) -> np.ndarray:
        return softmax(self.logits.astype(np.float64))

    @property
    def predictions(self) -> list[Prediction]:
        probs, ids = self.probabilities, self.label_ids
        return [Prediction(self.label_names[int(i)], int(i), [float(x) for x in p], int(d))
                for i, p, d in zip(ids, probs, self.depths)]

    def to_records(self) -> list[dict[str, Any]]:
        return [p.__dict__.copy() for p in self.predictions]


def _explicit_depths(depths: Any, n: int, num_layers: int) -> np.ndarray:
    """A caller's per-row depths as int64, rejecting floats (2.7 would silently become 2), None and strings."""
    arr = np.asarray(depths)
    if arr.shape != (n,) or arr.dtype.kind not in "iu" or (n and (arr.min() < 1 or arr.max() > num_layers)):
        raise ConfigError(f"runtime | depths must be {n} integers in 1..{num_layers}, got {depths!r}"[:300])
    return arr.astype(np.int64)


@dataclass(frozen=True)
class EngineParts:
    """The ready parts a `GeepEngine` classifies with, as one record: `runtime.loading.build_parts` builds them
    from an export (``GeepEngine.load``); tests and custom pipelines build their own. One value instead of eight
    constructor arguments, and the same record gives a view (`EngineView`) the owner's parts with another
    predictor or probe.

    Args:
        encoder: tokenizer with truncation (`TextEncoder`).
        predictor: anything with ``predict(ids: list[np.ndarray]) -> depths`` and ``num_layers`` (the table
            dispatch), or None when only the probe dispatches.
        engines: loaded depth engines by depth; depths without one are raised to the next depth that has one.
        label_names: class names, index = label id.
        probe: the probe dispatch (`ProbeDispatch`); when given, rows without explicit depths go through it
            instead of ``predictor``. Defaults to None.
        info: what was loaded (backend, device, precision, ...), for reports. Defaults to empty.
        owned: further objects to close with the engine (the probe dispatch's engines, shared weights).
        manifest: the export's manifest, for `guarantee`. Defaults to None (no guarantee).
        entropy: the entropy exit (`runtime.layerwise.EntropyExit`); when given, rows without explicit depths go
            layer by layer through ``segments`` under it instead of ``probe`` or ``predictor``. Defaults to None.
        segments: the ``embed`` and ``layer1..L`` engines (`runtime.layerwise.EngineSegments`), or a function
            without arguments that opens them when the entropy dispatch first needs them (``GeepEngine.load``
            passes one). The engine owns and closes them. Defaults to None (no entropy dispatch).
    """

    encoder: TextEncoder
    predictor: Any
    engines: dict[int, BaseEngine]
    label_names: Sequence[str]
    probe: ProbeDispatch | None = None
    info: dict[str, Any] | None = None
    owned: Sequence[Any] = ()
    manifest: dict[str, Any] | None = None
    entropy: EntropyExit | None = None
    segments: Any = None


class _Classifier:
    """What an engine and its views share: ``predict``, ``dispatch``, the guarantee and making views; no lifetime
    (`GeepEngine` owns and closes its engines, `EngineView` borrows them)."""

    def __init__(self, parts: EngineParts, *, max_group: int | None, call_cost: float | None) -> None:
        if not parts.engines:
            raise ConfigError("runtime | GeepEngine needs at least one depth engine.")
        max_group = check_count("runtime | max_group", max_group, allow_none=True)  # 0 is not "the default"
        self._parts = parts
        self.encoder, self.predictor, self.probe, self.entropy = parts.encoder, parts.predictor, parts.probe, parts.entropy
        self.engines, self.label_names = dict(sorted(parts.engines.items())), list(parts.label_names)
        self.max_group, self.call_cost, self.manifest = max_group, call_cost, parts.manifest
        self.num_layers = int(getattr(self.predictor, "num_layers", None) or getattr(self.probe, "num_layers", None)
                              or max(self.engines))
        self.info = dict(parts.info or {})
        self._depth_map = depth_map(sorted(self.engines), self.num_layers)

    def _view(self, predictor: Any, probe: ProbeDispatch | None, info: dict[str, Any],
              entropy: EntropyExit | None = None) -> EngineView:
        return EngineView(getattr(self, "owner", self), predictor, probe, {**self.info, **info}, entropy)

    def _segments(self) -> Any:
        """The owner's segment engines, opened on first use (`GeepEngine._open_segments`)."""
        return getattr(self, "owner", self)._open_segments()

    def with_predictor(self, predictor: Any) -> EngineView:
        """A view sharing this engine's depth engines but predicting exits with ``predictor`` (table dispatch).

        Example: ``eng.with_predictor(eng.predictor.with_params(quantile=0.5, margin=1))`` trades accuracy for
        speed without reloading. The view borrows the engines: it has no ``close``; close the owner.

        Raises:
            ConfigError: ``predictor`` is None (an export without an exit table has nothing to dispatch by).
        """
        if predictor is None:
            raise ConfigError("runtime | this export has no exit table, so the table dispatch is not available; "
                              "use the probe (predictor='probe') or export with --exit-table.")
        kind = None if isinstance(predictor, FixedDepth) else TABLE
        return self._view(predictor, None, {"predictor": kind, "predictor_params": (
            getattr(predictor, "quantile", None), getattr(predictor, "margin", None))})

    def with_probe(self, risk: float | None = None, escalate: float | None | Keep = KEEP) -> EngineView:
        """A view sharing this engine's engines, dispatching by the probe at ``risk`` / ``escalate``.

        Example: ``eng.with_probe(risk=0.3, escalate=0.6)``; ``escalate=None`` turns escalation off, and either
        left out keeps the stored value. The view borrows the engines: it has no ``close``; close the owner.

        Raises:
            ConfigError: the engine was loaded without the probe dispatch, or a knob is out of range.
        """
        if self.probe is None:
            raise ConfigError("runtime | this engine has no probe dispatch: load an export that carries a probe "
                              "with predictor='probe' (exports get one with `geep-deploy export --probe`).")
        probe = self.probe.with_knobs(risk, escalate)
        return self._view(self.predictor, probe, {"predictor": PROBE, "probe": probe.describe()})

    def with_entropy(self, threshold: float) -> EngineView:
        """A view sharing this engine's engines, dispatching by FastBERT's entropy exit over the export's own heads
        at ``threshold`` (a normalised entropy in [0, 1]; 0: every row at depth L).

        Rows go layer by layer through the export's segment graphs with a shrinking batch; a row leaves after
        layer k when head k's normalised entropy is below ``threshold`` (`runtime.layerwise`). The segment
        engines are opened once, by the owner, on the first call that needs them (here), and closed with it.
        Example: ``eng.with_entropy(0.3).predict(texts)``. The view borrows the engines: it has no ``close``.

        Raises:
            ConfigError: ``threshold`` out of range, or the export has no segment graphs (the message names the
                export option that makes them).
        """
        rule = EntropyExit(threshold)
        seg = self._segments()  # fails here, not on the first request
        return self._view(self.predictor, None, {"predictor": ENTROPY, "entropy": {
            "threshold": rule.threshold, "states_on_device": bool(getattr(seg, "resident", False))}}, rule)

    # -- inference ------------------------------------------------------------------------------------------
    def predict(
        self,
        texts: Sequence[str],
        texts_b: Sequence[str] | None = None,
        batch_size: int | None = None,
        depths: Sequence[int] | np.ndarray | None = None,
        exact: bool = False,
    ) -> PredictResult:
        """Classify ``texts`` (or pairs with ``texts_b``).

        Rows are grouped by predicted depth across the whole call (a group never exceeds ``batch_size`` rows),
        so a caller that collects requests gets the largest dense groups.

        Args:
            texts: first texts; non-empty strings. Longer inputs are truncated to the export's max length.
            texts_b: second texts of pairs, same length as ``texts``.
            batch_size: most rows per engine call. Defaults to ``max_group`` or 64.
            depths: run each row at this depth instead of the predicted one (1..L).
            exact: run every row at depth L, the full model's answer (no early exit; ``depths`` must be None).

        Raises:
            DataError: empty list, empty or non-string text, or pair sides of different lengths.
            ConfigError: ``exact`` with ``depths``, or ``exact`` on an engine without depth L loaded.
        """
        if exact:
            if depths is not None:
                raise ConfigError("runtime | exact=True runs every row at depth L; drop depths, or exact.")
            if self.num_layers not in self.engines:
                raise ConfigError(f"runtime | exact=True needs depth {self.num_layers} (the full model), but this "
                                  f"engine loaded depths {sorted(self.engines)}. Load depth {self.num_layers}.")
            depths = np.full(len(texts), self.num_layers, dtype=np.int64)
        times = StageTimes()
        with times.stage("total"):
            with times.stage("tokenize"):
                enc = self.encoder.encode(texts, texts_b)
            out = self.dispatch(enc, depths=depths, batch_size=batch_size, times=times)
        times.calls, times.rows = 1, len(enc)
        dispatched = depths is None and self.entropy is None and self.probe is not None
        return PredictResult(out.logits, out.depths, self.label_names, times,
                             escalated=out.escalated if dispatched else None, heads=out.heads)

    @property
    def guarantee(self) -> dict[str, Any] | None:
        """The consistency guarantee of the setting this engine serves (``calibrate --max-disagree``), or None.

        ``{"max_disagree": EPS, "confidence": 1 - DELTA, "calibration_rows", "certified_bound", "knob", ...}``:
        with probability at least 1 - DELTA over the calibration draw, at most EPS of rows drawn like the
        calibration rows get another answer than depth L's. None when the export records none, or when this
        engine dispatches by another predictor, other knobs or a fixed depth than the certified ones.
        """
        from runtime.guarantee import served_guarantee

        manifest = self.manifest
        if not isinstance(manifest, dict):
            return None
        if self.entropy is not None:
            return served_guarantee(manifest, ENTROPY, {"tau": self.entropy.threshold})
        if self.probe is not None:
            p = self.probe.probe
            return served_guarantee(manifest, PROBE, {"risk": p.risk, "escalate": p.escalate})
        pred = self.predictor
        if not isinstance(pred, FixedDepth) and hasattr(pred, "quantile") and hasattr(pred, "margin"):
            return served_guarantee(manifest, TABLE, {"quantile": pred.quantile, "margin": pred.margin})
        return None

    def predict_depths(self, enc: Encoded) -> np.ndarray:
        """Exit depths of tokenized rows by the table predictor, mapped onto the loaded depths."""
        if self.predictor is None:
            raise ConfigError("runtime | this export has no exit table to predict depths from tokens; the probe "
                              "dispatch decides depths after layer 1 (call predict).")
        d = np.asarray(self.predictor.predict(enc.ids), dtype=np.int64)
        return self._map_depths(np.clip(d, 1, self.num_layers))

    def _map_depths(self, d: np.ndarray) -> np.ndarray:
        """Raise each depth to the next loaded one; a row needing a depth above every loaded one is an error."""
        used = self._depth_map[d]
        if (used == 0).any():
            need = int(d[used == 0].max())
            raise ConfigError(f"runtime | a row needs depth {need}, but the deepest loaded depth is "
                              f"{max(self.engines)}; running it shallower would give a worse answer than "
                              f"predicted. Load depth {need} or deeper.")
        return used

    def dispatch(
        self,
        enc: Encoded,
        depths: Sequence[int] | np.ndarray | None = None,
        batch_size: int | None = None,
        times: StageTimes | None = None,
    ) -> Dispatched:
        """Dispatch tokenized rows: by the entropy exit or the probe when the engine has one (and no ``depths`` are
        given), else by the table (or the given depths); answers in input order with what each row ran
        (`Dispatched`)."""
        from runtime.dispatch import plan_groups, restore_order

        times = times if times is not None else StageTimes()
        cap = check_count("runtime | batch_size", batch_size, allow_none=True) or self.max_group or 64
        if depths is None and self.entropy is not None:
            walk = LayerwiseDispatch(self._segments(), self.entropy, num_layers=self.num_layers,
                                     num_labels=len(self.label_names), pad_id=self.encoder.pad_id)
            return walk.run(enc, cap, times, self.call_cost)
        if depths is None and self.probe is not None:
            return self.probe.run(enc, cap, times, self.call_cost)
        with times.stage("predict_exits"):
            if depths is None:
                d = self.predict_depths(enc)
            else:
                d = _explicit_depths(depths, len(enc), self.num_layers)
                d = self._map_depths(d)
        with times.stage("model"):
            groups = plan_groups(d, enc.lengths, max_group=cap, call_cost=self.call_cost)
            outs = [self._run_group(enc.take(g.indices), g.depth) for g in groups]
            logits = restore_order(groups, outs)
        return Dispatched.direct(logits, d)

    def _run_group(self, sub: Encoded, depth: int) -> np.ndarray:
        feed = pad_batch(sub, pad_id=self.encoder.pad_id)
        logits = self.engines[int(depth)].infer(feed, check_inputs=False)["logits"]
        return check_logits(logits, len(sub), len(self.label_names), f"depth {depth}")

    def __repr__(self) -> str:
        e = next(iter(self.engines.values()))
        kind = ENTROPY if self.entropy is not None else PROBE if self.probe is not None else TABLE
        return (f"<{type(self).__name__} {e.backend} {e.device} {e.precision} depths={list(self.engines)} "
                f"dispatch={kind} labels={self.label_names}>")


class GeepEngine(_Classifier):
    """Tokenizer + exit predictor + one engine per depth, behind ``predict(texts)``.

    Build it with `GeepEngine.load` from an export directory; the constructor takes ready parts (tests and
    custom pipelines).

    Args:
        parts: the encoder, predictor, depth engines, label names, probe dispatch, info, owned objects and
            manifest (`EngineParts`).
        max_group: split a depth group into chunks of at most this many rows. Defaults to 64 (a ``predict``
            call's ``batch_size`` overrides it).
        call_cost: when given, every depth group is cut into engine calls by padded work plus this many tokens
            per call (`runtime.dispatch.length_cuts`) instead of every ``max_group`` rows. Defaults to None.

    The engine owns its engines (and ``parts.owned``, and ``parts.segments`` once opened): ``close`` (or leaving
    ``with``) closes them. `with_predictor`, `with_probe` and `with_entropy` return views (`EngineView`) that
    borrow them and have no ``close``; closing the engine ends them too.
    """

    def __init__(self, parts: EngineParts, *, max_group: int | None = None, call_cost: float | None = None) -> None:
        super().__init__(parts, max_group=max_group, call_cost=call_cost)
        self._owned = list(parts.owned)
        seg = parts.segments
        self._seg_lock = threading.Lock()
        self._seg_open = seg if callable(seg) else None  # opens them on first use
        self._seg = None if callable(seg) else seg
        self._closed = False

    def _open_segments(self) -> Any:
        """The segment engines, opened once (under a lock: views on several threads may ask at once).

        Raises:
            ConfigError: none were given and there is nothing to open them from, or the export has none.
            EngineStateError: the engine was closed.
        """
        with self._seg_lock:
            if self._closed:
                raise EngineStateError("runtime | this GeepEngine was closed (and its views with it); load the "
                                       "export again.")
            if self._seg is None:
                if self._seg_open is None:
                    raise ConfigError("runtime | this engine has no segment engines (embed, layer1..L), which the "
                                      "entropy exit runs: load an export with GeepEngine.load, or pass "
                                      "EngineParts(segments=EngineSegments(embed, layers)).")
                self._seg = self._seg_open()
            return self._seg

    # -- construction from an export ------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        export_dir: str | Path,
        backend: str | LoadOptions | None = None,
        device: str | None = None,
        precision: str | None = None,
        *,
        options: LoadOptions | None = None,
        **fields: Any,
    ) -> GeepEngine:
        """Load an export directory written by ``geep-deploy export``.

        Args:
            export_dir: the export directory (``manifest.json`` inside).
            backend, device, precision: as in `LoadOptions` (``"auto"``, ``"cpu"``, ``"fp32"`` unless given
                here or in ``options``); a `LoadOptions` in place of ``backend`` is taken as ``options``.
            options: a `runtime.options.LoadOptions` built once (the CLI and the service do). Defaults to one
                from the keywords.
            **fields: any other `LoadOptions` field, replacing the one in ``options``: ``depths``,
                ``fixed_depth``, ``predictor`` (``"probe"``, ``"table"`` or ``"entropy"``), ``risk``, ``escalate``,
                ``threads``, ``share_weights``, ``disable_prepacking``, ``mmap_weights``, ``verify``,
                ``max_group``, ``call_cost``.

        Raises:
            ArtifactError: a file of the export is missing or corrupt.
            BackendUnavailable: the backend's library is not installed (the message names the extra).
            ConfigError: an option out of range, a predictor the export does not carry, or a probe that does
                not fit it.
            TableError: a damaged probe or table file (with ``verify=False``).
            TypeError: a keyword that is no `LoadOptions` field.

        Example:
            >>> eng = GeepEngine.load("runs/export", backend="onnxruntime")  # doctest: +SKIP
            >>> eng.predict(["a charming journey"]).predictions[0].label  # doctest: +SKIP
            >>> opts = LoadOptions(backend="onnxruntime", threads=1, predictor="probe")  # doctest: +SKIP
            >>> eng = GeepEngine.load("runs/export", options=opts)  # doctest: +SKIP
            >>> eng = GeepEngine.load("runs/export", opts)  # doctest: +SKIP
        """
        from geep_deploy.options import build_options
        from runtime.loading import build_parts

        if isinstance(export_dir, bytes) or not isinstance(export_dir, (str, os.PathLike)):
            raise ConfigError(f"runtime | export_dir must be the path of an export folder (str or Path), got "
                              f"{export_dir!r} ({type(export_dir).__name__}).")
        if isinstance(backend, LoadOptions):  # GeepEngine.load(path, LoadOptions(...)): the options, positionally
            if options is not None:
                raise ConfigError("runtime | GeepEngine.load() got LoadOptions both as its second argument and as "
                                  "options=; pass them once.")
            backend, options = None, backend
        given = {k: v for k, v in (("backend", backend), ("device", device), ("precision", precision))
                 if v is not None}
        opts = build_options(LoadOptions, options, {**given, **fields}, "GeepEngine.load()")  # checked here
        parts = build_parts(Path(export_dir), opts)
        return cls.from_parts(parts, max_group=opts.max_group, call_cost=opts.call_cost)

    @classmethod
    def from_parts(cls, parts: Any, *, max_group: int | None = None,
                   call_cost: float | None | str = "auto") -> GeepEngine:
        """An engine over what `runtime.loading.build_parts` loaded (``load`` is ``build_parts`` then this); it
        owns and closes the parts' engines. ``call_cost`` as in ``load``."""
        from runtime.dispatch import default_call_cost, parse_call_cost

        cost = parse_call_cost(call_cost)
        cost = default_call_cost(parts.info.get("device", "cpu")) if cost == "auto" else cost
        ready = EngineParts(parts.encoder, parts.predictor, parts.engines, parts.label_names, probe=parts.probe,
                            info=parts.info, owned=parts.owned, manifest=parts.bundle.manifest,
                            entropy=getattr(parts, "entropy", None), segments=getattr(parts, "segments", None))
        return cls(ready, max_group=max_group, call_cost=cost)

    # -- lifetime -------------------------------------------------------------------------------------------
    def close(self) -> None:
        for e in self.engines.values():
            e.close()
        with self._seg_lock:
            self._closed = True
            seg, self._seg = self._seg, None
        if seg is not None:  # before the owned objects: a TensorRT scratch outlives its engines
            seg.close()
        for o in self._owned:
            close = getattr(o, "close", None)
            if close:
                close()
        self._owned.clear()

    def __enter__(self) -> GeepEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EngineView(_Classifier):
    """A `GeepEngine` seen through another predictor, other probe knobs or the entropy exit
    (`GeepEngine.with_predictor`, `GeepEngine.with_probe`, `GeepEngine.with_entropy`): it borrows the owner's
    engines (segment engines included), so it has no ``close`` and is no context manager. The owner closes them;
    a view used after that fails as the owner would.
    """

    def __init__(self, owner: GeepEngine, predictor: Any, probe: ProbeDispatch | None, info: dict[str, Any],
                 entropy: EntropyExit | None = None) -> None:
        parts = dataclasses.replace(owner._parts, engines=owner.engines, predictor=predictor, probe=probe, info=info,
                                    owned=(), entropy=entropy, segments=None)  # borrowed: the owner closes them
        super().__init__(parts, max_group=owner.max_group, call_cost=owner.call_cost)
        self.owner = owner

