"""`LoadOptions`: everything ``GeepEngine.load`` takes besides the export folder, validated in one place.

Build it once (the CLI, the service and Ray do) and pass it on: ``GeepEngine.load(export_dir, options=opts)``;
``GeepEngine.load(export_dir, "onnxruntime", threads=1)`` builds one from the keywords.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from geep_deploy.errors import ConfigError
from geep_deploy.limits import check_count
from geep_deploy.names import AUTO, ENTROPY, PREDICTOR_KINDS, PROBE
from geep_deploy.options import KEEP, Keep

CallCost = float | Literal["auto"] | None


@dataclass(frozen=True)
class LoadOptions:
    """How to load an export.

    Args:
        backend: ``"onnxruntime"``, ``"torch"``, ``"tensorrt"`` or ``"auto"`` (TensorRT on CUDA when its plans
            and library are there, else ONNX Runtime, else torch).
        device: ``"cpu"`` or ``"cuda"``.
        precision: ``"fp32"``, ``"tf32"`` (torch), ``"fp16"``, ``"bf16"`` or ``"int8"`` (what the export has).
        depths: depths to load. Defaults to every exported depth.
        fixed_depth: send every row to this depth instead of predicting (``static:k``; also what an export
            without an exit table needs).
        predictor: the predictor kind, ``"probe"`` (the layer-1 probe dispatch), ``"table"`` (the token exit
            table) or ``"entropy"`` (FastBERT's entropy exit over the export's own heads, at the threshold the
            export records; `runtime.layerwise`) (`geep_deploy.names.PREDICTOR_KINDS`). Defaults to what the
            export records.
        risk: the probe's risk level (lower = deeper, safer). None keeps the stored one.
        escalate: the probe's escalation threshold (normalised entropy at the exit); None turns escalation off,
            `KEEP` (the default) keeps the stored one.
        threads: intra-op CPU threads. Defaults to the backend's choice.
        share_weights: ONNX Runtime only; one copy of the weights and one arena for all depths.
        disable_prepacking: ONNX Runtime only; no per-session packed weight copies (slower at small batches).
        mmap_weights: ONNX Runtime with ``share_weights``; map the weights file read-only instead of copying.
        verify: check the artifacts' checksums on load.
        max_group: rows per engine call (`geep_deploy.names`: rows per call); ``predict(batch_size=)``
            overrides it per call. Defaults to 64.
        call_cost: fixed cost of one engine call in padded tokens; a depth group is cut into calls that minimise
            padded tokens plus this (`runtime.dispatch.length_cuts`). ``"auto"``: the device's measured default;
            None (or ``"off"``): fixed ``max_group`` chunks.

    Raises:
        ConfigError: a count, knob, predictor kind or call cost out of range, or options that exclude each other.
    """

    backend: str = AUTO
    device: str = "cpu"
    precision: str = "fp32"
    depths: Sequence[int] | None = None
    fixed_depth: int | None = None
    predictor: str | None = None
    risk: float | None = None
    escalate: float | None | Keep = KEEP
    threads: int | None = None
    share_weights: bool = True
    disable_prepacking: bool = False
    mmap_weights: bool = True
    verify: bool = True
    max_group: int | None = None
    call_cost: CallCost | str = AUTO

    def __post_init__(self) -> None:
        from runtime.dispatch import parse_call_cost
        from runtime.probe import check_knobs

        check_count("runtime | threads", self.threads, allow_none=True)
        check_count("runtime | max_group", self.max_group, allow_none=True)  # 0 is not "the default"
        if self.predictor is not None and self.predictor not in PREDICTOR_KINDS:
            raise ConfigError(f"runtime | predictor must be one of {list(PREDICTOR_KINDS)} (the predictor kind), "
                              f"got {self.predictor!r}.")
        if self.fixed_depth is not None and self.predictor in (PROBE, ENTROPY):
            raise ConfigError("runtime | fixed_depth runs every row at one depth; it cannot go with "
                              f"predictor={self.predictor!r}. Drop one of them.")
        if not isinstance(self.escalate, Keep) and isinstance(self.escalate, str):
            raise ConfigError(f"runtime | escalate must be a number in [0, 1], None (off) or KEEP (the stored "
                              f"value), got {self.escalate!r}.")
        if self.risk is not None or not isinstance(self.escalate, Keep):
            check_knobs(0.5 if self.risk is None else self.risk,
                        None if isinstance(self.escalate, Keep) else self.escalate)
        object.__setattr__(self, "call_cost", parse_call_cost(self.call_cost))

    @property
    def knobs_given(self) -> list[str]:
        """The probe knobs this load sets (``risk``, ``escalate``): they apply to the probe dispatch only."""
        return [n for n, given in (("risk", self.risk is not None), ("escalate", not isinstance(self.escalate, Keep)))
                if given]
