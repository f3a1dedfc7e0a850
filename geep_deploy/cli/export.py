"""Compile a checkpoint into per-depth ONNX/TensorRT engines, exit table and manifest.

Writes DIR/manifest.json, DIR/onnx/<precision>/{depthK,embed,layerK}.onnx sharing DIR/onnx/<precision>/weights.bin,
DIR/tokenizer.json, the exit table and (where TensorRT imports) DIR/tensorrt/*.plan. With --probe it also writes
the probe dispatch's prefix.onnx and contK.onnx graphs and DIR/probe.json, and makes the probe the export's
dispatcher (what predict, serve and GeepEngine use unless told --predictor table). With --entropy the manifest
records the entropy exit's threshold instead (from `calibrate --predictor entropy`), and the export dispatches by
FastBERT's entropy exit over its own heads, layer by layer through its embed/layerK graphs.
Every graph is validated against PyTorch with ONNX Runtime; a mismatch fails the export unless --allow-mismatch.
The export is built next to DIR and renamed into place, so a failed run leaves a previous export intact.

Example:
  # after `geep-deploy calibrate --checkpoint runs/demo/geep.pt ... --out runs/exit_table.npz --predictor probe`
  geep-deploy export --checkpoint runs/demo/geep.pt --out exports/geep --exit-table runs/exit_table.npz \\
      --probe runs/exit_table.probe.json        # the probe becomes the export's dispatcher
  geep-deploy export --checkpoint runs/demo/geep.pt --out exports/geep_table --exit-table runs/exit_table.npz \\
      --precision fp32,int8                     # table dispatch only, plus int8 graphs
  geep-deploy export --checkpoint runs/demo/geep.pt --out exports/geep_entropy --exit-table runs/exit_table.npz \\
      --entropy runs/exit_table.entropy.json    # after `calibrate ... --predictor entropy`
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from export.spec import EXPORTERS
from geep_deploy.names import EXIT_MODES, EXPORT_FORMATS, EXPORT_PRECISIONS, ONNX, WEIGHTS

if TYPE_CHECKING:
    from export.options import ExportOptions


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="checkpoint file (ckpt.pt) to export")
    parser.add_argument("--out", required=True, metavar="DIR", help="export directory to write")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--exit-table", metavar="TABLE", help="exit-table file to copy into the export")
    src.add_argument("--calib-data", metavar="DIR",
                     help="data directory to build the exit table from (train.tsv calibrates, dev.tsv tunes)")
    parser.add_argument("--probe", metavar="PROBE",
                        help="layer-1 probe from `calibrate --predictor probe` (JSON): the export dispatches by it and "
                             "gets its prefix/contK graphs")
    parser.add_argument("--entropy", metavar="ENTROPY",
                        help="entropy-exit threshold from `calibrate --predictor entropy` (JSON): the export dispatches "
                             "by FastBERT's entropy exit over its own heads (runs the embed/layerK graphs)")
    parser.add_argument("--continuations", action="store_true",
                        help="export the prefix/contK graphs even without --probe")
    parser.add_argument("--exit-mode", choices=EXIT_MODES, default=None,
                        help="depth k < L exits through head k (student) or through layer L and the teacher (skip, "
                             "one layer more); default: the checkpoint's. A --probe must have been calibrated with the same "
                             "--exit-mode")
    parser.add_argument("--depths", default="all",
                        help="'all' or a list like 1,3,6 (default: all; a `full` checkpoint has depth L only)")
    parser.add_argument("--precision", default="fp32",
                        help=f"comma list of {','.join(EXPORT_PRECISIONS)} (default: fp32)")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--format", default=None, dest="format",
                     help=f"artifact formats to build, comma list of {','.join(EXPORT_FORMATS)} (tensorrt: plans; "
                          "default: onnx)")
    fmt.add_argument("--backend", default=None, dest="old_backend", help=argparse.SUPPRESS)  # deprecated: --format
    parser.add_argument("--max-batch", type=int, default=128, help="largest batch of TensorRT profiles (default 128)")
    parser.add_argument("--max-len", type=int, default=None, help="longest sequence (default: the checkpoint's)")
    parser.add_argument("--exporter", choices=EXPORTERS, default="torchscript",
                        help="torch ONNX exporter (default: torchscript, the faster one; dynamo is the new one)")
    parser.add_argument("--no-segments", action="store_true",
                        help="skip the embed/layerK graphs that the entropy exit (--entropy, GeepEngine.with_entropy) "
                             "and the FastBERT/PABEE baselines run on")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="record validation failures in the manifest instead of failing")
    parser.add_argument("--force", action="store_true", help="replace an existing DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def export_options(args: argparse.Namespace) -> ExportOptions:
    """The `ExportOptions` of ``export``'s flags (``--backend`` is the deprecated name of ``--format``: it warns)."""
    import sys

    from export.options import ExportOptions

    formats = args.format
    if args.old_backend is not None:
        print("export | --backend is now --format (onnx and tensorrt are artifact formats; a backend runs them, as in "
              "`predict --backend`); --backend will be removed.", file=sys.stderr)
        formats = args.old_backend
    return ExportOptions(
        exit_table=args.exit_table, calib_data=args.calib_data, probe=args.probe, entropy=args.entropy,
        depths=args.depths,
        precisions=args.precision, formats=formats or ONNX, max_batch=args.max_batch, max_len=args.max_len,
        exporter=args.exporter, segments=False if args.no_segments else None,
        continuations=True if args.continuations else None, exit_mode=args.exit_mode, force=args.force,
        allow_mismatch=args.allow_mismatch, progress=not args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    from export.bundle import export_checkpoint

    bundle = export_checkpoint(args.checkpoint, args.out, export_options(args))
    m = bundle.manifest
    size = sum(w["bytes"] for w in m["weights"]) + sum(a["bytes"] for a in m["artifacts"] if a["format"] != WEIGHTS)
    print(f"wrote {bundle.root}: {len(bundle.artifacts)} artifacts, depths {bundle.depths} (exit {bundle.exit_mode}), "
          f"precisions {bundle.precisions()}, {size / 1e6:.1f} MB, {m['export']['seconds']} s")
    for nv in m.get("not_validated", []):
        print(f"  not validated here: {nv['file']}: {nv['reason'][:120]}")
    if m.get("exit_table"):
        p = m["exit_table"]["predictor"]
        print(f"  exit table {m['exit_table']['file']}: quantile={p['quantile']} margin={p['margin']}")
    if m.get("probe"):
        p = m["probe"]["params"]
        print(f"  probe {m['probe']['file']}: risk={p['risk']} escalate={p['escalate']} "
              f"(uses the table: {p['uses_table']}); the export dispatches by the probe (predict, serve and "
              "GeepEngine use it; --predictor table picks the exit table instead)")
    if m.get("entropy"):
        print(f"  entropy exit: threshold={m['entropy']['threshold']:g}; the export dispatches by it, layer by layer "
              "(predict, serve and GeepEngine use it; --predictor table picks the exit table instead)")
    return 0
