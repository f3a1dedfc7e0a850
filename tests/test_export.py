"""Export compiler, fp32 path: graphs, dynamic axes, parity, shared weights, segments, manifest, atomicity, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from models import as_old_manifest

from export import export_checkpoint, load_export
from export.manifest import write_manifest
from export.onnx_export import export_graph
from export.validate import compare, judge, run_graph
from export.weights import external_locations
from geep_deploy.checkpoint import load_checkpoint
from geep_deploy.cli import main
from geep_deploy.encoding import TextEncoder, pad_batch
from geep_deploy.errors import (
    ArtifactError,
    BackendUnavailable,
    ConfigError,
    ExportError,
    ShapeMismatch,
    ToleranceExceeded,
)
from runtime.manifest import FORMAT_VERSION, SELF_HASH, sha256_file

SENTENCES = [
    "a gripping , beautifully acted film",
    "it is a dull and lifeless mess from start to finish , with nothing to recommend it at all",
    "fine",
    "the cast is superb but the script lets them down again and again",
    "an utterly charming little movie",
]


def _ort(path: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One graph run once through the ONNX Runtime engine (the runner serving uses)."""
    return run_graph("onnxruntime", path, [feed])[0]


@pytest.fixture(scope="module")
def exported(tiny_ckpt_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exp") / "tiny"
    export_checkpoint(tiny_ckpt_path, out, progress=False)
    return out


@pytest.fixture(scope="module")
def ckpt(tiny_ckpt_path: Path):
    return load_checkpoint(tiny_ckpt_path)


def _feed(ckpt, n: int, max_len: int) -> dict[str, np.ndarray]:
    enc = TextEncoder(ckpt.tokenizer_json, max_len)
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(n)]
    return pad_batch(enc.encode(texts), pad_id=enc.pad_id)


def test_graphs_have_dynamic_axes_and_standard_ops(exported: Path) -> None:
    for k in (1, 2, 3):
        proto = onnx.load(str(exported / "onnx" / "fp32" / f"depth{k}.onnx"), load_external_data=False)
        dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                for v in [*proto.graph.input, *proto.graph.output]}
        assert dims == {"input_ids": ["batch", "seq"], "attention_mask": ["batch", "seq"],
                        "token_type_ids": ["batch", "seq"], "logits": ["batch", 2]}
        assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)  # no ORT contrib ops
        assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in proto.graph.input)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("batch,max_len", [(1, 64), (5, 64), (3, 8)])
def test_depth_graph_matches_torch(exported: Path, ckpt, depth: int, batch: int, max_len: int) -> None:
    feed = _feed(ckpt, batch, max_len)
    got = _ort(exported / "onnx" / "fp32" / f"depth{depth}.onnx", feed)["logits"]
    with torch.no_grad():
        ref = ckpt.model(*(torch.from_numpy(feed[k]) for k in ("input_ids", "attention_mask", "token_type_ids")),
                         depth=depth).numpy()
    assert got.shape == (batch, 2)
    assert np.abs(got - ref).max() <= 1e-4
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_one_shared_weights_file_and_size(exported: Path, ckpt) -> None:
    d = exported / "onnx" / "fp32"
    graphs = sorted(d.glob("*.onnx"))
    assert {g.stem for g in graphs} == {"depth1", "depth2", "depth3", "embed", "layer1", "layer2", "layer3"}
    for g in graphs:
        assert external_locations(g) == {"weights.bin"}, g.name
    one_model = len(export_graph(ckpt.model, "depth", 3).SerializeToString())
    total = sum(p.stat().st_size for p in d.iterdir())
    assert total <= 1.1 * one_model, (total, one_model)


def test_segments_chained_equal_depth_graph(exported: Path, ckpt) -> None:
    d = exported / "onnx" / "fp32"
    feed = _feed(ckpt, 4, 64)
    h = _ort(d / "embed.onnx", feed)["hidden"]
    for k in (1, 2, 3):
        out = _ort(d / f"layer{k}.onnx", {"hidden": h, "attention_mask": feed["attention_mask"]})
        h, seg_logits = out["hidden_out"], out["logits"]
        depth_logits = _ort(d / f"depth{k}.onnx", feed)["logits"]
        assert np.abs(seg_logits - depth_logits).max() <= 1e-4


def test_manifest_lists_every_file_with_checksums(exported: Path, ckpt) -> None:
    bundle = load_export(exported)
    m = json.loads((exported / "manifest.json").read_text())
    assert m["format"] == "geep-deploy-export" and m["format_version"] == 5 and m["manifest_sha256"]
    assert bundle.depths == [1, 2, 3] and bundle.method == "geep" and bundle.num_labels == 2
    for a in m["artifacts"] + m["weights"] + [m["tokenizer"]]:
        assert sha256_file(exported / a["file"]) == a["sha256"]
    kinds = {(a.kind, a.depth) for a in bundle.artifacts if a.format == "onnx"}
    assert kinds == {("depth", 1), ("depth", 2), ("depth", 3), ("embed", None), ("layer", 1), ("layer", 2),
                     ("layer", 3)}
    art = bundle.find(kind="layer", depth=2)
    assert list(art.inputs) == ["hidden", "attention_mask"] and list(art.outputs) == ["hidden_out", "logits"]
    assert all(a["validation"]["passed"] for a in m["artifacts"] if a["validation"])
    sd = bundle.torch_state_dict()
    for k, v in ckpt.model.state_dict().items():
        assert torch.equal(sd[k], v), k
    assert bundle.torch_model().num_layers == 3
    assert bundle.tokenizer_json == (exported / "tokenizer.json").read_text()
    with pytest.raises(ArtifactError, match="depth=7.*It has: depth1/onnx/fp32"):
        bundle.find(depth=7)


def test_weights_stored_once_for_onnx_and_torch(exported: Path, ckpt) -> None:
    bundle = load_export(exported)
    torch_art = bundle.find(format="torch")
    assert torch_art.path == exported / "onnx" / "fp32" / "weights.bin"
    assert not list(exported.glob("*.safetensors"))
    assert any(e["transposed"] for e in torch_art.tensors.values())  # MatMul weights are shared transposed
    sd = {k: v.detach().numpy() for k, v in ckpt.model.state_dict().items()}
    needed = sum(v.nbytes for v in sd.values())
    # the file holds each tensor once: the graphs' bytes plus what only torch needs, never a second model
    assert torch_art.path.stat().st_size <= 1.1 * needed + 4096 * len(sd)


def test_format_1_exports_still_load(exported: Path, ckpt, tmp_path: Path) -> None:
    """Exports written before weights were shared (model.safetensors, precision int8_qdq) load unchanged."""
    from safetensors.torch import save_file

    old = tmp_path / "v1"
    shutil.copytree(exported, old)
    save_file({k: v.contiguous() for k, v in ckpt.model.state_dict().items()}, str(old / "model.safetensors"))
    m = as_old_manifest(json.loads((old / "manifest.json").read_text()), 1)
    for a in m["artifacts"]:
        a.pop("variant", None)
        if a["kind"] == "model":
            a.pop("tensors")
            a.update(file="model.safetensors", sha256=sha256_file(old / "model.safetensors"))
    (old / "manifest.json").write_text(json.dumps(m))
    bundle = load_export(old)
    assert bundle.find(format="torch").path.name == "model.safetensors"
    for k, v in ckpt.model.state_dict().items():
        assert torch.equal(bundle.torch_state_dict()[k], v), k


def test_format_4_manifests_name_the_file_format_backend_and_still_load(exported: Path, tmp_path: Path) -> None:
    """Export writes each file's format as "format" (version 5); a version-4 manifest's "backend" reads as it."""
    m = json.loads((exported / "manifest.json").read_text())
    assert m["format_version"] == FORMAT_VERSION == 5
    assert all(e["format"] in ("onnx", "torch") and "backend" not in e for e in m["artifacts"] + m["weights"])
    old = tmp_path / "v4"
    shutil.copytree(exported, old)
    m.pop(SELF_HASH)
    write_manifest(old, as_old_manifest(m, 4))  # checksummed as version 4 wrote it
    written = json.loads((old / "manifest.json").read_text())["artifacts"]
    assert all("backend" in a and "format" not in a for a in written)
    bundle, new = load_export(old), load_export(exported)
    assert [(a.kind, a.depth, a.format) for a in bundle.artifacts] == [(a.kind, a.depth, a.format)
                                                                      for a in new.artifacts]
    assert bundle.find(format="torch").path.name == "weights.bin" and bundle.precisions() == ["fp32"]
    assert all("backend" not in a and a["format"] for a in bundle.manifest["artifacts"])
    with pytest.warns(DeprecationWarning, match="format="):
        assert bundle.find(backend="torch") == bundle.find(format="torch")
    with pytest.warns(DeprecationWarning, match="Artifact.format"):
        assert bundle.artifacts[0].backend == bundle.artifacts[0].format
    write_manifest(old, {**m, "format_version": 5})  # version 5 with the old key: malformed, named
    with pytest.raises(ArtifactError, match=r"artifacts\[0\]\.format must be a string"):
        load_export(old)
    write_manifest(old, {**m, "format_version": 6})
    with pytest.raises(ArtifactError, match=r"format version 6; this geep-deploy reads 1\.\.5\. Upgrade"):
        load_export(old)


def test_corrupted_and_missing_files_are_named(exported: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(exported, bad)
    w = bad / "onnx" / "fp32" / "weights.bin"
    data = bytearray(w.read_bytes())
    data[100] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"weights\.bin is corrupted"):
        load_export(bad)
    load_export(bad, verify=False)  # existence only
    (bad / "onnx" / "fp32" / "depth2.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"depth2\.onnx is missing"):
        load_export(bad, verify=False)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="manifest.json is not valid JSON"):
        load_export(bad)
    with pytest.raises(ArtifactError, match="not a directory"):
        load_export(tmp_path / "nowhere")


def test_existing_dir_needs_force_and_failed_export_keeps_old(exported: Path, tiny_ckpt_path: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "exp"
    shutil.copytree(exported, out)
    before = (out / "manifest.json").read_text()
    with pytest.raises(ExportError, match="already exists. Pass --force"):
        export_checkpoint(tiny_ckpt_path, out, progress=False)

    def failing_table() -> Path:
        raise RuntimeError("injected failure after the graphs were written")

    with pytest.raises(RuntimeError, match="injected"):
        export_checkpoint(tiny_ckpt_path, out, exit_table=failing_table, depths="1", segments=False, force=True,
                          progress=False)
    assert (out / "manifest.json").read_text() == before
    load_export(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]  # no temporary directories left behind

    bundle = export_checkpoint(tiny_ckpt_path, out, depths="2", segments=False, force=True, progress=False)
    assert bundle.depths == [2] and not (out / "onnx" / "fp32" / "depth1.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_tensorrt_backend_unavailable_names_pip_extra(tiny_ckpt_path: Path, tmp_path: Path) -> None:
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt imports here; the unavailable path cannot be exercised")
    except ImportError:
        pass
    with pytest.raises(BackendUnavailable, match=r"pip install '?geep-deploy\[tensorrt\]"):
        export_checkpoint(tiny_ckpt_path, tmp_path / "x", formats=("onnx", "tensorrt"), progress=False)
    # backends= is the deprecated name of formats=: it still works, and warns
    with pytest.warns(DeprecationWarning, match="formats="), pytest.raises(BackendUnavailable):
        export_checkpoint(tiny_ckpt_path, tmp_path / "x", backends=("onnx", "tensorrt"), progress=False)
    assert not (tmp_path / "x").exists()


def test_export_options_are_one_object(tiny_ckpt_path: Path, tmp_path: Path) -> None:
    from export.options import ExportOptions

    with pytest.raises(ConfigError, match="unknown format"):
        ExportOptions(formats="onnx,plan9")
    with pytest.raises(TypeError, match="unknown option.*formats"):
        export_checkpoint(tiny_ckpt_path, tmp_path / "x", format="onnx")
    opts = ExportOptions(precisions="fp16", formats="onnx", progress=False)
    assert opts.precisions == ("fp32", "fp16") and opts.formats == ("onnx",)


def test_full_method_exports_depth_L_only(tmp_path: Path) -> None:
    from models import tiny_checkpoint

    tiny_checkpoint(tmp_path / "full.pt", method="full")
    with pytest.raises(ConfigError, match="no exit table"):
        export_checkpoint(tmp_path / "full.pt", tmp_path / "e", exit_table=tmp_path / "t.npz", progress=False)
    with pytest.raises(ConfigError, match="only the depth-3 classifier; got --depths '1,3'"):
        export_checkpoint(tmp_path / "full.pt", tmp_path / "e", depths="1,3", progress=False)
    b = export_checkpoint(tmp_path / "full.pt", tmp_path / "e", progress=False)
    assert b.depths == [3] and {a.kind for a in b.artifacts} == {"depth", "model"} and b.exit_table is None


def test_the_export_command_exports_a_full_checkpoint_with_its_default_depths(tmp_path: Path) -> None:
    """The CLI's --depths default ("all") means depth L for a `full` checkpoint (the baseline recipe)."""
    from models import tiny_checkpoint

    tiny_checkpoint(tmp_path / "full.pt", method="full")
    assert main(["export", "--checkpoint", str(tmp_path / "full.pt"), "--out", str(tmp_path / "e"), "--quiet"]) == 0
    assert json.loads((tmp_path / "e" / "manifest.json").read_text())["depths"] == [3]


def test_compare_and_judge_raise_distinct_errors() -> None:
    ref = [{"logits": np.array([[0.0, 1.0], [2.0, 0.0]], dtype=np.float32)}]
    ok = compare(ref, [{"logits": ref[0]["logits"] + 1e-6}], atol=1e-4)
    assert ok and ok.diffs["logits"].argmax_agree == 1.0
    off = compare(ref, [{"logits": np.array([[1.0, 0.0], [2.0, 0.0]], dtype=np.float32)}], atol=1e-4)
    assert not off and off.diffs["logits"].argmax_agree == 0.5
    with pytest.raises(ToleranceExceeded, match="allow-mismatch"):
        judge(off, "depth1", allow_mismatch=False)
    assert not judge(off, "depth1", allow_mismatch=True)
    with pytest.raises(ShapeMismatch, match="shape"):
        compare(ref, [{"logits": np.zeros((2, 3), dtype=np.float32)}], atol=1e-4)


def test_cli_help_and_run(tiny_ckpt_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    assert e.value.code == 0
    assert "--exit-table" in capsys.readouterr().out
    out = tmp_path / "cli"
    rc = main(["export", "--checkpoint", str(tiny_ckpt_path), "--out", str(out), "--depths", "1,3", "--no-segments",
               "--quiet"])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    assert load_export(out).depths == [1, 3]
    assert main(["export", "--checkpoint", str(tiny_ckpt_path), "--out", str(out), "--quiet"]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tiny_ckpt_path), "--out", str(tmp_path / "y"), "--depths", "9"]) == 1
    assert "outside 1..3" in capsys.readouterr().err


def test_import_export_is_lazy() -> None:
    import subprocess
    import sys

    code = "import export, sys; print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_dynamo_graphs_share_weights_by_content(ckpt, tmp_path: Path) -> None:
    """dynamo names weights val_N, meaning different tensors in different graphs: sharing must go by content."""
    from export.weights import SharedWeightsFile, save_graph

    protos = {k: export_graph(ckpt.model, "depth", k, exporter="dynamo") for k in (1, 2)}
    one = len(protos[2].SerializeToString())  # the deepest graph alone, weights embedded
    with SharedWeightsFile(tmp_path / "weights.bin") as w:
        for k, p in protos.items():
            w.add(p)
            save_graph(p, tmp_path / f"depth{k}.onnx")
    feed = _feed(ckpt, 3, 64)
    for k in (1, 2):
        got = _ort(tmp_path / f"depth{k}.onnx", feed)["logits"]
        with torch.no_grad():
            ref = ckpt.model(*(torch.from_numpy(feed[n]) for n in ("input_ids", "attention_mask", "token_type_ids")),
                             depth=k).numpy()
        assert np.abs(got - ref).max() <= 1e-4
    # depth 1's tensors are a subset of depth 2's by content, so the shared file holds about one graph's weights
    assert (tmp_path / "weights.bin").stat().st_size <= 1.1 * one
