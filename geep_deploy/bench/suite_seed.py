"""A suite seed's work folder as the all-depth-L benches read it: its ``geep`` and ``full`` exports, its bench rows,
and the two dispatches they compare (``full`` with every row at depth L, GEEP's ``probe:0``) as whole passes.

``bench/all_depth_l_overhead.py`` and ``bench/dispatch_outside_engines.py`` time the same passes over the same
length-sorted batches; both take them from here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def seed_rows(work: Path, batch: int, tool: str) -> Any:
    """The test split of ``work``'s batch-``batch`` bench rows, after checking both exports are there.

    Raises:
        SystemExit: a folder is missing (named, with the suite command that writes it; ``tool`` says who asked).
    """
    from geep_deploy.data import load_split

    rows_dir = work / f"bench_rows_b{batch}"
    for need in (work / "export" / "geep", work / "export" / "full", rows_dir):
        if not need.exists():
            raise SystemExit(f"{tool}: {need} is missing; run the suite's bench for this seed first "
                             "(bench/multi_dataset.py --seeds S --bench-rows 200 512).")
    return load_split(rows_dir, "test")


def full_pass(full: Any, batches: list[Any], batch: int) -> Callable[[], list[Any]]:
    """One pass of ``full``'s dispatch over ``batches``, every row at depth L (``full`` loaded with that depth)."""
    L = full.num_layers
    return lambda: [full.dispatch(e, depths=np.full(len(e), L), batch_size=batch) for e in batches]


def probe0_pass(probe0: Any, batches: list[Any], batch: int) -> Callable[[], list[Any]]:
    """One pass of GEEP's probe dispatch (``probe0``: a view at risk 0, every row to depth L) over ``batches``."""
    return lambda: [probe0.dispatch(e, batch_size=batch) for e in batches]
