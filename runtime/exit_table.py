"""The exit hash table: token n-gram key -> histogram of exit layers 1..L (NumPy twin and file format).

Layout (shared by this NumPy twin and the CuPy twin in ``runtime/kernels/cupy_table.py``):

- ``keys``: (capacity,) uint64, ``EMPTY_KEY = 2**64 - 1`` marks an empty slot (keys: see ``runtime/keys.py``).
- ``counts``: (capacity, L) uint32, row-major; ``counts[s, k-1]`` = samples with exit layer k that contained the
  key stored in slot s.
- capacity is a power of two (at least 8); ``for_keys(n, L, load_factor)`` picks ``next_pow2(ceil(n / lf))``,
  like cuCollections' ``static_map``. The table never grows: an insert that would leave no empty slot raises
  ``TableCapacityError`` *before* touching the table (one empty slot always remains, so every probe ends).
- Home slot ``(key * GOLDEN mod 2**64) >> (64 - log2(capacity))`` (Fibonacci hashing), then linear probing
  ``s -> (s + 1) mod capacity``.
- Insert is round-synchronous, so both twins give the same slots whatever the thread timing: in each round
  every pending key reads its current slot (a table snapshot: claims go to a separate array); its own key means
  found; another key means advance one slot; an empty slot means contend. Among the keys contending for one empty
  slot the smallest key wins (``atomicMin`` on the GPU, a sort here) and is written (``atomicCAS`` on the GPU);
  losers stay and see the winner next round. Then every (key, exit) pair adds 1 to its slot's counter
  (``atomicAdd`` on the GPU). Counts are uint32; an insert that could overflow one raises ``TableError``.
- Lookup: probe from the home slot until the key (its slot) or an empty slot (miss, slot -1). Looking up
  ``EMPTY_KEY`` is a miss; inserting it is an error.

File (``.npz``, written atomically): ``header`` is a uint8 array holding UTF-8 JSON (format tag
``geep-exit-table``, version, num_layers, seed as hex, orders, capacity, size, hash and slot scheme names, and a
free ``meta`` dict where the predictor keeps its quantile, margin, prior, special ids and calibration figures),
then ``keys`` and ``counts``. Loading checks the tag, version, shapes and dtypes, and that every stored key is
found at its own slot, and names the file in every error.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.atomic import atomic_path
from geep_deploy.errors import ConfigError, GeepInternalError, TableCapacityError, TableError
from geep_deploy.safe_io import loads_bounded
from runtime.keys import DEFAULT_ORDERS, DEFAULT_SEED, EMPTY_KEY, GOLDEN, check_orders

FORMAT = "geep-exit-table"
FORMAT_VERSION = 1
HASH_SCHEME = "splitmix64-ngram-v1"
SLOT_SCHEME = "fibonacci-linear-probing-v1"
MIN_CAPACITY = 8
MISS = -1
U32_MAX = 2**32 - 1

_EMPTY = np.uint64(EMPTY_KEY)
_GOLDEN = np.uint64(GOLDEN)


def next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def capacity_for(n: int, load_factor: float = 0.5) -> int:
    """``next_pow2(ceil(n / load_factor))``, at least ``MIN_CAPACITY``.

    Raises:
        ConfigError: load_factor outside (0, 1).
    """
    if not 0.0 < load_factor < 1.0:
        raise ConfigError(f"exit table | load_factor must be in (0, 1), got {load_factor}. Try 0.5.")
    return max(MIN_CAPACITY, next_pow2(math.ceil(max(int(n), 1) / load_factor)))


def as_keys(keys: object) -> np.ndarray:
    """Keys as a 1-D uint64 array; negative or non-integer input is a ``TableError``."""
    arr = np.asarray(keys)
    if arr.dtype == np.uint64:
        return arr.ravel()
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if arr.dtype.kind not in "iu" or (arr.dtype.kind == "i" and arr.min() < 0):
        raise TableError(f"exit table | keys must be non-negative integers (uint64), got dtype {arr.dtype}.")
    return arr.astype(np.uint64).ravel()


def as_exits(exits: object, num_layers: int, n: int) -> np.ndarray:
    arr = np.asarray(exits)
    if arr.shape != (n,) or (n and arr.dtype.kind not in "iu"):
        raise TableError(
            f"exit table | exits must be {n} integers (one per key), got shape {arr.shape} dtype {arr.dtype}."
        )
    if n and (arr.min() < 1 or arr.max() > num_layers):
        raise TableError(
            f"exit table | exit layers must be in 1..{num_layers}, got {int(arr.min())}..{int(arr.max())}."
        )
    return arr.astype(np.int64)


def check_insert(size: int, capacity: int, n_new: int, total: int, n: int) -> None:
    """Shared capacity and overflow checks: the table is left untouched when they fail."""
    if size + n_new > capacity - 1:
        raise TableCapacityError(
            f"exit table | full: {size} keys stored + {n_new} new keys > capacity {capacity} - 1 "
            "(one slot stays empty so probes end). Expected fewer keys. "
            f"Try a larger table: capacity_for({size + n_new}) = {capacity_for(size + n_new)}."
        )
    if total + n > U32_MAX:
        raise TableError(
            f"exit table | {total} + {n} counts could overflow a uint32 counter. Calibrate on fewer rows."
        )


class ExitHashTable:
    """Owning NumPy twin of the exit hash table (see the module docstring for the layout).

    Example:
        >>> t = ExitHashTable(capacity_for(3), num_layers=6)
        >>> t.insert(np.array([5, 7, 5], dtype=np.uint64), np.array([1, 6, 2]))
        >>> t.histograms(np.array([5, 9], dtype=np.uint64))[:, :2].tolist()
        [[1, 1], [0, 0]]
    """

    def __init__(
        self, capacity: int, num_layers: int, *, seed: int = DEFAULT_SEED, orders: tuple[int, ...] = DEFAULT_ORDERS
    ) -> None:
        if capacity < MIN_CAPACITY or capacity & (capacity - 1):
            raise ConfigError(
                f"exit table | capacity must be a power of two >= {MIN_CAPACITY}, got {capacity}. "
                "Try capacity_for(n_keys)."
            )
        if num_layers < 1:
            raise ConfigError(f"exit table | num_layers must be >= 1, got {num_layers}.")
        self.capacity, self.num_layers = int(capacity), int(num_layers)
        self.seed, self.orders = int(seed), check_orders(orders)
        self.shift = 64 - (self.capacity.bit_length() - 1)
        self.keys = np.full(self.capacity, _EMPTY, dtype=np.uint64)
        self.counts = np.zeros((self.capacity, self.num_layers), dtype=np.uint32)
        self.size = 0
        self.total = 0

    @classmethod
    def for_keys(cls, n: int, num_layers: int, load_factor: float = 0.5, **kw: Any) -> ExitHashTable:
        """An empty table sized for ``n`` distinct keys at ``load_factor``."""
        return cls(capacity_for(n, load_factor), num_layers, **kw)

    @property
    def load(self) -> float:
        return self.size / self.capacity

    def home(self, keys: np.ndarray) -> np.ndarray:
        """Home slot of each key (Fibonacci hashing), int64."""
        return ((keys * _GOLDEN) >> np.uint64(self.shift)).astype(np.int64)

    def lookup(self, keys: object) -> np.ndarray:
        """Slot of each key, ``MISS`` (-1) where absent. Vectorised over probe rounds, not keys.

        Args:
            keys: 1-D integer keys.

        Returns:
            int64 slots, same length as ``keys``.
        """
        k = as_keys(keys)
        tk, mask = self.keys, self.capacity - 1
        pos = self.home(k)
        cand = tk[pos]
        occ = cand != _EMPTY
        hit = (cand == k) & occ
        slots = np.where(hit, pos, MISS)
        idx = np.flatnonzero(occ & ~hit & (k != _EMPTY))  # EMPTY_KEY queries stop here: a miss
        if idx.size:
            pos, k = pos[idx], k[idx]
            for _ in range(self.capacity):
                pos = (pos + 1) & mask
                cand = tk[pos]
                hit = cand == k
                slots[idx[hit]] = pos[hit]
                keep = ~hit & (cand != _EMPTY)
                if not keep.any():
                    break
                idx, pos, k = idx[keep], pos[keep], k[keep]
        return slots

    def histograms(self, keys: object) -> np.ndarray:
        """(n, L) uint32 exit histograms of ``keys``; all zeros for absent keys."""
        slots = self.lookup(keys)
        out = np.zeros((slots.size, self.num_layers), dtype=np.uint32)
        hit = slots >= 0
        out[hit] = self.counts[slots[hit]]
        return out

    def insert(self, keys: object, exits: object) -> None:
        """Insert-or-accumulate: add one count of ``exits[i]`` to ``keys[i]``'s histogram.

        Args:
            keys: 1-D uint64 keys (duplicates accumulate).
            exits: exit layer of each key, in 1..L.

        Raises:
            TableError: a key equals ``EMPTY_KEY``, exits out of range, or a counter could overflow.
            TableCapacityError: the new keys do not fit; the table is unchanged.
        """
        k = as_keys(keys)
        e = as_exits(exits, self.num_layers, k.size)
        if k.size == 0:
            return
        if (k == _EMPTY).any():
            raise TableError(
                f"exit table | key 0x{EMPTY_KEY:016x} is the empty-slot marker and cannot be stored. "
                "Keys from runtime.keys never take this value."
            )
        uniq, inv = np.unique(k, return_inverse=True)
        slots = self.lookup(uniq)
        new = slots < 0
        check_insert(self.size, self.capacity, int(new.sum()), self.total, k.size)
        if new.any():
            slots[new] = self._place(uniq[new])
        np.add.at(self.counts, (slots[inv.ravel()], e - 1), np.uint32(1))
        self.size += int(new.sum())
        self.total += int(k.size)

    def _place(self, keys: np.ndarray) -> np.ndarray:
        """Claim slots for distinct new keys in synchronous rounds (smallest key wins a contested slot)."""
        tk, mask = self.keys, self.capacity - 1
        pos = self.home(keys)
        out = np.full(keys.size, MISS, dtype=np.int64)
        pending = np.arange(keys.size)
        for _ in range(self.capacity + keys.size + 1):
            if not pending.size:
                return out
            p = pos[pending]
            empty = tk[p] == _EMPTY
            adv = pending[~empty]
            pos[adv] = (pos[adv] + 1) & mask
            cont = pending[empty]
            if cont.size:
                order = np.lexsort((keys[cont], pos[cont]))
                cont = cont[order]
                cp = pos[cont]
                first = np.ones(cont.size, dtype=bool)
                first[1:] = cp[1:] != cp[:-1]
                win = cont[first]
                tk[pos[win]] = keys[win]
                out[win] = pos[win]
                pending = np.concatenate([adv, cont[~first]])
            else:
                pending = adv
        raise GeepInternalError("exit table | insert did not finish within capacity + n rounds (a bug).")

    def check_consistent(self, source: str = "table") -> None:
        """Every stored key must be found at its own slot; ``TableError`` naming ``source`` otherwise."""
        occupied = np.flatnonzero(self.keys != _EMPTY)
        if occupied.size >= self.capacity:
            raise TableError(f"exit table | {source}: no empty slot left; the file is corrupted.")
        found = self.lookup(self.keys[occupied])
        if not np.array_equal(found, occupied):
            bad = int(np.count_nonzero(found != occupied))
            raise TableError(
                f"exit table | {source}: {bad} stored keys are not reachable by linear probing; "
                "the file is corrupted or was written with another slot scheme."
            )


def save_table(table: ExitHashTable, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``table`` and ``meta`` (JSON-serialisable) to one ``.npz`` file, atomically.

    Args:
        table: a NumPy table (call ``to_host()`` on a CuPy one first).
        path: target file.
        meta: extra JSON data (predictor parameters, calibration figures).

    Returns:
        The path written.
    """
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hash": HASH_SCHEME,
        "slot": SLOT_SCHEME,
        "num_layers": table.num_layers,
        "seed": f"0x{table.seed:x}",
        "orders": list(table.orders),
        "capacity": table.capacity,
        "size": table.size,
        "total": table.total,
        "meta": meta or {},
    }
    blob = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    path = Path(path)
    with atomic_path(path) as tmp:
        with tmp.open("wb") as f:
            np.savez(f, header=blob, keys=table.keys, counts=table.counts)
    return path


def load_table(path: str | Path) -> tuple[ExitHashTable, dict[str, Any]]:
    """Read a table file written by ``save_table``.

    Returns:
        (table, meta).

    Raises:
        TableError: missing, truncated, corrupted, foreign or newer-version file (the message names it).
    """
    p = Path(path)
    if not p.is_file():
        raise TableError(f"exit table | {p} does not exist. Build one with `geep-deploy calibrate --out {p}`.")
    try:
        with np.load(p, allow_pickle=False) as z:
            names = set(z.files)
            if not {"header", "keys", "counts"} <= names:
                raise TableError(
                    f"exit table | {p} is not a geep-deploy exit table (arrays {sorted(names)}; "
                    "expected header, keys, counts)."
                )
            header = loads_bounded(bytes(z["header"]).decode("utf-8"))
            keys, counts = z["keys"], z["counts"]
    except TableError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, UnicodeDecodeError) as e:
        raise TableError(
            f"exit table | {p} cannot be read ({type(e).__name__}: {str(e)[:150]}). "
            "The file is truncated, corrupted or not an exit table; re-run `geep-deploy calibrate`."
        ) from None
    from geep_deploy.safe_io import check_format

    check_format(header, FORMAT, FORMAT_VERSION, what="geep-deploy exit table", where=f"exit table | {p}",
                 error=TableError)
    if header.get("hash") != HASH_SCHEME or header.get("slot") != SLOT_SCHEME:
        raise TableError(
            f"exit table | {p} uses hash {header.get('hash')!r} / slot {header.get('slot')!r}; "
            f"expected {HASH_SCHEME!r} / {SLOT_SCHEME!r}."
        )
    try:
        cap, L = int(header["capacity"]), int(header["num_layers"])
        table = ExitHashTable(cap, L, seed=int(header["seed"], 16), orders=tuple(header["orders"]))
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise TableError(f"exit table | {p} has an invalid header: {type(e).__name__}: {e}"[:400]) from None
    if keys.dtype != np.uint64 or keys.shape != (cap,) or counts.dtype != np.uint32 or counts.shape != (cap, L):
        raise TableError(
            f"exit table | {p}: arrays keys {keys.dtype}{keys.shape} / counts {counts.dtype}{counts.shape} "
            f"do not match the header (expected uint64({cap},) and uint32({cap}, {L}))."
        )
    table.keys, table.counts = np.ascontiguousarray(keys), np.ascontiguousarray(counts)
    table.size = int(np.count_nonzero(keys != _EMPTY))
    table.total = int(header.get("total", counts.sum()))
    if table.size != header.get("size"):
        raise TableError(f"exit table | {p}: {table.size} keys stored but the header says {header.get('size')}.")
    table.check_consistent(str(p))
    return table, dict(header.get("meta", {}))
