"""The export compiler: checkpoint -> validated graphs, weights, table and manifest, written atomically.

Everything is built in a temporary directory next to ``out_dir`` and renamed into place at the end, so an
interrupted or failed export leaves any previous export untouched; an existing ``out_dir`` is replaced only with
``force``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export.manifest import FORMAT, FORMAT_VERSION, file_entry, write_manifest
from export.onnx_export import OnnxFromCheckpoint, graph_name, io_spec
from export.spec import ExportSpec, invoke_if_callable, parse_depths
from export.validate import SessionFromOnnx, compare, judge, run_onnx, run_reference, validation_feeds
from export.weights import SharedWeightsFile, save_graph
from geep_deploy.errors import ConfigError, EngineBuildError, ExportError

LOW_PRECISIONS = ("fp16", "bf16")


@dataclass
class _Ctx:
    """State of one export run (the temporary root, what has been written so far)."""

    tmp: Path
    ckpt: Any
    spec: ExportSpec
    graphs: list[tuple[str, int | None]]
    bar: Any
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    weights: list[dict[str, Any]] = field(default_factory=list)
    not_validated: list[dict[str, str]] = field(default_factory=list)
    refs: dict[tuple[str, int | None], tuple[list, list]] = field(default_factory=dict)

    def step(self, what: str) -> None:
        self.bar.set_postfix_str(what, refresh=False)
        self.bar.update(1)


def _resolve_checkpoint(checkpoint: Any) -> Any:
    obj, _ = invoke_if_callable(checkpoint)
    if isinstance(obj, (str, Path)):
        from geep_deploy.checkpoint import load_checkpoint

        return load_checkpoint(obj)
    if not hasattr(obj, "model") or not hasattr(obj, "method"):
        raise ConfigError(f"export | checkpoint must be a path or a Checkpoint, got {type(obj).__name__}.")
    return obj


def _check_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"export | {out} exists and is not a directory. Choose another --out.")
    if out.exists() and not force:
        raise ExportError(f"export | {out} already exists. Pass --force to replace it, or choose another --out.")


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and restored if the rename fails."""
    if not out.exists():
        os.rename(tmp, out)
        return
    backup = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out, backup)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(backup, out)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _record(ctx: _Ctx, path: Path, kind: str, depth: int | None, backend: str, precision: str,
            validation: dict | None) -> None:
    m = ctx.ckpt.model
    inputs, outputs = io_spec("depth" if kind == "model" else kind, m.shape.hidden_size, m.num_labels)
    if kind == "model":
        inputs, outputs = {}, {}
    ctx.artifacts.append({"kind": kind, "depth": depth, "backend": backend, "precision": precision,
                          **file_entry(ctx.tmp, path), "inputs": inputs, "outputs": outputs,
                          "validation": validation})


def _validate(ctx: _Ctx, path: Path, kind: str, depth: int | None, precision: str) -> dict | None:
    """fp32: compare and judge. Others: compare and record; an ORT that cannot run the graph is recorded."""
    refs, feeds = ctx.refs[(kind, depth)]
    what = f"{precision}/{path.name}"
    runner = "onnxruntime"
    try:
        sess = SessionFromOnnx(path)()
    except EngineBuildError as e:
        if precision == "fp32":
            raise
        # ORT's CPU provider has no bf16 kernels: check the graph's numerics with ONNX's NumPy reference
        # evaluator instead, and record that ORT itself could not run it here.
        from onnx.reference import ReferenceEvaluator

        ctx.not_validated.append({"file": path.relative_to(ctx.tmp).as_posix(),
                                  "reason": f"ONNX Runtime (CPU) cannot run it here: {str(e)[:240]}; "
                                            "its numerics were checked with onnx.reference instead"})
        import onnx

        sess, runner = _RefSession(ReferenceEvaluator(onnx.load(str(path)))), "onnx.reference"
    cmp = compare(refs, run_onnx(sess, feeds), ctx.spec.atol, what=what)
    del sess
    if precision == "fp32":
        judge(cmp, what, ctx.spec.allow_mismatch)
    return {**cmp.to_dict(), "runner": runner}


class _RefSession:
    """``onnx.reference.ReferenceEvaluator`` behind the two ORT session methods ``run_onnx`` uses."""

    def __init__(self, ev: Any) -> None:
        self.ev = ev

    def get_outputs(self) -> list[Any]:
        return [type("O", (), {"name": n})() for n in self.ev.output_names]

    def get_inputs(self) -> list[Any]:
        return [type("I", (), {"name": n})() for n in self.ev.input_names]

    def run(self, names: list[str], feed: dict[str, Any]) -> list[Any]:
        return self.ev.run(names, feed)


def _export_fp32(ctx: _Ctx) -> None:
    d = ctx.tmp / "onnx" / "fp32"
    d.mkdir(parents=True)
    feeds = validation_feeds(ctx.ckpt.tokenizer_json, ctx.spec.max_len)
    model = ctx.ckpt.model.eval()
    with SharedWeightsFile(d / "weights.bin") as w:
        for kind, k in ctx.graphs:
            proto = OnnxFromCheckpoint(ctx.ckpt, k, kind=kind, opset=ctx.spec.opset, exporter=ctx.spec.exporter)()
            w.add(proto)
            path = save_graph(proto, d / f"{graph_name(kind, k)}.onnx")
            del proto
            ctx.refs[(kind, k)] = run_reference(model, kind, k, ctx.ckpt.exit_mode, feeds)
            _record(ctx, path, kind, k, "onnx", "fp32", _validate(ctx, path, kind, k, "fp32"))
            ctx.step(f"fp32 {path.stem}")
    ctx.weights.append(file_entry(ctx.tmp, d / "weights.bin", backend="onnx", precision="fp32",
                                  tensors=w.num_tensors))


def _export_variant(ctx: _Ctx, precision: str) -> None:
    """fp16/bf16 (casts in the graph) and int8 (ORT dynamic quantisation) from the saved fp32 graphs."""
    import onnx

    src, d = ctx.tmp / "onnx" / "fp32", ctx.tmp / "onnx" / precision
    d.mkdir(parents=True)
    with SharedWeightsFile(d / "weights.bin") as w:
        for kind, k in ctx.graphs:
            name = graph_name(kind, k)
            if precision in LOW_PRECISIONS:
                from export.precision import convert_precision

                proto = convert_precision(onnx.load(str(src / f"{name}.onnx")), precision)
            else:
                from export.quantize import quantize_dynamic_graph

                proto = quantize_dynamic_graph(src / f"{name}.onnx")
            w.add(proto)
            path = save_graph(proto, d / f"{name}.onnx")
            del proto
            _record(ctx, path, kind, k, "onnx", precision, _validate(ctx, path, kind, k, precision))
            ctx.step(f"{precision} {name}")
    ctx.weights.append(file_entry(ctx.tmp, d / "weights.bin", backend="onnx", precision=precision,
                                  tensors=w.num_tensors))


def _export_qdq(ctx: _Ctx) -> None:
    """Static Q/DQ int8 depth graphs (calibrated on real tokenised text): the int8 input of TensorRT."""
    from export.quantize import calibration_feeds, quantize_qdq_graph

    src, d = ctx.tmp / "onnx" / "fp32", ctx.tmp / "onnx" / "int8_qdq"
    d.mkdir(parents=True)
    calib = calibration_feeds(ctx.ckpt.tokenizer_json, ctx.spec.max_len)
    with SharedWeightsFile(d / "weights.bin") as w:
        for kind, k in ctx.graphs:
            if kind != "depth":
                continue
            proto = quantize_qdq_graph(src / f"depth{k}.onnx", calib)
            w.add(proto)
            path = save_graph(proto, d / f"depth{k}.onnx")
            del proto
            _record(ctx, path, kind, k, "onnx", "int8_qdq", _validate(ctx, path, kind, k, "int8_qdq"))
            ctx.step(f"int8 Q/DQ depth{k}")
    ctx.weights.append(file_entry(ctx.tmp, d / "weights.bin", backend="onnx", precision="int8_qdq",
                                  tensors=w.num_tensors))


def _exit_table_stage(ctx: _Ctx, exit_table: Any, calib_data: Any, progress: bool) -> dict[str, Any] | None:
    from export.exit_table import table_from_calibration, table_from_file

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


def run_export(checkpoint: Any, out_dir: str | Path, *, exit_table: Any = None, calib_data: Any = None,
               depths: Any = None, precisions: tuple[str, ...] = ("fp32",), backends: tuple[str, ...] = ("onnx",),
               max_batch: int = 128, max_len: int | None = None, force: bool = False, allow_mismatch: bool = False,
               progress: bool = True, exporter: str = "torchscript", segments: bool | None = None) -> Path:
    """Build the export in a temporary directory and rename it into place; see ``export_checkpoint``."""
    from tqdm.auto import tqdm

    from geep_deploy import __version__

    t0 = time.perf_counter()
    out = Path(out_dir).absolute()
    _check_target(out, force)
    ckpt = _resolve_checkpoint(checkpoint)
    L = ckpt.model.num_layers
    if ckpt.method == "full":
        if depths is not None and parse_depths(depths, L) != (L,):
            raise ConfigError(f"export | a 'full' checkpoint has only the depth-{L} classifier; drop --depths.")
        if exit_table is not None or calib_data is not None:
            raise ConfigError("export | a 'full' checkpoint has no early exits, so no exit table; drop "
                              "--exit-table/--calib-data.")
    dlist = (L,) if ckpt.method == "full" else parse_depths(depths, L)
    precisions = tuple(dict.fromkeys(("fp32", *precisions)))
    spec = ExportSpec(depths=dlist, precisions=precisions, backends=backends, exporter=exporter,
                      segments=(ckpt.method != "full") if segments is None else segments,
                      max_batch=max_batch, max_len=max_len or ckpt.max_len, allow_mismatch=allow_mismatch)
    if "tensorrt" in backends:
        from export.trt_build import require_tensorrt

        require_tensorrt()
    if exit_table is not None and not callable(exit_table):  # fail before the long work, not after it
        from export.exit_table import check_table_file

        check_table_file(exit_table, L)
    if calib_data is not None and not callable(calib_data) and not Path(calib_data).is_dir():
        raise ExportError(f"export | --calib-data {calib_data} is not a directory with train.tsv and dev.tsv.")
    graphs: list[tuple[str, int | None]] = [("depth", k) for k in dlist]
    if spec.segments:
        graphs += [("embed", None)] + [("layer", k) for k in range(1, L + 1)]
    n_var = sum(p != "fp32" for p in precisions)
    total = len(graphs) * (1 + n_var) + ("int8" in precisions) * len(dlist) + 3
    total += len(dlist) * len(precisions) * ("tensorrt" in backends)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    bar = tqdm(total=total, desc=f"export {out.name}", disable=not progress, unit="step")
    try:
        ctx = _Ctx(tmp=tmp, ckpt=ckpt, spec=spec, graphs=graphs, bar=bar)
        (tmp / "tokenizer.json").write_text(ckpt.tokenizer_json, encoding="utf-8")
        _save_torch_weights(ctx)
        _export_fp32(ctx)
        for p in precisions:
            if p != "fp32":
                _export_variant(ctx, p)
        if "int8" in precisions:
            _export_qdq(ctx)
        trt = None
        if "tensorrt" in backends:
            from export.trt_build import build_all

            trt = build_all(ctx, tmp)
        table = _exit_table_stage(ctx, exit_table, calib_data, progress)
        ctx.step("exit table")
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "geep_deploy_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "backbone": ckpt.shape.to_dict(),
            "num_labels": ckpt.model.num_labels, "shared_head": bool(ckpt.model.shared_head),
            "pooling": ckpt.model.pooling,
            "label_names": list(ckpt.label_names), "method": ckpt.method, "exit_mode": ckpt.exit_mode,
            "max_len": spec.max_len, "depths": list(dlist),
            "tokenizer": file_entry(tmp, tmp / "tokenizer.json"),
            "weights": ctx.weights, "artifacts": ctx.artifacts, "exit_table": table,
            "not_validated": ctx.not_validated, "tensorrt": trt,
            "export": {"opset": spec.opset, "exporter": spec.exporter, "precisions": list(precisions),
                       "backends": list(backends), "max_batch": max_batch, "atol_fp32": spec.atol,
                       "allow_mismatch": allow_mismatch, "segments": spec.segments,
                       "seconds": round(time.perf_counter() - t0, 2), "versions": _versions()},
        }
        write_manifest(tmp, manifest)
        _swap_into_place(tmp, out)
        ctx.step("done")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return out


def _save_torch_weights(ctx: _Ctx) -> None:
    """``model.safetensors``: the ExitBert state dict, so the torch backend needs no checkpoint."""
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous() for k, v in ctx.ckpt.model.state_dict().items()}
    p = ctx.tmp / "model.safetensors"
    save_file(sd, str(p), metadata={"format": "pt", "producer": "geep-deploy"})
    entry = file_entry(ctx.tmp, p, backend="torch", precision="fp32", tensors=len(sd))
    ctx.weights.append(entry)
    _record(ctx, p, "model", None, "torch", "fp32", None)
    ctx.step("model.safetensors")
