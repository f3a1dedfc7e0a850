"""The layer-1 probe: each row's exit depth from what embeddings + layer 1 already know.

The token table sees only tokens, so it cannot tell which rows the *model* finds hard (ROC AUC 0.5-0.7 for "needs
more than depth 1" in docs/results.md); depth 1's exit head can (0.77-0.86). The probe dispatch runs embeddings
and layer 1 for the whole batch (dense, length-sorted), then predicts every row's depth from cheap features:

- ``entropy``, ``margin``, ``max_prob``: depth 1's normalised entropy, 1 - (top-1 - top-2 probability), and
  top-1 probability;
- ``table_depth``, ``table_deep``: the token table's expected depth and its P(depth > 1) (when a table is
  present; otherwise the columns are 0 and their weights are 0);
- ``log_length``: log of the real token count.

Model: ordinal, one logistic regression per k = 1..L-1 for P(exit > k) on standardised features. A row's depth at
risk level ``risk`` is the smallest k with P(exit > k) <= risk (depth L when none): one knob, lower = safer.
Rows at depth 1 answer from the layer-1 head they already have; the rest continue from their cached layer-1
states. Escalation (optional): a row whose exit head at its depth k < L has normalised entropy above
``escalate`` continues to depth L.

``exit_mode`` says which exits the probe was fitted for: ``"student"`` (depth k exits through student head k)
or ``"skip"`` (GEEP's shared exit path: depth k < L runs layers 1..k, then layer L and the teacher, one layer
more). The features always come from depth 1's student head, which the prefix graph runs either way; with the
shared path even depth-1 rows continue (layer L and the teacher on their layer-1 states).

Pure NumPy (the same arithmetic evaluates on CuPy arrays); fitted by ``export.probe_fit``, stored as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.errors import ConfigError, TableError
from geep_deploy.exits import normalized_entropy, softmax
from geep_deploy.names import EXIT_MODES, SKIP, STUDENT
from geep_deploy.options import KEEP, Keep

FEATURES = ("entropy", "margin", "max_prob", "table_depth", "table_deep", "log_length")
PROBE_FORMAT = "geep-probe"
PROBE_VERSION = 1
MAX_PROBE_BYTES = 16 << 20  # a probe is a few KB (its calibration figures ride along)


def depths_at_risk(probabilities: np.ndarray, risk: float, num_layers: int) -> np.ndarray:
    """(B,) int64: the smallest k with P(exit > k) <= risk, else L (``probabilities`` is (B, L-1))."""
    below = np.asarray(probabilities) <= risk
    return np.where(below.any(axis=1), below.argmax(axis=1) + 1, num_layers).astype(np.int64)


def escalation_mask(exit_logits: np.ndarray, depths: np.ndarray, threshold: float | None,
                    num_layers: int) -> np.ndarray:
    """(B,) bool: rows below depth L whose exit head's normalised entropy is above ``threshold`` (None: none)."""
    d = np.asarray(depths)
    if threshold is None or d.size == 0:
        return np.zeros(d.shape, dtype=bool)
    return (d < num_layers) & (normalized_entropy(exit_logits) > threshold)


def probe_features(depth1_logits: np.ndarray, lengths: np.ndarray, table_mass: np.ndarray | None = None) -> np.ndarray:
    """(B, len(FEATURES)) float64 features of every row.

    Args:
        depth1_logits: (B, C) logits of the layer-1 exit head.
        lengths: (B,) real token counts.
        table_mass: (B, L) non-negative exit mass from the token table (``ExitPredictor.exit_mass``), or None.
    """
    logits = np.asarray(depth1_logits, dtype=np.float64)
    n = np.asarray(lengths, dtype=np.float64)
    if logits.ndim != 2 or n.shape != logits.shape[:1]:
        raise ConfigError(f"probe | depth-1 logits {logits.shape} and lengths {n.shape} do not match.")
    p = softmax(logits)
    top = np.sort(p, axis=-1)[:, ::-1]
    second = top[:, 1] if p.shape[1] > 1 else np.zeros(len(p))
    out = np.zeros((len(p), len(FEATURES)))
    out[:, 0] = normalized_entropy(logits)
    out[:, 1] = 1.0 - (top[:, 0] - second)
    out[:, 2] = top[:, 0]
    if table_mass is not None:
        m = np.asarray(table_mass, dtype=np.float64)
        if m.shape[0] != len(p):
            raise ConfigError(f"probe | table mass has {m.shape[0]} rows, the logits {len(p)}.")
        total = np.clip(m.sum(axis=1), 1e-12, None)
        out[:, 3] = (m * np.arange(1, m.shape[1] + 1)).sum(axis=1) / total
        out[:, 4] = 1.0 - m[:, 0] / total
    out[:, 5] = np.log(np.clip(n, 1.0, None))
    return out


@dataclass(frozen=True)
class ProbeModel:
    """Standardisation, one logistic regression per depth boundary, the risk level and the escalation threshold."""

    num_layers: int
    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    weights: np.ndarray  # (L-1, F + 1): weights, then the bias
    risk: float = 0.5
    escalate: float | None = None  # normalised-entropy threshold at the exit; None = off
    uses_table: bool = True
    features: tuple[str, ...] = FEATURES
    exit_mode: str = "student"  # the exits whose labels fitted it (``geep_deploy.names.EXIT_MODES``)
    checkpoint: str | None = None  # weights sha256 of the checkpoint it was fitted on (None: written before)

    def __post_init__(self) -> None:
        f = len(self.features)
        if self.exit_mode not in EXIT_MODES:
            raise ConfigError(f"probe | exit_mode must be one of {EXIT_MODES}, got {self.exit_mode!r}.")
        if self.num_layers < 2 or np.shape(self.weights) != (self.num_layers - 1, f + 1):
            raise ConfigError(f"probe | weights {np.shape(self.weights)} do not fit {self.num_layers} layers and "
                              f"{f} features.")
        if np.shape(self.mean) != (f,) or np.shape(self.scale) != (f,) or not (np.asarray(self.scale) > 0).all():
            raise ConfigError("probe | mean/scale must have one entry per feature, scale > 0.")
        if not all(np.isfinite(np.asarray(a, dtype=np.float64)).all() for a in (self.mean, self.scale, self.weights)):
            raise ConfigError("probe | mean, scale and weights must be finite (a NaN coefficient would send every "
                              "row to depth L).")
        check_knobs(self.risk, self.escalate)

    def with_knobs(self, risk: float | None = None, escalate: float | None | Keep = KEEP) -> ProbeModel:
        """The same probe at another risk level and/or escalation threshold: ``risk=None`` and ``escalate=KEEP``
        keep the stored value, ``escalate=None`` turns escalation off."""
        from dataclasses import replace

        esc = self.escalate if isinstance(escalate, Keep) else escalate
        if isinstance(esc, str):
            raise ConfigError(f"probe | escalate must be a number in [0, 1], None (off) or KEEP (the stored value), "
                              f"got {escalate!r}.")
        check_knobs(self.risk if risk is None else risk, esc)
        return replace(self, risk=self.risk if risk is None else float(risk), escalate=esc)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(B, L-1): P(exit > k) for k = 1..L-1."""
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        z = x @ self.weights[:, :-1].T + self.weights[:, -1]
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))

    def depths(self, features: np.ndarray, risk: float | None = None) -> np.ndarray:
        """(B,) int64 depths: the smallest k with P(exit > k) <= risk, else L."""
        return depths_at_risk(self.probabilities(features), self.risk if risk is None else risk, self.num_layers)

    def escalated(self, exit_logits: np.ndarray, depths: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """(B,) bool: rows below depth L whose exit head is too unsure (entropy above the threshold)."""
        return escalation_mask(exit_logits, depths, self.escalate if threshold is None else threshold,
                               self.num_layers)

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROBE_FORMAT, "version": PROBE_VERSION, "num_layers": self.num_layers,
                "features": list(self.features), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weights": self.weights.tolist(), "risk": self.risk, "escalate": self.escalate,
                "uses_table": self.uses_table, "exit_mode": self.exit_mode, "checkpoint": self.checkpoint}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "probe") -> ProbeModel:
        from geep_deploy.safe_io import check_format

        check_format(d, PROBE_FORMAT, PROBE_VERSION, oldest=PROBE_VERSION, version_key="version",
                     what="GEEP probe file", where=source, error=TableError)
        if not isinstance(d.get("features"), list) or tuple(d["features"]) != FEATURES:
            raise TableError(f"{source} | probe features {d.get('features')} differ from this runtime's {FEATURES}.")
        try:
            L = d["num_layers"]
            if isinstance(L, bool) or not isinstance(L, int) or L < 2:
                raise ValueError(f"num_layers must be an integer >= 2, got {L!r}")
            f = len(FEATURES)
            uses_table, exit_mode = d["uses_table"], d.get("exit_mode", "student")  # older probes: students
            if not isinstance(uses_table, bool):
                raise ValueError(f"uses_table must be true or false, got {uses_table!r}")
            if exit_mode not in EXIT_MODES:
                raise ValueError(f"exit_mode must be one of {list(EXIT_MODES)}, got {exit_mode!r}")
            check_knobs(d["risk"], d["escalate"])
            return cls(num_layers=L, mean=_finite(d["mean"], (f,), "mean"), scale=_finite(d["scale"], (f,), "scale"),
                       weights=_finite(d["weights"], (L - 1, f + 1), "weights"), risk=float(d["risk"]),
                       escalate=None if d["escalate"] is None else float(d["escalate"]), uses_table=uses_table,
                       exit_mode=exit_mode, checkpoint=parse_identity(d.get("checkpoint")))
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise TableError(f"{source} | damaged probe file: {type(e).__name__}: {e}. Re-run `geep-deploy "
                             "calibrate --predictor probe`.") from None

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the probe as JSON, atomically; ``extra`` (e.g. ``{"calibration": figures}``) rides along and is
        ignored by ``load``."""
        from geep_deploy.atomic import atomic_write_text

        atomic_write_text(Path(path), json.dumps({**(extra or {}), **self.to_dict()}, indent=1) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> ProbeModel:
        from geep_deploy.safe_io import read_json

        p = Path(path)
        try:
            d = read_json(p, max_bytes=MAX_PROBE_BYTES)
        except FileNotFoundError:
            raise TableError(f"probe | {p} does not exist.") from None
        except IsADirectoryError:
            raise TableError(f"probe | {p} is a directory; give the probe JSON that `geep-deploy calibrate "
                             "--predictor probe` wrote.") from None
        except (OSError, ValueError) as e:  # not UTF-8/JSON, too deep or too large, a FIFO or device
            raise TableError(f"probe | {p} is not JSON a probe can be read from: {e}.") from None
        return cls.from_dict(d, str(p))


def _finite(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``value`` as a float64 array of ``shape`` whose every entry is a real, finite JSON number (no strings,
    booleans, NaN or infinity: a NaN coefficient would silently send every row to depth L)."""
    arr = np.asarray(value, dtype=object)
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in arr.ravel()):
        raise ValueError(f"{name} must hold numbers only")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} holds NaN or infinity")
    return out


def parse_identity(value: Any) -> str | None:
    """A recorded checkpoint identity: None (probes written before the field) or a sha256 hex string."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"checkpoint must be a sha256 hex string, got {value!r}")
    return value


def probe_cost(depths: np.ndarray, escalated: np.ndarray, num_layers: int,
               exit_mode: str = STUDENT) -> tuple[np.ndarray, np.ndarray]:
    """(layers, exit heads) each row runs under the probe dispatch, for ``geep_deploy.flops``.

    Every row runs layer 1 and head 1; a row at depth d > 1 adds layers 2..d and head d; an escalated row adds
    layers 2..L and head L on top (continued from its cached layer-1 states). With the shared exit path
    (``exit_mode="skip"``) every row below L also runs layer L and the teacher, depth-1 rows included. The
    runtime reports these, and ``export.probe_fit.dispatch_figures`` prices its curve with them.
    """
    d = np.asarray(depths, dtype=np.int64)
    esc = np.asarray(escalated, dtype=bool)
    skip = exit_mode == SKIP
    exit_layer = (d < num_layers) & skip
    return d + exit_layer + np.where(esc, num_layers - 1, 0), 1 + ((d > 1) | skip) + esc


def check_knobs(risk: Any, escalate: Any) -> None:
    """Real numbers in [0, 1] (escalate may be None, off): ``True``, ``"0.3"``, ``[0.3]`` and NaN are refused,
    never coerced (``float(True)`` is 1.0 and would send every row to depth 1)."""
    from geep_deploy.limits import Range, check_number

    check_number("probe | risk", risk, Range(0, 1))
    if escalate is not None:
        check_number("probe | escalation threshold (escalate; None turns it off)", escalate, Range(0, 1))


def check_probe_fits(model: ProbeModel, num_layers: int, *, exit_mode: str | None, has_table: bool,
                     where: str, owner: str) -> None:
    """The one check of a probe against what will run it (export, load, dispatch): its layer count, its exit path
    and, when it reads table statistics, an exit table.

    Args:
        model: the probe. num_layers: the model's L. exit_mode: the exits the model answers from (None: not
            checked). has_table: whether an exit table goes with it.
        where: the message's subject (``"export | probe p.json"``). owner: what it must fit (``"the export"``).

    Raises:
        ConfigError: naming what differs and how to get a probe that fits (`geep-deploy calibrate`).
    """
    fix = "Re-run `geep-deploy calibrate --predictor probe` on this checkpoint"
    if model.num_layers != num_layers:
        raise ConfigError(f"{where} was fitted for {model.num_layers} layers; {owner}'s model has {num_layers}. "
                          f"{fix}.")
    if model.uses_table and not has_table:
        raise ConfigError(f"{where} reads exit-table statistics, but {owner} has no exit table. Export with "
                          "--exit-table (the table calibrate wrote next to the probe), or refit the probe without "
                          "the table (calibrate without --probe-with-table).")
    if exit_mode is not None and model.exit_mode != exit_mode:
        raise ConfigError(f"{where} was fitted for the {model.exit_mode!r} exits, but {owner} exits through "
                          f"{exit_mode!r}. {fix} with --exit-mode {exit_mode}, or export with --exit-mode "
                          f"{model.exit_mode}.")
