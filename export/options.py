"""The compiler's options objects: `ExportOptions` (``export_checkpoint``) and `CalibrationOptions`
(``calibrate_checkpoint``, ``calibrate_probe`` and their ``*_from_logits`` parts), each validated once, in its
``__post_init__``, and passed on whole.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from export.probe_fit import RISK_GRID
from export.spec import EXPORTERS, parse_list
from geep_deploy.errors import ConfigError
from geep_deploy.exits import EXIT_RULES, QUANTILE_GRID, SPEED_GRID
from geep_deploy.limits import check_count
from geep_deploy.names import EXIT_MODES, EXPORT_FORMATS, EXPORT_PRECISIONS, ONNX, STUDENT, check_choice

DEFAULT_RULE = "consistency"
DEFAULT_ENTROPY_TAU = 0.3
DEFAULT_QUANTILES = QUANTILE_GRID
DEFAULT_CONFIDENCE = 0.9  # --max-disagree's default confidence 1 - delta
PROBE_RISKS = (0.0, *RISK_GRID)  # risk 0: P(exit > k) <= 0 never holds, so every row runs to depth L


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how (everything ``export_checkpoint`` takes besides the checkpoint and the folder).

    Args:
        exit_table: an exit-table file to copy (checked to load with a matching ``num_layers``), or a callable
            returning one.
        calib_data: a data directory (``train.tsv`` calibrates, ``dev.tsv`` tunes) to build the table from.
        probe: a layer-1 probe (a JSON path from ``geep-deploy calibrate`` or a ``runtime.probe.ProbeModel``) to
            copy in; the export then dispatches by it by default.
        entropy: an entropy-exit threshold (the JSON ``geep-deploy calibrate --predictor entropy`` writes, or a
            ``runtime.layerwise.EntropyExit``) to record in the manifest; the export then dispatches by FastBERT's
            entropy exit over its own heads by default, which runs the segment graphs (``segments``).
        depths: ``"all"``, ``"1,3,6"`` or a list. Defaults to every depth (only L for method ``full``).
        precisions: some of fp32, fp16, bf16, int8, or a comma list (fp32 is always included).
        formats: artifact formats to build, some of ``onnx``, ``tensorrt`` (plans), or a comma list
            (`geep_deploy.names.EXPORT_FORMATS`). Defaults to onnx.
        max_batch: the largest batch an engine accepts (TensorRT profiles, CUDA-graph buckets). Defaults to 128.
        max_len: longest sequence. Defaults to the checkpoint's max_len.
        exporter: ``torchscript`` (fast) or ``dynamo``.
        segments: export ``embed``/``layer{k}`` graphs (the entropy exit's, and the bench's FastBERT/PABEE). Defaults
            to True except for method ``full``.
        continuations: export the probe dispatch's ``prefix``/``cont{d}`` graphs. Defaults to True exactly when
            ``probe`` is given.
        exit_mode: how depth k < L exits, ``"student"`` or ``"skip"``. Defaults to the checkpoint's.
        force: replace an existing export folder. allow_mismatch: record validation failures instead of raising.
        progress: show a progress bar.

    Raises:
        ConfigError: an unknown precision, format, exporter or exit mode, a bad ``max_batch``, or options that
            exclude each other.
    """

    exit_table: Any = None
    calib_data: str | Path | Any = None
    probe: Any = None
    entropy: Any = None
    depths: str | Sequence[int] | None = None
    precisions: Sequence[str] | str = ("fp32",)
    formats: Sequence[str] | str = (ONNX,)
    max_batch: int = 128
    max_len: int | None = None
    exporter: str = "torchscript"
    segments: bool | None = None
    continuations: bool | None = None
    exit_mode: str | None = None
    force: bool = False
    allow_mismatch: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        precisions = parse_list(self.precisions, EXPORT_PRECISIONS, "precision")
        object.__setattr__(self, "precisions", tuple(dict.fromkeys(("fp32", *precisions))))
        object.__setattr__(self, "formats", parse_list(self.formats, EXPORT_FORMATS, "format") or (ONNX,))
        check_count("export | --max-batch", self.max_batch)
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"export | exporter {self.exporter!r} is unknown. Expected one of {EXPORTERS}.")
        if self.exit_mode is not None:
            check_choice("exit mode", self.exit_mode, EXIT_MODES)
        if self.probe is not None and self.continuations is False:
            raise ConfigError("export | the probe dispatch runs the continuation graphs, so continuations=False "
                              "and a probe exclude each other; drop one.")
        if self.entropy is not None and self.segments is False:
            raise ConfigError("export | the entropy exit runs the segment graphs (embed, layer1..L) layer by layer, "
                              "so --no-segments (segments=False) and --entropy exclude each other; drop one.")
        if self.entropy is not None and self.probe is not None:
            raise ConfigError("export | an export has one default dispatch: give --probe or --entropy, not both "
                              "(any export with segment graphs still serves the entropy exit through "
                              "GeepEngine.with_entropy).")

    @classmethod
    def from_fields(cls, options: ExportOptions | None, fields: Mapping[str, Any], where: str) -> ExportOptions:
        """``options`` with ``fields`` replaced; ``backends=`` (the old name of ``formats``) still works and warns."""
        from geep_deploy.options import build_options

        fields = dict(fields)
        if "backends" in fields:
            warnings.warn(f"{where}: backends= is now formats= (onnx, tensorrt are artifact formats; a backend runs "
                          "them); backends= will be removed.", DeprecationWarning, stacklevel=3)
            fields.setdefault("formats", fields.pop("backends"))
            fields.pop("backends", None)
        return build_options(cls, options, fields, where)


@dataclass(frozen=True)
class CalibrationOptions:
    """How to calibrate an exit predictor: the exit rule, the budget that picks the knobs, and the search grids.

    Args:
        rule: ``consistency`` (default) or ``entropy``.
        tau: entropy threshold. Defaults to 0.3 for ``entropy``; ignored by ``consistency``.
        max_drop: accuracy budget in points below depth L's dev accuracy (used unless ``target_speedup`` or
            ``max_disagree``).
        target_speedup: FLOPs speed-up to reach; then the most accurate such setting is chosen.
        max_disagree: instead: the fastest knob whose disagreement with depth L is certified <= this share of rows
            at ``confidence`` on the dev rows (``export.consistency``; no gold labels used).
        confidence: 1 - delta of that guarantee. Defaults to 0.9.
        quantiles, margins: the table's grids of q and m. Defaults to ``DEFAULT_QUANTILES`` and 0..min(2, L-1).
        weighting, orders, load_factor: the table's key weighting, n-gram orders (default (1, 2)) and load.
        escalations: the probe's escalation thresholds to try (None = off). Defaults to off only.
        uses_table: give the probe the exit table's statistics as features. Defaults to False.
        exit_mode: the exits the export will answer from (``"student"`` or ``"skip"``).
        risks: the probe's risk grid. Defaults to ``PROBE_RISKS`` (0 included: every row at depth L).
        taus: the entropy exit's threshold grid (normalised entropy). Defaults to ``SPEED_GRID`` (0 included: every
            row at depth L).

    Raises:
        ConfigError: an unknown rule or exit mode, or a budget out of range.
    """

    rule: str = DEFAULT_RULE
    tau: float | None = None
    max_drop: float = 0.5
    target_speedup: float | None = None
    max_disagree: float | None = None
    confidence: float = DEFAULT_CONFIDENCE
    quantiles: tuple[float, ...] | None = None
    margins: tuple[int, ...] | None = None
    weighting: str = "log"
    orders: tuple[int, ...] | None = None
    load_factor: float = 0.5
    escalations: Sequence[float | None] = (None,)
    uses_table: bool = False
    exit_mode: str = STUDENT
    risks: Sequence[float] = PROBE_RISKS
    taus: Sequence[float] = SPEED_GRID

    def __post_init__(self) -> None:
        if self.rule not in EXIT_RULES:
            raise ConfigError(f"calibrate | unknown rule {self.rule!r}. Expected one of {EXIT_RULES}.")
        if self.rule == "entropy" and self.tau is None:
            object.__setattr__(self, "tau", DEFAULT_ENTROPY_TAU)
        if self.target_speedup is not None and self.target_speedup < 1.0:
            raise ConfigError(f"calibrate | target speed-up must be >= 1.0, got {self.target_speedup}.")
        if self.max_drop < 0:
            raise ConfigError(f"calibrate | max_drop must be >= 0 points, got {self.max_drop}.")
        check_choice("exit mode", self.exit_mode, EXIT_MODES)
        object.__setattr__(self, "taus", tuple(float(t) for t in self.taus))
        if not self.taus or any(not 0.0 <= t <= 1.0 for t in self.taus):
            raise ConfigError(f"calibrate | the entropy exit's thresholds must lie in [0, 1], got {self.taus}.")

    @property
    def budget_mode(self) -> str:
        """What chooses the knobs: ``max_disagree`` (certified consistency), ``target_speedup`` or ``max_drop``."""
        if self.max_disagree is not None:
            return "max_disagree"
        return "target_speedup" if self.target_speedup is not None else "max_drop"
