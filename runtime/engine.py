"""`GeepEngine`: load an export directory once, then classify texts with exit-sorted dispatch.

Per call: tokenize; predict each row's exit depth from its tokens (the exit table, on the GPU for GPU backends,
its NumPy twin otherwise); sort rows by (depth, length) with `plan_groups`; run each group on the engine of its
depth, padded only to the group's own longest row; put the results back in input order with `restore_order`.

Thread safety: one `GeepEngine` may serve several threads. ONNX Runtime sessions are safe for concurrent ``run``;
torch modules in inference mode hold no per-call state (each CUDA-graph engine locks its static buffers); the
TensorRT engines share one scratch block and serialise on its lock. The exit predictor is read-only after load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BaseEngine
from geep_deploy.encoding import Encoded, TextEncoder, pad_batch
from geep_deploy.errors import ConfigError
from geep_deploy.exits import softmax
from runtime.predictor import FixedDepth  # noqa: F401 - re-exported: `from runtime.engine import FixedDepth`
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


class GeepEngine:
    """Tokenizer + exit predictor + one engine per depth, behind ``predict(texts)``.

    Build it with `GeepEngine.load` from an export directory; the constructor takes ready parts (tests and
    custom pipelines).

    Args:
        encoder: tokenizer with truncation (`TextEncoder`).
        predictor: anything with ``predict(ids: list[np.ndarray]) -> depths`` and ``num_layers``.
        engines: loaded depth engines by depth; depths without one are raised to the next depth that has one.
        label_names: class names, index = label id.
        max_group: split a depth group into chunks of at most this many rows. Defaults to 64 (a ``predict``
            call's ``batch_size`` overrides it).
    """

    def __init__(
        self,
        encoder: TextEncoder,
        predictor: Any,
        engines: dict[int, BaseEngine],
        label_names: Sequence[str],
        *,
        max_group: int | None = None,
        info: dict[str, Any] | None = None,
        owned: Sequence[Any] = (),
    ) -> None:
        if not engines:
            raise ConfigError("runtime | GeepEngine needs at least one depth engine.")
        self.encoder, self.predictor, self.engines = encoder, predictor, dict(sorted(engines.items()))
        self.label_names, self.max_group = list(label_names), max_group
        self.num_layers = int(getattr(predictor, "num_layers", max(self.engines)))
        self.info = dict(info or {})
        self._owned = list(owned)
        self.parts: Any = None  # what `load` built (bundle, shared weights), for the baselines' segment engines
        avail = np.array(sorted(self.engines))
        # depth d -> the smallest loaded depth >= d (never a shallower, less accurate one)
        self._depth_map = np.array([avail[min(np.searchsorted(avail, d), len(avail) - 1)]
                                    for d in range(self.num_layers + 1)], dtype=np.int64)

    # -- construction from an export ------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        export_dir: str | Path,
        backend: str = "auto",
        device: str = "cpu",
        precision: str = "fp32",
        *,
        depths: Sequence[int] | None = None,
        fixed_depth: int | None = None,
        threads: int | None = None,
        share_weights: bool = True,
        disable_prepacking: bool = False,
        mmap_weights: bool = True,
        max_group: int | None = None,
        verify: bool = True,
    ) -> GeepEngine:
        """Load an export directory written by ``geep-deploy export``.

        Args:
            export_dir: the export directory (``manifest.json`` inside).
            backend: ``"onnxruntime"``, ``"torch"``, ``"tensorrt"`` or ``"auto"`` (TensorRT on CUDA when its
                plans and library are there, else ONNX Runtime, else torch).
            device: ``"cpu"`` or ``"cuda"``.
            precision: ``"fp32"``, ``"tf32"`` (torch), ``"fp16"``, ``"bf16"`` or ``"int8"`` (what the export has).
            depths: depths to load. Defaults to every exported depth.
            fixed_depth: send every row to this depth instead of predicting (``static:k``; also what an export
                without an exit table needs).
            threads: intra-op CPU threads. Defaults to the backend's choice.
            share_weights: ONNX Runtime only; one copy of the weights and one arena for all depths.
            disable_prepacking: ONNX Runtime only; no per-session packed weight copies (slower at small batches).
            mmap_weights: ONNX Runtime with ``share_weights``; map the weights file read-only instead of copying.
            max_group: cap on rows per engine call. Defaults to 64.
            verify: check the artifacts' checksums on load.

        Raises:
            ArtifactError: a file of the export is missing or corrupt.
            BackendUnavailable: the backend's library is not installed (the message names the extra).

        Example:
            >>> eng = GeepEngine.load("runs/export", backend="onnxruntime")  # doctest: +SKIP
            >>> eng.predict(["a charming journey"]).predictions[0].label  # doctest: +SKIP
        """
        from runtime.loading import build_parts

        parts = build_parts(Path(export_dir), backend, device, precision, depths=depths, fixed_depth=fixed_depth,
                            threads=threads, share_weights=share_weights, verify=verify,
                            disable_prepacking=disable_prepacking, mmap_weights=mmap_weights)
        eng = cls(parts.encoder, parts.predictor, parts.engines, parts.label_names, max_group=max_group,
                  info=parts.info, owned=parts.owned)
        eng.parts = parts
        return eng

    def with_predictor(self, predictor: Any) -> GeepEngine:
        """A view sharing this engine's depth engines but predicting exits with ``predictor``.

        Example: ``eng.with_predictor(eng.predictor.with_params(quantile=0.5, margin=1))`` trades accuracy for
        speed without reloading. Close only the original engine.
        """
        view = GeepEngine(self.encoder, predictor, self.engines, self.label_names, max_group=self.max_group,
                          info={**self.info, "predictor_params": (getattr(predictor, "quantile", None),
                                                                  getattr(predictor, "margin", None))})
        view.parts = self.parts
        return view

    # -- inference ------------------------------------------------------------------------------------------
    def predict(
        self,
        texts: Sequence[str],
        texts_b: Sequence[str] | None = None,
        batch_size: int | None = None,
        depths: Sequence[int] | np.ndarray | None = None,
    ) -> PredictResult:
        """Classify ``texts`` (or pairs with ``texts_b``).

        Rows are grouped by predicted depth across the whole call (a group never exceeds ``batch_size`` rows),
        so a caller that collects requests gets the largest dense groups.

        Args:
            texts: first texts; non-empty strings. Longer inputs are truncated to the export's max length.
            texts_b: second texts of pairs, same length as ``texts``.
            batch_size: most rows per engine call. Defaults to ``max_group`` or 64.
            depths: run each row at this depth instead of the predicted one (1..L).

        Raises:
            DataError: empty list, empty or non-string text, or pair sides of different lengths.
        """
        times = StageTimes()
        with times.stage("total"):
            with times.stage("tokenize"):
                enc = self.encoder.encode(texts, texts_b)
            logits, used = self.run_encoded(enc, depths=depths, batch_size=batch_size, times=times)
        times.calls, times.rows = 1, len(enc)
        return PredictResult(logits, used, self.label_names, times)

    def predict_depths(self, enc: Encoded) -> np.ndarray:
        """Exit depths of tokenized rows, mapped onto the loaded depths."""
        d = np.asarray(self.predictor.predict(enc.ids), dtype=np.int64)
        return self._depth_map[np.clip(d, 1, self.num_layers)]

    def run_encoded(
        self,
        enc: Encoded,
        depths: Sequence[int] | np.ndarray | None = None,
        batch_size: int | None = None,
        times: StageTimes | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Dispatch tokenized rows; returns (logits (N, C) in input order, depth used per row)."""
        from runtime.dispatch import plan_groups, restore_order

        times = times if times is not None else StageTimes()
        with times.stage("predict_exits"):
            if depths is None:
                d = self.predict_depths(enc)
            else:
                d = np.asarray(depths, dtype=np.int64)
                if d.shape != (len(enc),) or d.min() < 1 or d.max() > self.num_layers:
                    raise ConfigError(f"runtime | depths must be {len(enc)} ints in 1..{self.num_layers}.")
                d = self._depth_map[d]
        cap = batch_size or self.max_group or 64
        with times.stage("model"):
            groups = plan_groups(d, enc.lengths, max_group=cap)
            outs = [self._run_group(enc.take(g.indices), g.depth) for g in groups]
            logits = restore_order(groups, outs)
        return logits, d

    def _run_group(self, sub: Encoded, depth: int) -> np.ndarray:
        feed = pad_batch(sub, pad_id=self.encoder.pad_id)
        return self.engines[int(depth)].infer(feed, check_inputs=False)["logits"]

    def run_depth(self, enc: Encoded, depth: int) -> np.ndarray:
        """All rows at one depth as one batch padded to its longest row (``full`` and ``static:k``)."""
        return self._run_group(enc, int(self._depth_map[depth]))

    # -- lifetime -------------------------------------------------------------------------------------------
    def close(self) -> None:
        for e in self.engines.values():
            e.close()
        for o in self._owned:
            close = getattr(o, "close", None)
            if close:
                close()
        self._owned.clear()

    def __enter__(self) -> GeepEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        e = next(iter(self.engines.values()))
        return (f"<GeepEngine {e.backend} {e.device} {e.precision} depths={list(self.engines)} "
                f"labels={self.label_names}>")
