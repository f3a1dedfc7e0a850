"""Graphs for the runtime tests: the tiny fixture model compiled by the real export pipeline.

``export_depth_graphs`` / ``export_segment_graphs`` return the per-depth and segment ONNX files of an export of
``model`` (one shared ``weights.bin`` per precision, validated against PyTorch), so the engine tests run on
exactly what ``geep-deploy export`` writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models import real_tokenizer_json

from export.bundle import ExportBundle, export_checkpoint
from geep_deploy.checkpoint import Checkpoint
from geep_deploy.model import ExitBert


def _export(model: ExitBert, out_dir: Path, depths: list[int] | None, exit_mode: str) -> ExportBundle:
    ckpt = Checkpoint(model=model.eval(), method="geep", label_names=[f"label{i}" for i in range(model.num_labels)],
                      tokenizer_json=real_tokenizer_json(), max_len=64, exit_mode=exit_mode)
    return export_checkpoint(ckpt, out_dir, depths=depths, progress=False, force=True)


def export_depth_graphs(model: ExitBert, out_dir: Path, depths: list[int] | None = None,
                        exit_mode: str = "student") -> dict[int, Path]:
    """``depth{k}.onnx`` paths of an fp32 export of ``model`` (default: every depth)."""
    bundle = _export(model, out_dir / "export", depths, exit_mode)
    return {k: bundle.find(kind="depth", depth=k).path for k in (depths or bundle.depths)}


def export_segment_graphs(model: ExitBert, out_dir: Path) -> dict[str, Path]:
    """``embed`` and ``layer{k}`` (k = 1..L) segment graph paths of an fp32 export of ``model``."""
    bundle = _export(model, out_dir / "export", None, "student")
    paths = {"embed": bundle.find(kind="embed").path}
    paths |= {f"layer{k}": bundle.find(kind="layer", depth=k).path for k in range(1, model.num_layers + 1)}
    return paths


def on_threads(jobs: list[Any], call: Callable[[Any], Any]) -> list[Any]:
    """``call(job)`` for every job, each on its own thread, all started before any is joined; the results in job
    order. An exception on any thread is re-raised here (the first one), so a test fails on it."""
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def work(j: int) -> None:
        try:
            results[j] = call(jobs[j])
        except BaseException as e:  # re-raised below in the calling thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [results[j] for j in range(len(jobs))]
