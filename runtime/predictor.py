"""Exit prediction: a sample's exit layer from its tokens, before the model runs.

For each input, every key (n-gram, see ``runtime/keys.py``) found in the table contributes its normalised
exit histogram with weight ``w(count)``; an unseen key contributes the global prior (the calibration samples'
exit distribution) with weight ``w(1)``, as if seen once; each input also gets the prior once with weight ``w(1)``
(so an input without keys predicts from the prior). ``w`` is the ``weighting``: ``log`` (``log1p(count)``,
default: frequent keys count more, but stop words seen thousands of times do not drown the rare, telling ones),
``count`` (raw counts: the sum of histograms) or ``uniform``. The depth is the smallest k whose cumulative mass
reaches ``quantile`` of the total, plus ``margin``, clamped to 1..L.

Vectorised across the batch: the per-slot weighted histograms are precomputed once per table as a
``(capacity + 2, L)`` matrix (row ``capacity``: unseen key, row ``capacity + 1``: no key), so a batch costs one
key hash, one table lookup, one gather and one sum. CuPy inputs run the same steps on the device.

The mass is summed in fixed point (int64, a power-of-two scale chosen per table so no sum can overflow), not in
float64: integer sums do not depend on the order of the terms, so CuPy's parallel reduction and NumPy's
pairwise one give bit-identical masses, and a near-tie at the quantile cannot move a depth by one between the
twins. The quantile threshold is ``ceil(q * total)`` in float64 (one correctly rounded multiply, the same on
both), clamped to the total.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.errors import ConfigError, TableError
from runtime.exit_table import ExitHashTable, load_table, save_table
from runtime.kernels import is_cupy_array
from runtime.keys import EMPTY_KEY, pad_rows, padded_keys
from runtime.probe import parse_identity

WEIGHTINGS = ("log", "count", "uniform")
_EMPTY = np.uint64(EMPTY_KEY)


def _weight(counts: np.ndarray, weighting: str) -> np.ndarray:
    if weighting == "log":
        return np.log1p(counts)
    if weighting == "count":
        return counts.astype(np.float64)
    return (counts > 0).astype(np.float64)


_SUM_BITS = 20  # fixed point leaves room for sums of 2**20 histogram rows per input (far above 512 x 3 keys)


def fixed_point(w: np.ndarray) -> np.ndarray:
    """float64 weights -> int64 ``rint(w * 2**shift)``, with ``shift`` as large as keeps any sum of 2**20 rows
    (each at most ``w.max()``) below 2**62; at most 40 fractional bits."""
    top = float(w.max()) if w.size else 1.0
    int_bits = max(0, math.frexp(max(top, 1.0))[1])  # 2**int_bits > top
    shift = min(40, 62 - _SUM_BITS - int_bits)
    return np.rint(w * 2.0**shift).astype(np.int64)


def _xp(a: Any) -> Any:
    if is_cupy_array(a):
        import cupy

        return cupy
    return np


def depths_from_mass(mass: Any, quantile: float, margin: int, num_layers: int) -> Any:
    """Smallest depth whose cumulative mass reaches ``quantile`` of the total, plus ``margin``, in 1..L.

    Integer (fixed-point) mass is compared exactly with ``min(ceil(q * total), total)``; float mass with
    ``q * total`` (the calibration code's float masses; not order-independent).

    Args:
        mass: (B, L) non-negative exit mass per input (NumPy or CuPy; int64 fixed point or float).
        quantile: q in [0, 1].
        margin: layers added after the quantile (may be negative).
        num_layers: L.

    Returns:
        (B,) int64 depths, same array library as ``mass``.
    """
    cdf = mass.cumsum(axis=1)
    total = cdf[:, -1:]
    if cdf.dtype.kind in "iu":
        xp = _xp(cdf)
        thr = xp.ceil(total.astype(np.float64) * float(quantile)).astype(np.int64)
        reached = cdf >= xp.minimum(thr, total)
    else:
        reached = cdf >= quantile * total
    depth = reached.argmax(axis=1) + (1 + margin)
    if margin != 0:
        # np.minimum/np.maximum are cheaper than ndarray.clip in NumPy; CuPy arrays use their own clip
        if isinstance(depth, np.ndarray):
            depth = np.minimum(depth, num_layers) if margin > 0 else np.maximum(depth, 1)
        else:
            depth = depth.clip(1, num_layers)
    return depth.astype(np.int64, copy=False)


def _checkpoint_identity(value: Any) -> str | None:
    from runtime.probe import _identity

    return _identity(value)


class ExitPredictor:
    """Predicts each input's exit depth from the exit table (the contract the runtime and export code use).

    Example:
        >>> p = ExitPredictor.load("runs/exit_table.npz")  # doctest: +SKIP
        >>> p.with_params(0.5, 1).predict([np.array([101, 2307, 3185, 102])])  # doctest: +SKIP
        array([3])
    """

    def __init__(
        self,
        table: ExitHashTable,
        special_ids: Sequence[int],
        prior: Sequence[float] | np.ndarray,
        quantile: float = 0.5,
        margin: int = 0,
        weighting: str = "log",
        calibration: dict[str, Any] | None = None,
        checkpoint: str | None = None,
    ) -> None:
        L = table.num_layers
        prior_arr = np.asarray(prior, dtype=np.float64)
        if prior_arr.shape != (L,) or (prior_arr < 0).any() or prior_arr.sum() <= 0:
            raise ConfigError(
                f"predictor | prior must be {L} non-negative numbers with a positive sum, got {prior_arr.tolist()}."
            )
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"predictor | weighting must be one of {WEIGHTINGS}, got {weighting!r}.")
        self.table, self.weighting = table, weighting
        self.special_ids = tuple(sorted(int(s) for s in special_ids))
        self.prior = prior_arr / prior_arr.sum()
        self.calibration = dict(calibration or {})
        self.checkpoint = checkpoint  # weights sha256 of the checkpoint it was calibrated on (None: not recorded)
        self.quantile, self.margin = self._check_params(quantile, margin)
        self._weighted: np.ndarray | None = None
        self._fixed: np.ndarray | None = None
        self._device: dict[str, Any] | None = None

    @property
    def num_layers(self) -> int:
        return self.table.num_layers

    def _check_params(self, quantile: float, margin: int) -> tuple[float, int]:
        L = self.num_layers
        if not 0.0 <= float(quantile) <= 1.0:
            raise ConfigError(f"predictor | quantile must be in [0, 1], got {quantile}. Try 0.5.")
        if int(margin) != margin or not -L < int(margin) < L:
            raise ConfigError(f"predictor | margin must be an integer in {1 - L}..{L - 1}, got {margin}.")
        return float(quantile), int(margin)

    def with_params(self, quantile: float, margin: int) -> ExitPredictor:
        """The same table with another quantile and margin (shares the table and its caches)."""
        q, m = self._check_params(quantile, margin)
        other = object.__new__(ExitPredictor)
        other.__dict__.update(self.__dict__)
        other.quantile, other.margin = q, m
        return other

    # -- persistence ---------------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the table with the predictor's parameters and calibration figures, atomically."""
        meta = {
            "predictor": {
                "quantile": self.quantile, "margin": self.margin, "weighting": self.weighting,
                "prior": self.prior.tolist(), "special_ids": list(self.special_ids),
            },
            "calibration": self.calibration,
            "checkpoint": self.checkpoint,
        }
        return save_table(self.table, path, meta)

    @classmethod
    def load(cls, path: str | Path) -> ExitPredictor:
        """Read a table file written by ``save`` (or ``geep-deploy calibrate``).

        Raises:
            TableError: unreadable file, or no predictor parameters in it.
        """
        table, meta = load_table(path)
        params = meta.get("predictor")
        try:
            return cls(
                table, params["special_ids"], params["prior"], quantile=params["quantile"],
                margin=params["margin"], weighting=params.get("weighting", "log"),
                calibration=meta.get("calibration", {}), checkpoint=parse_identity(meta.get("checkpoint")),
            )
        except (TypeError, KeyError, ValueError, ConfigError) as e:
            raise TableError(
                f"predictor | {path} holds a table but no valid predictor parameters ({type(e).__name__}: {e}). "
                "Re-run `geep-deploy calibrate`."
            ) from None

    # -- prediction ----------------------------------------------------------------------------------------------

    def weighted_histograms(self) -> np.ndarray:
        """(capacity + 2, L) float64: each slot's weighted normalised histogram, then unseen-key and no-key rows."""
        if self._weighted is None:
            t = self.table
            total = t.counts.sum(axis=1, dtype=np.float64)
            scale = _weight(total, self.weighting) / np.maximum(total, 1.0)
            w = np.zeros((t.capacity + 2, t.num_layers), dtype=np.float64)
            w[: t.capacity] = t.counts * scale[:, None]
            w[t.capacity] = _weight(np.ones(1), self.weighting)[0] * self.prior
            self._weighted = w
        return self._weighted

    def fixed_histograms(self) -> np.ndarray:
        """``weighted_histograms()`` in int64 fixed point (see the module docstring), computed once per table."""
        if self._fixed is None:
            self._fixed = fixed_point(self.weighted_histograms())
        return self._fixed

    def exit_mass(self, input_ids: np.ndarray, attention_mask: np.ndarray | None) -> np.ndarray:
        """(B, L) int64 fixed-point exit mass of a padded NumPy batch (before the quantile)."""
        t = self.table
        keys = padded_keys(input_ids, attention_mask, self.special_ids, t.orders, t.seed)
        b = keys.shape[0]
        flat = keys.reshape(b, -1)
        present = flat != _EMPTY
        slots = t.lookup(flat[present])
        idx = np.full(flat.shape, t.capacity + 1, dtype=np.int64)
        idx[present] = np.where(slots >= 0, slots, t.capacity)
        w = self.fixed_histograms()
        return w[idx].sum(axis=1) + w[t.capacity]

    def predict(self, ids: Sequence[np.ndarray]) -> np.ndarray:
        """Depths for unpadded rows of token ids (with [CLS]/[SEP]).

        Args:
            ids: one int array per input.

        Returns:
            (B,) int64 depths in 1..L.
        """
        if len(ids) == 0:
            return np.zeros(0, dtype=np.int64)
        if len(ids) == 1:  # batch 1: no padding, no mask (the latency-critical case)
            row = np.asarray(ids[0])
            if row.ndim == 1 and row.size and row.dtype.kind in "iu":
                return self.predict_padded(row[None], None)
        input_ids, mask = pad_rows(ids)
        return self.predict_padded(input_ids, mask)

    def predict_padded(self, input_ids: Any, attention_mask: Any) -> Any:
        """Depths for a padded (B, S) batch; NumPy in -> NumPy out, CuPy in -> CuPy out (stays on the device)."""
        if is_cupy_array(input_ids):
            return self._predict_device(input_ids, attention_mask)
        ids = np.asarray(input_ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ConfigError(f"predictor | input_ids must be a (batch, seq) integer array, got {ids.dtype}{ids.shape}.")
        if attention_mask is not None and np.shape(attention_mask) != ids.shape:
            raise ConfigError(
                f"predictor | attention_mask shape {np.shape(attention_mask)} differs from input_ids {ids.shape}."
            )
        mass = self.exit_mass(ids, attention_mask)
        return depths_from_mass(mass, self.quantile, self.margin, self.num_layers)

    def to_device(self) -> ExitPredictor:
        """Upload the table and the fixed-point histograms and compile the kernels now (not on a request)."""
        from runtime.kernels.cupy_table import CupyExitHashTable, compile_kernels, cupy

        if self._device is None:
            compile_kernels()
            self._device = {"table": CupyExitHashTable.from_host(self.table),
                            "w": cupy.asarray(self.fixed_histograms())}
        return self

    def _predict_device(self, input_ids: Any, attention_mask: Any) -> Any:
        from runtime.kernels.cupy_table import cupy, device_padded_keys

        dev, t = self.to_device()._device, self.table
        keys = device_padded_keys(input_ids, attention_mask, self.special_ids, t.orders, t.seed)
        flat = keys.reshape(keys.shape[0], -1)
        slots = dev["table"].lookup(flat.ravel()).reshape(flat.shape)
        idx = cupy.where(slots >= 0, slots, t.capacity)
        idx = cupy.where(flat == cupy.uint64(EMPTY_KEY), t.capacity + 1, idx)
        mass = dev["w"][idx].sum(axis=1) + dev["w"][t.capacity]
        return depths_from_mass(mass, self.quantile, self.margin, self.num_layers)


def build_predictor(
    rows: Sequence[np.ndarray],
    exits: np.ndarray,
    num_layers: int,
    special_ids: Sequence[int],
    *,
    orders: tuple[int, ...] | None = None,
    seed: int | None = None,
    load_factor: float = 0.5,
    weighting: str = "log",
) -> ExitPredictor:
    """Build the table from labelled rows (each row's keys get its exit layer) and wrap it in a predictor.

    Args:
        rows: unpadded token-id rows of the calibration data.
        exits: (N,) exit layer of each row, in 1..L.
        num_layers: L.
        special_ids: ids that never form keys.
        orders: n-gram orders. Defaults to (1, 2).
        seed: hash seed. Defaults to ``runtime.keys.DEFAULT_SEED``.
        load_factor: table load after the build (capacity = next_pow2(distinct keys / load_factor)).
        weighting: key weighting of the predictor.

    Returns:
        An ``ExitPredictor`` with quantile 0.5 and margin 0 (tune them with ``export.calibration``).
    """
    from runtime.keys import DEFAULT_ORDERS, DEFAULT_SEED, row_keys

    orders = DEFAULT_ORDERS if orders is None else orders
    seed = DEFAULT_SEED if seed is None else seed
    exits = np.asarray(exits, dtype=np.int64)
    if exits.shape != (len(rows),):
        raise ConfigError(f"predictor | got {len(rows)} rows but {exits.shape} exit labels.")
    keys, row = row_keys(rows, special_ids, orders, seed)
    table = ExitHashTable.for_keys(np.unique(keys).size, num_layers, load_factor=load_factor, seed=seed,
                                   orders=orders)
    table.insert(keys, exits[row])
    prior = np.bincount(exits, minlength=num_layers + 1)[1:].astype(np.float64) + 1e-3
    return ExitPredictor(table, special_ids, prior, weighting=weighting)


class FixedDepth:
    """An exit predictor that sends every row to one depth (static truncation, or no exit table)."""

    def __init__(self, depth: int, num_layers: int) -> None:
        if not 1 <= depth <= num_layers:
            raise ConfigError(f"runtime | fixed depth must be in 1..{num_layers}, got {depth}.")
        self.depth, self.num_layers = depth, num_layers

    def predict(self, ids: list[np.ndarray]) -> np.ndarray:
        return np.full(len(ids), self.depth, dtype=np.int64)
