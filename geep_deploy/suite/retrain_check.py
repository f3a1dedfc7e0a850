"""Does a suite checkpoint reproduce? Train it again by its recipe and compare the two, tensor by tensor.

A seed's committed answers can be regenerated only by retraining that seed, so whether retraining gives the same
bits decides whether an old seed file can be recomputed or must be re-measured. This check retrains one method of
one cached seed (FastBERT from that seed's cached `full` teacher, as the suite does) into a scratch folder and
compares every weight with the cached checkpoint. Run on the machine that trained the cached checkpoint, it tests
the trainer's determinism; on another machine, whether that CPU reproduces it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geep_deploy.errors import ConfigError
from geep_deploy.suite.datasets import DatasetSpec
from geep_deploy.suite.run import TRAINED, SuiteConfig, seed_dir, train_again


def compare_weights(cached: Mapping[str, Any], again: Mapping[str, Any]) -> dict[str, Any]:
    """Which tensors of two state dicts differ (names, shapes or any value), and by how much at most."""
    import torch

    names = sorted(set(cached) | set(again))
    differ = [n for n in names if n not in cached or n not in again or cached[n].shape != again[n].shape
              or not torch.equal(cached[n], again[n])]
    gaps = [float((cached[n].double() - again[n].double()).abs().max()) for n in differ
            if n in cached and n in again and cached[n].shape == again[n].shape and cached[n].numel()]
    return {"tensors": len(names), "differ": differ, "max_abs_diff": max(gaps, default=0.0),
            "identical": not differ}


def retrain_check(cfg: SuiteConfig, spec: DatasetSpec, seed: int, method: str, scratch: Path) -> dict[str, Any]:
    """Retrain ``method`` of training seed ``seed`` on ``spec`` into ``scratch`` and compare it with the cached one.

    Raises:
        ConfigError: an unknown method, or the cached checkpoint (or FastBERT's `full` teacher) is missing.
    """
    from geep_deploy.checkpoint import load_checkpoint

    if method not in TRAINED:
        raise ConfigError(f"retrain check | unknown method {method!r}; choose one of {', '.join(TRAINED)}.")
    ckpts = seed_dir(cfg, spec, seed) / "ckpt"
    needed = [ckpts / f"{m}.pt" for m in dict.fromkeys((method, "full" if method == "fastbert" else method))]
    missing = [str(p) for p in needed if not p.is_file()]
    data = cfg.work / spec.name / "data"
    if missing or not data.is_dir():
        raise ConfigError(f"retrain check | nothing to compare with: {', '.join(missing) or data} missing. Run the "
                          f"suite for {spec.name} seed {seed} first (it caches every checkpoint under {cfg.work}).")
    cached = load_checkpoint(ckpts / f"{method}.pt")
    teacher = load_checkpoint(ckpts / "full.pt") if method == "fastbert" else None
    scratch.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    again = train_again(cfg, spec, seed, method, scratch / f"{spec.name}_seed{seed}_{method}.pt", teacher)
    seconds = time.perf_counter() - start
    return {"dataset": spec.name, "seed": seed, "method": method, "cached": str(ckpts / f"{method}.pt"),
            "cached_weights_sha256": cached.weights_sha256, "retrained_weights_sha256": again.weights_sha256,
            "retrain_seconds": round(seconds, 1),
            **compare_weights(cached.model.state_dict(), again.model.state_dict())}
