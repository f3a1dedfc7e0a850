"""The export compiler: checkpoint -> validated graphs, weights, table and manifest, written atomically.

Everything is built in a temporary directory next to ``out_dir`` and renamed into place at the end, so an
interrupted or failed export leaves any previous export untouched; an existing ``out_dir`` is replaced only with
``force``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from export.context import ExportContext
from export.manifest import file_entry, write_manifest
from export.onnx_export import OnnxFromCheckpoint, graph_name
from export.options import ExportOptions
from export.spec import ExportSpec, invoke_if_callable, is_all_depths, parse_depths
from export.validate import calibration_feeds, compare, judge, run_graph, run_reference, validation_feeds
from export.weights import SharedWeightsFile, save_graph
from geep_deploy.atomic import apply_umask, check_parents, exchange_paths
from geep_deploy.errors import ConfigError, EngineBuildError, ExportError
from geep_deploy.limits import check_max_len
from geep_deploy.names import (
    CONT,
    DEPTH,
    EMBED,
    ENTROPY,
    LAYER,
    LOW_PRECISIONS,
    MODEL,
    ONNX,
    ONNX_REFERENCE,
    ONNXRUNTIME,
    PLAN,
    PREFIX,
    PROBE,
    QDQ,
    TABLE,
    WEIGHTS,
    first_continuation,
    variant_dir,
)
from runtime.manifest import FORMAT, FORMAT_VERSION, MANIFEST


def _resolve_checkpoint(checkpoint: Any) -> Any:
    obj, _ = invoke_if_callable(checkpoint)
    if isinstance(obj, (str, Path)):
        from geep_deploy.checkpoint import load_checkpoint

        return load_checkpoint(obj)
    if not hasattr(obj, "model") or not hasattr(obj, "method"):
        raise ConfigError(f"export | checkpoint must be a path or a Checkpoint, got {type(obj).__name__}.")
    return obj


def _is_our_export(d: Path) -> bool:
    """True if ``d`` holds a manifest with our format tag (what ``--force`` may replace)."""
    from geep_deploy.safe_io import read_json

    try:
        m = read_json(d / MANIFEST)  # bounded: a crafted manifest cannot raise RecursionError here
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("format") == FORMAT


def _check_target(out: Path, force: bool) -> None:
    """Refuse what ``--force`` must never replace: a file, the current folder (or one above it), or a folder
    that is not a geep-deploy export. An empty folder is used as is."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"export | {out} exists and is not a directory. Choose another --out.")
    check_parents(out, "export --out")
    if not out.exists() or not any(out.iterdir()):
        return
    cwd = Path.cwd().resolve()
    if out.resolve() == cwd or out.resolve() in cwd.parents:
        raise ExportError(f"export | {out} is the current directory (or contains it); an export never replaces "
                          "it. Choose a new folder for --out, e.g. --out exports/model.")
    if not force:
        raise ExportError(f"export | {out} already exists. Pass --force to replace it, or choose another --out.")
    if not _is_our_export(out):
        raise ExportError(f"export | {out} is not a geep-deploy export (no {MANIFEST} of ours), so --force will "
                          "not replace it: it may hold your files. Choose a new folder for --out, or remove it "
                          "yourself.")


_PID_FILE = ".export-pid"  # inside every ``.DIR.tmp-*`` this exporter makes: the marker that it is ours
_BACKUP_FILE = ".export-backup"  # put into an export just before the fallback swap renames it to ``.DIR.old-*``


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _marked_ours(d: Path, marker: str) -> int | None:
    """The pid in ``d/marker`` if ``d`` is a real folder (not a symlink) holding the marker file this exporter
    writes into the folders it creates; None for anything else (a user's look-alike folder is never ours)."""
    try:
        if d.is_symlink() or not d.is_dir() or (d / marker).is_symlink():
            return None
        return int((d / marker).read_text(encoding="utf-8").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _named_like(out: Path, tag: str) -> list[Path]:
    """Entries of ``out``'s parent named ``.{out.name}.{tag}-*``, matched as plain strings: glob characters in a
    user's folder name (``*``, ``[abc]``) never widen the match."""
    prefix = f".{out.name}.{tag}-"
    try:
        return sorted(p for p in out.parent.iterdir() if p.name.startswith(prefix) and len(p.name) > len(prefix))
    except OSError:
        return []


def clean_stale_temps(out: Path) -> list[Path]:
    """Remove the ``.DIR.tmp-*`` folders of exports that were killed (their process is gone), and put back an old
    export that a crash left only as ``.DIR.old-*``. Returns what was removed.

    Only folders this exporter marked as its own (a marker file written inside them when it made them) are
    touched: a user's folder that merely looks like one, or a symlink, is left alone."""
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    for old in _named_like(out, "old"):
        if _marked_ours(old, _BACKUP_FILE) is None:
            continue
        if not out.exists() and not out.is_symlink() and _is_our_export(old):
            os.rename(old, out)  # the crash fell between the two renames of the fallback swap
            (out / _BACKUP_FILE).unlink(missing_ok=True)
        else:
            shutil.rmtree(old, ignore_errors=True)
            removed += [] if old.exists() else [old]
    for tmp in _named_like(out, "tmp"):
        pid = _marked_ours(tmp, _PID_FILE)
        if pid is None or (pid > 0 and pid != os.getpid() and _pid_alive(pid)):
            continue  # not ours, or another export of the same folder is running
        shutil.rmtree(tmp, ignore_errors=True)
        removed += [] if tmp.exists() else [tmp]  # reported only once it is really gone
    return removed


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Put ``tmp`` at ``out`` so that a reader sees either the old or the new export, never none.

    Linux: one ``renameat2(RENAME_EXCHANGE)``, then the old export (now at ``tmp``) is removed. Elsewhere: two
    renames; a crash between them leaves ``.DIR.old-*`` (marked as ours), which the next export of DIR renames
    back.
    """
    (tmp / _PID_FILE).unlink(missing_ok=True)
    if not out.exists():
        os.rename(tmp, out)
        return
    if exchange_paths(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    backup = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    (out / _BACKUP_FILE).write_text(str(os.getpid()), encoding="utf-8")
    try:
        os.rename(out, backup)
    except BaseException:
        (out / _BACKUP_FILE).unlink(missing_ok=True)
        raise
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(backup, out)
        (out / _BACKUP_FILE).unlink(missing_ok=True)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _make_temp_dir(out: Path) -> Path:
    """``.DIR.tmp-*`` with our pid inside, made with SIGTERM held back so that no signal lands between its
    creation and the caller's cleanup handler."""
    blocked = hasattr(signal, "pthread_sigmask")
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        (tmp / _PID_FILE).write_text(str(os.getpid()))
        return tmp
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` while exporting, so the temporary folder is removed (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _validate(ctx: ExportContext, path: Path, kind: str, depth: int | None, precision: str) -> dict | None:
    """fp32: compare and judge. Others: compare and record. A graph ONNX Runtime cannot run here (bf16 on the CPU)
    is checked with ONNX's reference evaluator instead, and that is recorded."""
    refs, feeds = ctx.refs[(kind, depth)]
    what = f"{precision}/{path.name}"
    runner = ONNXRUNTIME
    try:
        outs = run_graph(ONNXRUNTIME, path, feeds, precision=precision)
    except EngineBuildError as e:
        if precision == "fp32":
            raise
        ctx.skip_validation(path, f"ONNX Runtime (CPU) cannot run it here: {str(e)[:240]}; its numerics were "
                                  "checked with onnx.reference instead")
        runner, outs = ONNX_REFERENCE, run_graph(ONNX_REFERENCE, path, feeds, precision=precision)
    cmp = compare(refs, outs, ctx.spec.atol, what=what)
    if precision == "fp32":
        judge(cmp, what, ctx.spec.allow_mismatch)
    return {**cmp.to_dict(), "runner": runner}


def _write_graphs(ctx: ExportContext, precision: str, make: Any, *, variant: str = "",
                  kinds: tuple[str, ...] | None = None) -> SharedWeightsFile:
    """One precision (variant): build each graph with ``make(kind, depth)``, move its weights into the shared
    file, save, validate against PyTorch and record it. Returns the (closed) weights file."""
    d = ctx.tmp / ONNX / variant_dir(precision, variant)
    d.mkdir(parents=True)
    with SharedWeightsFile(d / "weights.bin") as w:
        for kind, k in ctx.graphs:
            if kinds is not None and kind not in kinds:
                continue
            proto = make(kind, k)
            w.add(proto)
            path = save_graph(proto, d / f"{graph_name(kind, k)}.onnx")
            del proto
            ctx.record(path, kind, k, ONNX, precision, _validate(ctx, path, kind, k, precision), variant=variant)
            ctx.step(f"{precision}{'-' + variant if variant else ''} {path.stem}")
        if precision == "fp32" and not variant:
            # the torch backend reads the same file: the state dict is placed once, reusing the graphs' bytes
            sd = {n: t.detach().cpu().numpy() for n, t in ctx.ckpt.model.state_dict().items()}
            tensors = w.add_tensors(sd)
    ctx.weights.append(file_entry(ctx.tmp, d / "weights.bin", format=ONNX, precision=precision, variant=variant,
                                  tensors=w.num_tensors))
    if precision == "fp32" and not variant:
        ctx.record(d / "weights.bin", MODEL, None, WEIGHTS, "fp32", None, tensors=tensors)
    return w


def _export_fp32(ctx: ExportContext) -> None:
    feeds = validation_feeds(ctx.ckpt.tokenizer_json, ctx.spec.max_len)
    model = ctx.ckpt.model.eval()

    def make(kind: str, k: int | None) -> Any:
        # the reference first: a model giving NaN/inf must fail as such, not as a graph that "does not match"
        ctx.refs[(kind, k)] = refs = run_reference(model, kind, k, ctx.ckpt.exit_mode, feeds)
        if not all(np.isfinite(v).all() for out in refs[0] for v in out.values()):
            raise ExportError(f"export | the checkpoint's model itself gives NaN/inf outputs for the {kind} graph "
                              f"{'' if k is None else k}: its weights are damaged or training diverged. Retrain "
                              "or use another checkpoint; no export would give correct answers.")
        return OnnxFromCheckpoint(ctx.ckpt, k, kind=kind, opset=ctx.spec.opset, exporter=ctx.spec.exporter)()

    _write_graphs(ctx, "fp32", make)


def _export_variant(ctx: ExportContext, precision: str) -> None:
    """fp16/bf16 (casts in the graph) and int8 (ORT dynamic quantisation) from the saved fp32 graphs."""
    import onnx

    src = ctx.tmp / ONNX / "fp32"

    def make(kind: str, k: int | None) -> Any:
        name = graph_name(kind, k)
        if precision in LOW_PRECISIONS:
            from export.precision import convert_precision

            return convert_precision(onnx.load(str(src / f"{name}.onnx")), precision)
        from export.quantize import quantize_dynamic_graph

        return quantize_dynamic_graph(src / f"{name}.onnx")

    _write_graphs(ctx, precision, make)


def _export_qdq(ctx: ExportContext, calib_texts: list[str] | None) -> None:
    """Static Q/DQ int8 depth graphs, calibrated on real text: the int8 input of TensorRT."""
    from export.quantize import quantize_qdq_graph

    src = ctx.tmp / ONNX / "fp32"
    calib = calibration_feeds(ctx.ckpt.tokenizer_json, ctx.spec.max_len, calib_texts)
    _write_graphs(ctx, "int8", lambda kind, k: quantize_qdq_graph(src / f"{graph_name(DEPTH, k)}.onnx", calib),
                  variant=QDQ, kinds=(DEPTH,))


def calibration_texts(calib_data: Any, rows: int = 256) -> list[str] | None:
    """Up to ``rows`` texts of the calibration data's train split for int8 calibration (None: bundled data)."""
    if calib_data is None or callable(calib_data):
        return None
    from geep_deploy.data import load_split

    return list(load_split(calib_data, "train").texts_a[:rows])


def _exit_table_stage(ctx: ExportContext, exit_table: Any, calib_data: Any, progress: bool) -> dict[str, Any] | None:
    from export.table_stage import table_from_calibration, table_from_file

    if exit_table is not None:
        return table_from_file(ctx.tmp, invoke_if_callable(exit_table)[0], ctx.ckpt.model.num_layers)
    if calib_data is not None:
        return table_from_calibration(ctx.tmp, ctx.ckpt, invoke_if_callable(calib_data)[0], progress)
    return None


def _versions() -> dict[str, str]:
    import onnx
    import torch

    out = {"python": sys.version.split()[0], "torch": torch.__version__, "onnx": onnx.__version__}
    try:
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return out


def run_export(checkpoint: Any, out_dir: str | Path, options: ExportOptions) -> Path:
    """Build the export in a temporary directory and rename it into place; see ``export_checkpoint``."""
    from tqdm.auto import tqdm

    o = options
    exit_table, calib_data, depths, probe, continuations = o.exit_table, o.calib_data, o.depths, o.probe, o.continuations
    precisions, formats, progress = o.precisions, o.formats, o.progress
    t0 = time.perf_counter()
    out = Path(out_dir).absolute()
    _check_target(out, o.force)
    ckpt = _resolve_checkpoint(checkpoint)
    if o.exit_mode is not None and o.exit_mode != ckpt.exit_mode:  # the depth graphs exit through this path
        import dataclasses

        ckpt = dataclasses.replace(ckpt, exit_mode=o.exit_mode)
    L = ckpt.model.num_layers
    max_len = check_max_len("export | --max-len", ckpt.max_len if o.max_len is None else o.max_len,
                            ckpt.shape.max_position_embeddings)
    if ckpt.method == "full":
        if not is_all_depths(depths) and parse_depths(depths, L) != (L,):  # "all" of a `full` checkpoint's is L
            raise ConfigError(f"export | a 'full' checkpoint has only the depth-{L} classifier; got --depths "
                              f"{depths!r}: drop it, or pass {L} or all.")
        if exit_table is not None or calib_data is not None:
            raise ConfigError("export | a 'full' checkpoint has no early exits, so no exit table; drop "
                              "--exit-table/--calib-data.")
        if continuations:
            raise ConfigError("export | a 'full' checkpoint has no early exits, so no continuation graphs; drop "
                              "--continuations.")
        if o.entropy is not None:
            raise ConfigError("export | a 'full' checkpoint has no early exits, so no entropy exit; drop --entropy.")
    dlist = (L,) if ckpt.method == "full" else parse_depths(depths, L)
    entropy = None
    if o.entropy is not None:  # fail before the long work, not after it
        from export.entropy_exit import entropy_record

        entropy = entropy_record(o.entropy, L)
        if L not in dlist:
            raise ConfigError(f"export | the entropy exit's exact answers (predict --exact) run depth {L}; add {L} "
                              "to --depths.")
    if probe is not None:  # fail before the long work, not after it
        from export.probe_stage import check_probe

        check_probe(probe, L, has_table=exit_table is not None or calib_data is not None,
                    exit_mode=ckpt.exit_mode, has_depths=ckpt.method != "full")
        if L not in dlist:
            raise ConfigError(f"export | the probe dispatch continues its deepest rows (and escalated ones) to "
                              f"depth {L}; add {L} to --depths.")
    spec = ExportSpec(depths=dlist, precisions=precisions, formats=formats, exporter=o.exporter,
                      segments=(ckpt.method != "full") if o.segments is None else o.segments,
                      continuations=(probe is not None) if continuations is None else continuations,
                      max_batch=o.max_batch, max_len=max_len, allow_mismatch=o.allow_mismatch)
    if spec.continuations and L < 2:
        raise ConfigError("export | a one-layer model has nothing to continue after layer 1; drop --continuations.")
    if PLAN in formats:
        from export.trt_build import require_tensorrt

        require_tensorrt()
    if exit_table is not None and not callable(exit_table):  # fail before the long work, not after it
        from export.table_stage import check_table_file

        check_table_file(exit_table, L)
    _check_identity(ckpt, exit_table, probe, checkpoint, entropy)
    if calib_data is not None and not callable(calib_data) and not Path(calib_data).is_dir():
        raise ExportError(f"export | --calib-data {calib_data} is not a directory with train.tsv and dev.tsv.")
    graphs: list[tuple[str, int | None]] = [(DEPTH, k) for k in dlist]
    if spec.segments:
        graphs += [(EMBED, None)] + [(LAYER, k) for k in range(1, L + 1)]
    if spec.continuations:
        graphs += [(PREFIX, None)] + [(CONT, k) for k in dlist if k >= first_continuation(ckpt.exit_mode)]
    n_var = sum(p != "fp32" for p in precisions)
    total = len(graphs) * (1 + n_var) + ("int8" in precisions) * len(dlist) + 4
    if PLAN in formats:
        from export.trt_build import plan_graphs

        total += sum(len(plan_graphs(graphs, p)) for p in precisions)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(out)  # only now: every input is validated, and only folders marked as ours are touched
    with _sigterm_as_exit():
        bar = tqdm(total=total, desc=f"export {out.name}", disable=not progress, unit="step")
        tmp: Path | None = None
        try:
            tmp = _make_temp_dir(out)
            manifest = _build(tmp, ckpt, spec, graphs, bar, exit_table=exit_table, calib_data=calib_data,
                              probe=probe, progress=progress, t0=t0, entropy=entropy)
            write_manifest(tmp, manifest)
            apply_umask(tmp)
            _swap_into_place(tmp, out)
            bar.set_postfix_str("done", refresh=False)
            bar.update(1)
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            bar.close()
    return out


def _check_identity(ckpt: Any, exit_table: Any, probe: Any, source: Any, entropy: Any = None) -> None:
    """The exit table, the probe and the entropy exit must have been calibrated on this checkpoint's weights (the
    sha256 that ``geep-deploy calibrate`` records in each): a probe fitted on another model with the same layer
    count would otherwise plan other depths silently. Files written before the field load with a warning; an
    entropy exit given as a threshold (no file) records none and is not checked."""
    import warnings

    from runtime.predictor import ExitPredictor
    from runtime.probe import ProbeModel

    ident = ckpt.weights_sha256
    files = []
    if exit_table is not None and not callable(exit_table):
        files.append(("--exit-table", exit_table, ExitPredictor.load(exit_table).checkpoint))
    if probe is not None:
        model = probe if isinstance(probe, ProbeModel) else ProbeModel.load(probe)
        files.append(("--probe", probe if not isinstance(probe, ProbeModel) else "(ProbeModel)", model.checkpoint))
    if entropy is not None and entropy.get("checkpoint") is not None:
        files.append(("--entropy", "(entropy exit)", entropy["checkpoint"]))
    for flag, path, recorded in files:
        if recorded is None:
            warnings.warn(f"export | {flag} {path} records no checkpoint identity (written before geep-deploy "
                          "recorded it), so it cannot be checked against the checkpoint; re-run `geep-deploy "
                          "calibrate` on this checkpoint to be sure it fits.", UserWarning, stacklevel=3)
        elif recorded != ident:
            name = source if isinstance(source, (str, Path)) else "the checkpoint"
            raise ConfigError(f"export | {flag} {path} was calibrated on another model (weights sha256 "
                              f"{recorded[:12]}...), not on {name} ({ident[:12]}...): its exit depths would not "
                              "fit this model. Re-run `geep-deploy calibrate` on this checkpoint.")


def _build(tmp: Path, ckpt: Any, spec: ExportSpec, graphs: list[tuple[str, int | None]], bar: Any, *,
           exit_table: Any, calib_data: Any, probe: Any, progress: bool, t0: float,
           entropy: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write every graph, weight file and table into ``tmp``; return the manifest describing them."""
    from geep_deploy import __version__

    precisions, formats = spec.precisions, spec.formats
    ctx = ExportContext(tmp=tmp, ckpt=ckpt, spec=spec, graphs=graphs, bar=bar)
    (tmp / "tokenizer.json").write_text(ckpt.tokenizer_json, encoding="utf-8")
    _export_fp32(ctx)
    for p in precisions:
        if p != "fp32":
            _export_variant(ctx, p)
    if "int8" in precisions:
        _export_qdq(ctx, calibration_texts(calib_data))
    trt = None
    if PLAN in formats:
        from export.trt_build import build_all

        trt = build_all(ctx, tmp)
    table = _exit_table_stage(ctx, exit_table, calib_data, progress)
    ctx.step("exit table")
    probe_entry = None
    if probe is not None:
        from export.probe_stage import probe_stage

        probe_entry = probe_stage(tmp, probe, ckpt.model.num_layers)
    ctx.step("probe")
    entropy_entry = None
    if entropy is not None:
        from export.entropy_exit import entropy_entry as make_entry

        entropy_entry = make_entry(entropy)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "geep_deploy_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "backbone": ckpt.shape.to_dict(),
        "num_labels": ckpt.model.num_labels, "shared_head": bool(ckpt.model.shared_head),
        "pooling": ckpt.model.pooling,
        "label_names": list(ckpt.label_names), "method": ckpt.method, "exit_mode": ckpt.exit_mode,
        "checkpoint": {"weights_sha256": ckpt.weights_sha256},
        "max_len": spec.max_len, "depths": list(spec.depths),
        "tokenizer": file_entry(tmp, tmp / "tokenizer.json"),
        "weights": ctx.weights, "artifacts": ctx.artifacts, "exit_table": table, "probe": probe_entry,
        **({ENTROPY: entropy_entry} if entropy_entry else {}),
        "predictor": ENTROPY if entropy_entry else PROBE if probe_entry else (TABLE if table else None),
        "not_validated": ctx.not_validated, "tensorrt": trt,
        "export": {"opset": spec.opset, "exporter": spec.exporter, "precisions": list(precisions),
                   "formats": list(formats), "max_batch": spec.max_batch, "atol_fp32": spec.atol,
                   "allow_mismatch": spec.allow_mismatch, "segments": spec.segments,
                   "continuations": spec.continuations,
                   "seconds": round(time.perf_counter() - t0, 2), "versions": _versions()},
    }
