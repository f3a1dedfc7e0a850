"""Issue 15, found by a hostile pass: no deleted user data, no silently wrong answer, no raw traceback.

One tiny export (3 layers, random weights, a random exit table) serves every test; each test copies it before
damaging anything.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models import as_old_manifest, reliability_workspace, tiny_checkpoint, tiny_model

from export.bundle import export_checkpoint
from export.pipeline import clean_stale_temps
from geep_deploy.atomic import check_output_file, exchange_paths
from geep_deploy.bench.reliability_inputs import edit_manifest
from geep_deploy.checkpoint import content_digest, load_checkpoint
from geep_deploy.cli import main
from geep_deploy.data import load_split, read_labels
from geep_deploy.errors import (
    ArtifactError,
    CheckpointError,
    ConfigError,
    DataError,
    EngineRunError,
    ExportError,
)
from geep_deploy.limits import check_count, check_depths
from runtime.artifacts import load_export
from runtime.engine import EngineParts, GeepEngine, depth_map
from runtime.manifest import SELF_HASH, sha256_file
from runtime.predictor import FixedDepth

ROOT = Path(__file__).resolve().parent.parent
L = 3


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoint, toy data, exit table (random exits 1..3) and an export without segment graphs."""
    return reliability_workspace(tmp_path_factory.mktemp("rel"), L)


def _copy(ws: dict[str, Path], tmp_path: Path) -> Path:
    out = tmp_path / "exp"
    shutil.copytree(ws["export"], out)
    return out


# -- 1. data loss: --force replaces only an export, never the current folder ------------------------------------
def test_force_refuses_a_folder_that_is_not_an_export(ws, tmp_path, monkeypatch, capsys) -> None:
    user = tmp_path / "P"
    (user / "src").mkdir(parents=True)
    (user / "notes.txt").write_text("x")
    monkeypatch.chdir(user)
    assert main(["export", "--checkpoint", str(ws["ckpt"]), "--out", ".", "--force", "--quiet"]) == 1
    assert "current directory" in capsys.readouterr().err
    assert (user / "notes.txt").read_text() == "x" and (user / "src").is_dir()
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(user), "--force", "--quiet"]) == 1
    assert "not a geep-deploy export" in capsys.readouterr().err
    assert (user / "notes.txt").read_text() == "x" and (user / "src").is_dir()


def test_force_refuses_the_cwd_even_when_it_is_an_export(ws, tmp_path, monkeypatch) -> None:
    out = _copy(ws, tmp_path)
    monkeypatch.chdir(out / "onnx")
    with pytest.raises(ExportError, match="current directory"):
        export_checkpoint(ws["ckpt"], out, force=True, progress=False)
    load_export(out)


# -- 2. never run a row shallower than predicted ---------------------------------------------------------------
@given(loaded=st.sets(st.integers(1, 12), min_size=1), num_layers=st.integers(1, 12))
def test_depth_map_never_maps_down(loaded: set[int], num_layers: int) -> None:
    m = depth_map(sorted(loaded), num_layers)
    for d in range(1, num_layers + 1):
        deeper = [k for k in loaded if k >= d]
        assert m[d] == (min(deeper) if deeper else 0)  # 0: no loaded depth is deep enough -> an error


def test_load_without_the_deepest_depth_is_refused(ws) -> None:
    with pytest.raises(ConfigError, match="deepest exported depth 3"):
        GeepEngine.load(ws["export"], "onnxruntime", depths=[2])
    with GeepEngine.load(ws["export"], "onnxruntime", depths=[1, 3]) as eng:
        res = eng.predict(["good", "a long and winding film about the sea"], depths=[2, 1])
        assert res.depths.tolist() == [3, 1]


def test_a_row_deeper_than_every_loaded_engine_is_an_error(ws) -> None:
    with GeepEngine.load(ws["export"], "torch", fixed_depth=1) as eng:
        view = GeepEngine(EngineParts(eng.encoder, FixedDepth(3, L), eng.engines, eng.label_names))
        with pytest.raises(ConfigError, match="needs depth 3"):
            view.predict(["good"])


# -- 3. the manifest itself is checked ---------------------------------------------------------------------------
def test_edited_manifest_is_refused(ws, tmp_path) -> None:
    out = _copy(ws, tmp_path)
    edit_manifest(out, lambda m: m["label_names"].reverse(), rehash=False)
    with pytest.raises(ArtifactError, match="changed after export"):
        load_export(out)


@pytest.mark.parametrize("edit, msg", [
    (lambda m: m.update(label_names=["a"]), "label_names has 1 names but num_labels is 2"),
    (lambda m: m.update(max_len=9999), "max_len must be an integer in 8..128"),
    (lambda m: m.update(depths=[3, 1]), "depths must be a sorted list"),
    (lambda m: [a.update(depth=3 if a["depth"] == 2 else 2) for a in m["artifacts"] if a["depth"] in (2, 3)],
     "says depth . but its file is onnx/fp32/depth.\\.onnx"),
    (lambda m: [a["outputs"]["logits"].update(shape=["batch", 5]) for a in m["artifacts"] if a["kind"] == "depth"],
     "outputs 5 logits but the manifest names 2 labels"),
])
def test_inconsistent_manifest_is_refused(ws, tmp_path, edit, msg) -> None:
    out = _copy(ws, tmp_path)
    edit_manifest(out, edit)
    with pytest.raises(ArtifactError, match=msg):
        load_export(out)


def test_a_consistent_label_count_forgery_fails_at_load(ws, tmp_path) -> None:
    """Three labels everywhere in the manifest (checksum recomputed): the graphs still give two logits."""
    out = _copy(ws, tmp_path)

    def three(m: dict) -> None:
        m.update(num_labels=3, label_names=["a", "b", "c"])
        for a in m["artifacts"]:
            if a["kind"] == "depth":
                a["outputs"]["logits"]["shape"] = ["batch", 3]

    edit_manifest(out, three)
    load_export(out)
    for backend in ("onnxruntime", "torch"):
        with pytest.raises(ArtifactError, match="(names 3 labels|do not fit the model)"):
            GeepEngine.load(out, backend)


def test_logits_width_must_match_the_labels(ws) -> None:
    with GeepEngine.load(ws["export"], "torch") as eng:
        three = GeepEngine(EngineParts(eng.encoder, eng.predictor, eng.engines, ["a", "b", "c"]))
        with pytest.raises(ArtifactError, match="names 3 labels"):
            three.predict(["good"])


# -- 4. limits ------------------------------------------------------------------------------------------------------
@given(v=st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.booleans(), st.none(),
                   st.text(max_size=3), st.just(np.int64(3))),
       lo=st.integers(-3, 5))
def test_check_count_accepts_exactly_the_integers_in_range(v, lo) -> None:
    ok = not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= lo
    if ok:
        assert check_count("x", v, minimum=lo) == int(v)
    else:
        with pytest.raises(ConfigError, match="x must be an integer"):
            check_count("x", v, minimum=lo)


@given(vals=st.lists(st.one_of(st.integers(-2, 6), st.floats(0, 6), st.none()), max_size=4))
def test_check_depths_takes_only_exported_integer_depths(vals) -> None:
    ok = vals and all(isinstance(v, int) and v in (1, 2, 3) for v in vals)
    if ok:
        assert check_depths("d", vals, [1, 2, 3]) == sorted(set(vals))
    else:
        with pytest.raises(ConfigError):
            check_depths("d", vals, [1, 2, 3])


def test_api_limits(ws) -> None:
    with GeepEngine.load(ws["export"], "onnxruntime") as eng:
        for bs in (0, -1, 2.5, "64", True):
            with pytest.raises(ConfigError, match="batch_size"):
                eng.predict(["good"], batch_size=bs)
        for d in ([None], [2.7], ["2"]):
            with pytest.raises(ConfigError, match="depths"):
                eng.predict(["good"], depths=d)
    for kw in ({"depths": [None]}, {"depths": [2.7]}, {"threads": -3}, {"fixed_depth": 0}):
        with pytest.raises(ConfigError):
            GeepEngine.load(ws["export"], "onnxruntime", **kw)
    ds = load_split(ws["data"], "train")
    for n in (-1, 0):
        with pytest.raises(DataError, match="row limit"):
            ds.subset(n)


@pytest.mark.parametrize("max_len", ["0", "4", "600", "129"])
def test_max_len_outside_the_model_is_refused_before_work(ws, tmp_path, capsys, max_len) -> None:
    assert main(["export", "--checkpoint", str(ws["ckpt"]), "--out", str(tmp_path / "e"), "--max-len", max_len,
                 "--quiet"]) == 1
    assert "--max-len must be an integer in 8..128" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_cli_counts(ws, tmp_path, capsys) -> None:
    common = ["--export", str(ws["export"]), "--data", str(ws["data"]), "--no-progress"]
    for flag, val in (("--threads", "-3"), ("--max-rows", "-5"), ("--max-rows", "0")):
        assert main(["bench", *common, flag, val]) == 1
        assert flag in capsys.readouterr().err
    assert main(["train", "--data", str(ws["data"]), "--method", "geep", "--out", str(tmp_path / "c.pt"),
                 "--max-train", "-4"]) == 1
    assert "--max-train" in capsys.readouterr().err


# -- 5. output paths are checked before the work -----------------------------------------------------------------------
def test_output_paths_are_checked_first(ws, tmp_path, capsys) -> None:
    d = tmp_path / "adir"
    d.mkdir()
    missing = str(tmp_path / "missing.pt")  # the output check must come before reading the checkpoint
    cases = [
        ["train", "--data", str(ws["data"]), "--method", "geep", "--out", str(d)],
        ["calibrate", "--checkpoint", missing, "--data", str(ws["data"]), "--out", str(d)],
        ["eval", "--checkpoint", missing, "--data", str(ws["data"]), "--json", str(d)],
        ["bench", "--export", str(tmp_path / "none"), "--data", str(ws["data"]), "--json", str(d)],
    ]
    for argv in cases:
        assert main(argv) == 1, argv
        assert f"{d} is a directory" in capsys.readouterr().err, argv
    f = tmp_path / "afile"
    f.write_text("")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        check_output_file(f / "x.json", "t")


def test_bench_plot_names_the_file_it_wrote(ws, tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "plots"
    assert main(["bench", "--export", str(ws["export"]), "--data", str(ws["data"]), "--methods", "full",
                 "--batch-sizes", "8", "--repeats", "1", "--max-rows", "8", "--no-progress",
                 "--plot", str(plot)]) == 0
    assert f"wrote {plot}.png" in capsys.readouterr().out and Path(f"{plot}.png").is_file()


# -- 6. encodings ----------------------------------------------------------------------------------------------------
def test_bom_is_accepted_and_bad_bytes_are_named_by_line(ws, tmp_path, capsys) -> None:
    d = tmp_path / "bom"
    shutil.copytree(ws["data"], d)
    for name in ("labels.txt", "train.tsv"):
        (d / name).write_bytes(b"\xef\xbb\xbf" + (d / name).read_bytes())
    assert read_labels(d / "labels.txt") == ["negative", "positive"]
    assert len(load_split(d, "train")) == 32
    lines = (d / "dev.tsv").read_bytes().split(b"\n")
    lines[2] = b"1\tcaf\xe9 society"
    (d / "dev.tsv").write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"dev\.tsv:3 is not UTF-8 \(byte 0xe9"):
        load_split(d, "dev")
    (d / "labels.txt").write_bytes(b"neg\nposi\xff\n")
    with pytest.raises(DataError, match=r"labels\.txt:2 is not UTF-8"):
        read_labels(d / "labels.txt")
    inp = tmp_path / "in.tsv"
    inp.write_bytes(b"\xef\xbb\xbftext\ngood\nbad \x81\n")
    assert main(["predict", "--export", str(ws["export"]), "--input", str(inp)]) == 1
    assert "in.tsv:3 is not UTF-8" in capsys.readouterr().err
    inp.write_bytes(b"\xef\xbb\xbftext\ngood\n")
    assert main(["predict", "--export", str(ws["export"]), "--input", str(inp)]) == 0
    capsys.readouterr()


# -- 7. checkpoints ---------------------------------------------------------------------------------------------------
def test_checkpoint_damage_is_detected(ws, tmp_path) -> None:
    (tmp_path / "zero.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "zero.pt")
    payload = torch.load(ws["ckpt"], weights_only=True)
    assert payload["sha256"] == content_digest(payload)
    sd = dict(payload["state_dict"])
    w = sd["heads.0.dense.weight"].clone()
    w.view(-1)[0] += 1e-3
    torch.save({**payload, "state_dict": {**sd, "heads.0.dense.weight": w}}, tmp_path / "flip.pt")
    torch.save({**payload, "tokenizer_json": payload["tokenizer_json"].replace("good", "gooe")}, tmp_path / "t.pt")
    for name in ("flip.pt", "t.pt"):
        with pytest.raises(CheckpointError, match="is corrupted"):
            load_checkpoint(tmp_path / name)
    nan = dict(sd)
    nan["heads.0.dense.weight"] = torch.full_like(w, float("nan"))
    bad = {**payload, "state_dict": nan}
    torch.save({**bad, "sha256": content_digest(bad)}, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN/inf weights"):
        load_checkpoint(tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_non_finite_logits_are_an_error_not_label_0(ws) -> None:
    from engines.torch_engine import TorchEngine
    from geep_deploy.evaluate import collect_depth_logits

    model = tiny_model()
    with torch.no_grad():
        model.heads[2].dense.weight.fill_(float("inf"))
    with GeepEngine.load(ws["export"], "torch", fixed_depth=3) as eng:
        engines = {3: TorchEngine(model, depth=3).load()}
        broken = GeepEngine(EngineParts(eng.encoder, FixedDepth(3, L), engines, eng.label_names))
        with pytest.raises(EngineRunError, match="non-finite logits"):
            broken.predict(["good", "bad"])
        with pytest.raises(CheckpointError, match="NaN/inf logits"):
            collect_depth_logits(model, eng.encoder.encode(["good"]))


# -- 8. malformed manifests and damaged files: ArtifactError, never a traceback ---------------------------------------
PATHS = [("tokenizer",), ("artifacts",), ("artifacts", 0), ("artifacts", 0, "file"), ("artifacts", 0, "kind"),
         ("artifacts", 0, "depth"), ("weights",), ("weights", 0), ("weights", 0, "file"), ("backbone",),
         ("backbone", "num_hidden_layers"), ("num_labels",), ("label_names",), ("max_len",), ("depths",),
         ("exit_table",), ("exit_table", "file"), ("tensorrt",), ("method",), ("artifacts", 0, "outputs")]
VALUES = [None, "x", 3, -1, 2.5, [], {}, [None], True]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=st.sampled_from([*VALUES, "DELETE"]), rehash=st.booleans())
def test_any_malformed_manifest_is_an_artifact_error(ws, tmp_path_factory, path, value, rehash) -> None:
    out = tmp_path_factory.mktemp("m") / "exp"
    shutil.copytree(ws["export"], out)

    def edit(m: dict) -> None:
        node = m
        for key in path[:-1]:
            node = node[key] if isinstance(node, dict) or (isinstance(node, list) and node) else None
            if node is None:
                return
        if isinstance(node, dict) and value == "DELETE":
            node.pop(path[-1], None)
        elif isinstance(node, dict) or (isinstance(node, list) and node):
            node[path[-1]] = value

    edit_manifest(out, edit, rehash=rehash)
    try:
        with GeepEngine.load(out, "onnxruntime", verify=False) as eng:
            eng.predict(["good"])
    except ArtifactError as e:
        assert "manifest.json" in str(e) or "exp" in str(e)


def _replace_with(out: Path, rel: str, data: bytes) -> None:
    (out / rel).write_bytes(data)

    def fix(m: dict) -> None:
        for e in [m["tokenizer"], *m["weights"], *m["artifacts"]]:
            if e["file"] == rel:
                e["sha256"], e["bytes"] = sha256_file(out / rel), len(data)

    edit_manifest(out, fix)


@pytest.mark.parametrize("rel, data, msg", [
    ("onnx/fp32/depth2.onnx", b"\x08\x96\x01garbage" * 50, r"depth2\.onnx cannot be loaded"),
    ("tokenizer.json", b'{"version": "1.0", "model": 7}', r"tokenizer\.json is not a valid tokenizer"),
    ("tokenizer.json", b"\x08\x96\x01garbage", r"tokenizer\.json cannot be read as UTF-8"),
])
def test_garbage_with_a_matching_checksum_is_named(ws, tmp_path, rel, data, msg) -> None:
    out = _copy(ws, tmp_path)
    _replace_with(out, rel, data)
    with pytest.raises(ArtifactError, match=msg):
        GeepEngine.load(out, "onnxruntime")


@pytest.mark.parametrize("backend, msg", [("torch", "truncated"), ("onnxruntime", "cannot be loaded")])
def test_truncated_weights_without_verify_is_named(ws, tmp_path, backend, msg) -> None:
    out = _copy(ws, tmp_path)
    w = out / "onnx" / "fp32" / "weights.bin"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ArtifactError, match=msg):
        GeepEngine.load(out, backend, verify=False)


# -- 9. interrupted exports --------------------------------------------------------------------------------------------
def test_stale_temps_are_cleaned_and_a_half_swapped_export_restored(ws, tmp_path) -> None:
    out = tmp_path / "exp"
    dead = tmp_path / ".exp.tmp-dead"
    dead.mkdir()
    (dead / ".export-pid").write_text("999999999")
    (dead / "big.bin").write_bytes(b"0" * 1000)
    alive = tmp_path / ".exp.tmp-alive"
    alive.mkdir()
    (alive / ".export-pid").write_text(str(os.getppid()))  # a running export of the same folder: kept
    shutil.copytree(ws["export"], tmp_path / ".exp.old-1234")  # a crash between the fallback's two renames
    (tmp_path / ".exp.old-1234" / ".export-backup").write_text("1")  # the swap marks the backup as its own
    clean_stale_temps(out)
    assert not dead.exists() and alive.exists()
    assert load_export(out).depths == [1, 2, 3] and not (tmp_path / ".exp.old-1234").exists()


def test_exchange_is_atomic_where_the_kernel_has_it(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not exchange_paths(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here; the two-rename fallback is used")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_sigterm_removes_the_temporary_export_and_keeps_the_old(ws, tmp_path) -> None:
    out = _copy(ws, tmp_path)
    before = (out / "manifest.json").read_text()
    code = ("import sys; from geep_deploy.cli import main; "
            f"sys.exit(main(['export', '--checkpoint', {str(ws['ckpt'])!r}, '--out', {str(out)!r}, '--force', "
            "'--quiet', '--precision', 'fp32,fp16,int8']))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob(".exp.tmp-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the export finished before it could be interrupted")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    assert not list(tmp_path.glob(".exp.*"))
    assert (out / "manifest.json").read_text() == before
    load_export(out)


# -- 10. permissions follow the umask -------------------------------------------------------------------------------
def test_exports_and_checkpoints_honour_the_umask(ws, tmp_path) -> None:
    old = os.umask(0o022)
    try:
        tiny_checkpoint(tmp_path / "c.pt")
        out = tmp_path / "exp"
        export_checkpoint(tmp_path / "c.pt", out, depths="3", exit_table=ws["table"], segments=False,
                          progress=False)
    finally:
        os.umask(old)
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o644
    assert out.stat().st_mode & 0o777 == 0o755
    for p in out.rglob("*"):
        assert p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644), p


# -- 11. texts -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, msg", [("\ud800", "lone surrogate U\\+D800"), ("ok \udfff", "lone surrogate"),
                                       ("\u200b", "no visible characters"), ("\x00", "no visible characters"),
                                       ("\u200b\u200d\ufeff", "no visible characters")])
def test_texts_without_content_are_data_errors(ws, text, msg) -> None:
    with GeepEngine.load(ws["export"], "onnxruntime") as eng:
        with pytest.raises(DataError, match=msg):
            eng.predict(["good", text])
        with pytest.raises(DataError, match="text_b #0"):
            eng.predict(["good"], [text])


# any code point, with lone surrogates and invisible characters drawn often (the plain strategy almost never does)
CHARS = st.one_of(st.characters(codec=None, categories=None), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                  st.sampled_from(["\u200b", "\u200d", "\ufeff", "\x00", "\x01", " ", "\n"]))


@pytest.fixture(scope="module")
def ort_engine(ws):
    eng = GeepEngine.load(ws["export"], "onnxruntime", threads=1)
    yield eng
    eng.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(CHARS, max_size=40), min_size=1, max_size=4))
def test_fuzz_predict_over_any_unicode(ort_engine, texts) -> None:
    """Any list of strings, lone surrogates included: a clean DataError or a finite answer for every row."""
    try:
        res = ort_engine.predict(texts)
    except DataError:
        return
    assert len(res) == len(texts) and np.isfinite(res.probabilities).all()
    assert set(res.depths.tolist()) <= {1, 2, 3} and len(res.predictions) == len(texts)


# -- 12. smaller CLI issues ----------------------------------------------------------------------------------------------
def test_small_cli_issues(ws, tmp_path, capsys) -> None:
    base = ["--export", str(ws["export"]), "--data", str(ws["data"]), "--no-progress"]
    assert main(["bench", *base, "--methods", ""]) == 1
    assert "names no method" in capsys.readouterr().err
    assert main(["predict", "--export", str(ws["export"]), "--text", "good", "--precision", "tf32",
                 "--backend", "onnxruntime"]) == 1
    assert "torch backend only" in capsys.readouterr().err
    assert main(["predict", "--export", str(ws["export"]), "--input", str(tmp_path)]) == 1
    assert "is a directory; give a file" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path), "--data", str(ws["data"])]) == 1
    assert "is a directory; give the checkpoint file" in capsys.readouterr().err
    assert main(["predict", "--export", str(ws["ckpt"]), "--text", "good"]) == 1
    err = capsys.readouterr().err
    assert "is a file; give the export folder" in err and "--out" in err
    assert main(["calibrate", "--checkpoint", str(ws["ckpt"]), "--data", str(ws["data"]), "--out",
                 str(tmp_path / "t.npz"), "--tau", "0.2"]) == 1
    assert "--tau sets the entropy threshold" in capsys.readouterr().err


def test_large_predict_shows_progress_and_gives_the_same_answers(ws, monkeypatch, capsys) -> None:
    import geep_deploy.cli.predict as predict_cli

    monkeypatch.setattr(predict_cli, "CHUNK", 4)
    texts = [f"the film was {w} indeed" for w in ("good", "bad", "fine", "dull", "great", "awful", "nice")] * 2
    with GeepEngine.load(ws["export"], "onnxruntime") as eng:
        whole = eng.predict(texts)
        chunked = predict_cli.predict_with_progress(eng, texts, None, 64, progress=True)
    np.testing.assert_allclose(chunked.logits, whole.logits, atol=1e-5)
    assert chunked.depths.tolist() == whole.depths.tolist()
    assert "predict" in capsys.readouterr().err


def test_export_of_a_model_giving_nan_names_the_cause(ws, tmp_path) -> None:
    ckpt = load_checkpoint(ws["ckpt"])
    with torch.no_grad():
        ckpt.model.heads[0].dense.weight.fill_(float("nan"))
    with pytest.raises(ExportError, match="gives NaN/inf outputs"):
        export_checkpoint(ckpt, tmp_path / "e", segments=False, progress=False)
    assert not list(tmp_path.iterdir())


def test_format_1_safetensors_with_a_corrupted_header_is_named(ws, tmp_path) -> None:
    """Format-1 exports kept a second copy of the weights as model.safetensors; with verify=False a damaged
    header used to raise safetensors' own error."""
    from safetensors.torch import save_file

    out = _copy(ws, tmp_path)
    ckpt = load_checkpoint(ws["ckpt"])
    st = out / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ckpt.model.state_dict().items()}, str(st))

    def to_v1(m: dict) -> None:
        as_old_manifest(m, 1)
        m.pop(SELF_HASH, None)
        for a in m["artifacts"]:
            if a["kind"] == "model":
                a.pop("tensors")
                a.update(file="model.safetensors", sha256=sha256_file(st))

    edit_manifest(out, to_v1, rehash=False)
    with GeepEngine.load(out, "torch", verify=False) as eng:
        eng.predict(["good"])
    st.write_bytes(b"\xff" * 8 + st.read_bytes()[8:])
    with pytest.raises(ArtifactError, match=r"model\.safetensors cannot be read"):
        GeepEngine.load(out, "torch", verify=False)
