"""One prepared call that checks every GPU path and writes one JSON with a verdict per check (``make gpu-check``).

Made for a lent GPU machine: a bare ``python3`` with torch (CUDA), CuPy, onnx and CPU onnxruntime, nothing
installed, no network, none of the shared model folders; only ``DIR`` comes back. Every section runs in its own
subprocess with its own timeout (clipped to what is left of ``--budget-s``); ``DIR/gpu_check.json`` is rewritten
after every section; the top-level ``verdicts`` say ``pass``, ``fail``, ``skip`` or ``not_run``, and the exit code
is 1 when any verdict is ``fail`` or ``not_run``. The checks are ``geep_deploy.bench.gpu_check`` and
``geep_deploy.bench.gpu_sections``.

Sections: ``environment`` (GPU, driver, torch, CuPy, NVRTC, what cannot be installed and why), ``table`` (CuPy
exit table vs the NumPy twin: identical answers, lookups/s at 1e6 and 8e6 keys), ``export`` (the real model, a few
training steps so its logits are meaningful, exit table and probe), ``engines`` (torch on the device at fp32, tf32,
fp16 and bf16 vs ONNX Runtime on the CPU: relative logit error, argmax agreement), ``graphs`` (CUDA-graph replay =
eager for depth/prefix/cont, device-resident states, concurrent first use = serial, TF32 scoping, memory per
bucket), ``e2e`` (GeepEngine with the table and the probe dispatch, escalation, threads, vs the CPU's answers; peak
device memory), ``bench_<precision>`` (full, static, GEEP table, probe and FastBERT at batch 1/64/256 with
p50/p99).

The model: ``--backbone DIR`` (default ``models-local/all-MiniLM-L6-v2-fp16`` when it exists; copy the packaged
MiniLM fp16 folder there, see the README). ``--device cpu`` is the dry run ``make test`` runs
(tests/test_gpu_check.py): the same sections on tiny sizes, the CUDA-only checks skipped with their reason.

example:
  PYTHONPATH=$PWD python3 bench/gpu_check.py --device cuda --out-dir DIR --budget-s 500 [--backbone DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from geep_deploy.bench.gpu_check import DEFAULT_BACKBONE, plan_sections, run_checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default=os.environ.get("DEVICE", "cuda"))
    ap.add_argument("--backbone", type=Path, default=None,
                    help="a Hugging Face BERT directory; default models-local/all-MiniLM-L6-v2-fp16 if present")
    ap.add_argument("--out-dir", type=Path, default=None, help="where gpu_check.json goes (default: a temp dir)")
    ap.add_argument("--budget-s", type=float, default=500.0, help="wall-clock budget for every section together")
    ap.add_argument("--sections", default=None, help="comma list of sections to run (default: all)")
    ap.add_argument("--timeout", action="append", default=[], metavar="SECTION=S", help="override a section's timeout")
    args = ap.parse_args(argv)
    if args.backbone is None and DEFAULT_BACKBONE.is_dir():
        args.backbone = DEFAULT_BACKBONE
    only = [s.strip() for s in args.sections.split(",") if s.strip()] if args.sections else None
    try:
        names, timeouts = plan_sections(args.device, only, args.timeout)
    except ValueError as e:
        ap.error(str(e))
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="gpu-check-out-"))
    report = run_checks(args.device, args.backbone, out_dir, args.budget_s, names, timeouts)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
