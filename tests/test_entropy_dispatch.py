"""The entropy dispatch (predictor ``entropy``) end to end on a tiny export: the same walk as the bench's FastBERT,
its extremes, views, the guarantee, refusals, and ``calibrate --predictor entropy`` through the CLI.

The fixture model is the tiny random BERT with its exit heads scaled up, so that its heads are sure of some rows
and not of others: under a middle threshold rows leave at every depth.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from models import TEXTS, real_tokenizer_json, sst2_slice, tiny_checkpoint, tiny_model
from runtime_helpers import on_threads

from engines.base import EngineStateError
from engines.ort import OrtEngine
from export.bundle import export_checkpoint
from export.manifest import write_manifest
from export.options import ExportOptions
from geep_deploy.bench.baselines import MethodRunner
from geep_deploy.bench.methods import MethodSpec
from geep_deploy.checkpoint import Checkpoint
from geep_deploy.cli import main
from geep_deploy.encoding import TextEncoder
from geep_deploy.errors import ArtifactError, ConfigError
from geep_deploy.names import DEFAULT_PREDICTOR, ENTROPY, PREDICTOR_KINDS, PROBE
from runtime.artifacts import load_export
from runtime.engine import EngineParts, EngineView, GeepEngine
from runtime.layerwise import EngineSegments, EntropyExit
from runtime.loading import build_parts, open_segments
from runtime.manifest import MANIFEST
from runtime.options import LoadOptions
from runtime.predictor import build_predictor

L = 3
T = 0.9  # with the scaled heads: some rows leave after layer 1, some after 2, the rest run to 3
ROWS = TEXTS * 3


def confident_model():
    """The tiny model with every exit head scaled 300x: normalised entropies spread over (0, 1)."""
    model = tiny_model()
    with torch.no_grad():
        for h in model.heads:
            h.classifier.weight.mul_(300.0)
            h.classifier.bias.mul_(300.0)
    return model


def _ckpt(model, method: str = "geep") -> Checkpoint:
    return Checkpoint(model=model, method=method, label_names=["neg", "pos"], tokenizer_json=real_tokenizer_json(),
                      max_len=64)


GUARANTEE = {"max_disagree": 0.1, "confidence": 0.9, "calibration_rows": 40, "certified_bound": 0.08,
             "knob": {"tau": T}}


@pytest.fixture(scope="module")
def model():
    return confident_model()


@pytest.fixture(scope="module")
def table(model, tmp_path_factory) -> Path:
    """A random exit table for the model (the exports' fallback dispatch)."""
    enc = TextEncoder(real_tokenizer_json(), 64)
    rows = enc.encode(TEXTS * 3).ids
    exits = np.random.default_rng(0).integers(1, L + 1, len(rows))
    pred = build_predictor(rows, exits, L, sorted(enc.special_ids))
    pred.checkpoint = _ckpt(model).weights_sha256
    return pred.save(tmp_path_factory.mktemp("table") / "t.npz")


@pytest.fixture(scope="module")
def export(model, table, tmp_path_factory) -> Path:
    """An export dispatching by the entropy exit at T (with a guarantee record), segment graphs by default."""
    out = tmp_path_factory.mktemp("entropy") / "export"
    record = {"threshold": T, "num_layers": L, "checkpoint": None, "calibration": {"guarantee": GUARANTEE}}
    return export_checkpoint(_ckpt(model), out, exit_table=table, entropy=record, progress=False).root


@pytest.fixture(scope="module")
def no_segments(model, table, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("noseg") / "export"
    return export_checkpoint(_ckpt(model), out, exit_table=table, segments=False, progress=False).root


def test_names_and_default_predictor() -> None:
    assert ENTROPY == "entropy" and PREDICTOR_KINDS == ("table", "probe", "entropy")
    assert DEFAULT_PREDICTOR["cuda"] == PROBE  # the cpu value follows the measurement (test_default_predictor.py)


def test_manifest_records_the_entropy_exit(export) -> None:
    m = json.loads((export / MANIFEST).read_text())
    assert m["format_version"] == 5 and m["predictor"] == ENTROPY
    assert m["entropy"] == {"threshold": T, "num_layers": L, "calibration": {}, "guarantee": GUARANTEE}
    bundle = load_export(export)
    assert bundle.predictor == ENTROPY and bundle.entropy["threshold"] == T


def test_same_answers_as_the_bench_fastbert(export) -> None:
    """The product's entropy dispatch and the bench's ``fastbert`` on the same export, rows and cuts: the same
    walk, so the same depths, heads and (bit for bit) logits."""
    for cost in ("auto", None):
        opts = LoadOptions(backend="onnxruntime", threads=1, predictor="table", call_cost=cost)
        parts = build_parts(export, opts)
        eng = GeepEngine.from_parts(parts, call_cost=opts.call_cost)
        seg = open_segments(parts, "onnxruntime", "cpu", "fp32", threads=1)
        try:
            enc = eng.encoder.encode(ROWS)
            bench = MethodRunner(MethodSpec("fastbert", T), eng, seg).run_batch(enc)
            out = eng.with_entropy(T).dispatch(enc, batch_size=len(enc))
            assert len(set(out.depths.tolist())) == L  # rows leave at every depth
            np.testing.assert_array_equal(out.depths, bench.depths)
            np.testing.assert_array_equal(out.heads, bench.heads)
            np.testing.assert_array_equal(out.logits, bench.logits)
            assert not out.escalated.any() and (out.layers == out.depths).all()
        finally:
            seg.close()
            eng.close()


def test_loaded_dispatch_extremes_and_exact(export) -> None:
    with GeepEngine.load(export, "onnxruntime", threads=1) as eng:
        assert eng.info["predictor"] == ENTROPY and eng.info["entropy"]["threshold"] == T
        assert "dispatch=entropy" in repr(eng)
        res = eng.predict(ROWS)
        view = eng.with_entropy(T).predict(ROWS)
        np.testing.assert_array_equal(res.depths, view.depths)
        np.testing.assert_array_equal(res.logits, view.logits)
        assert res.escalated is None and (res.heads == res.depths).all()
        small = eng.predict(ROWS, batch_size=4)  # calls of at most 4 rows: the same answers
        np.testing.assert_array_equal(small.depths, res.depths)
        np.testing.assert_allclose(small.logits, res.logits, atol=1e-5)
        exact = eng.predict(ROWS, exact=True)
        assert exact.depths.tolist() == [L] * len(ROWS)
        zero = eng.with_entropy(0.0).predict(ROWS)  # no row is sure enough: every row at depth L
        assert zero.depths.tolist() == [L] * len(ROWS) and zero.heads.tolist() == [L] * len(ROWS)
        np.testing.assert_allclose(zero.logits, exact.logits, atol=1e-5)
        one = eng.with_entropy(1.0).predict(ROWS)  # every row leaves after layer 1
        assert one.depths.tolist() == [1] * len(ROWS)
        np.testing.assert_allclose(one.logits, eng.predict(ROWS, depths=[1] * len(ROWS)).logits, atol=1e-5)
        for k in (1, 2):  # rows that left at depth k carry depth k's answer
            rows = np.flatnonzero(res.depths == k)
            at_k = eng.predict([ROWS[i] for i in rows], depths=[k] * len(rows))
            np.testing.assert_allclose(res.logits[rows], at_k.logits, atol=1e-5)
    with GeepEngine.load(export, "torch") as tch:  # the ExitBert segments: the same exits
        t = tch.predict(ROWS)
        np.testing.assert_array_equal(t.depths, res.depths)
        np.testing.assert_allclose(t.logits, res.logits, atol=1e-4)


def test_guarantee_follows_the_served_threshold(export) -> None:
    with GeepEngine.load(export, "onnxruntime", threads=1) as eng:
        g = eng.guarantee
        assert g is not None and g["predictor"] == ENTROPY and g["knob"] == {"tau": T}
        assert eng.with_entropy(T).guarantee == g
        assert eng.with_entropy(0.5).guarantee is None  # another threshold: no guarantee
    with GeepEngine.load(export, "onnxruntime", threads=1, predictor="table") as eng:
        assert eng.guarantee is None and eng.info["predictor"] == "table"


def test_view_borrows_the_segments_and_cannot_close_them(export) -> None:
    eng = GeepEngine.load(export, "onnxruntime", threads=1, predictor="table")  # segments opened on first use
    view = eng.with_entropy(T)
    assert isinstance(view, EngineView) and not hasattr(view, "close") and not hasattr(view, "__exit__")
    with pytest.raises(TypeError):
        with view:  # type: ignore[attr-defined]
            pass
    first = view.predict(TEXTS)
    del view
    gc.collect()
    again = eng.with_entropy(T).with_predictor(eng.predictor).with_entropy(T)  # views of views borrow too
    np.testing.assert_array_equal(again.predict(TEXTS).logits, first.logits)
    eng.close()
    with pytest.raises(EngineStateError):
        again.predict(TEXTS)
    with pytest.raises(EngineStateError):
        eng.with_entropy(T)


def test_segments_open_once_across_threads(export) -> None:
    """Views on several threads at once: the owner opens its segment engines once, and every answer is the
    serial one."""
    bundle = load_export(export)
    opened = []

    def opener() -> EngineSegments:
        opened.append(1)
        embed = OrtEngine(bundle.find(kind="embed").path, threads=1).load()
        return EngineSegments(embed, [OrtEngine(bundle.find(kind="layer", depth=k).path, threads=1).load()
                                      for k in range(1, L + 1)])

    with GeepEngine.load(export, "onnxruntime", threads=1) as ref:
        want = ref.predict(ROWS)
        parts = ref._parts
    eng = GeepEngine(EngineParts(parts.encoder, None, {L: OrtEngine(bundle.find(depth=L).path).load()},
                                 ["neg", "pos"], segments=opener), call_cost=16.0)
    out = on_threads(list(range(4)), lambda _: eng.with_entropy(T).predict(ROWS))
    assert len(opened) == 1
    for r in out:
        np.testing.assert_array_equal(r.depths, want.depths)
        np.testing.assert_allclose(r.logits, want.logits, atol=1e-6)
    eng.close()


def test_threads_equal_serial(export) -> None:
    """Views with other thresholds and batch sizes on many threads at once answer as they do one at a time (the
    table and probe dispatches have the same test)."""
    with GeepEngine.load(export, "onnxruntime", threads=1) as eng:
        views = [eng.with_entropy(0.1), eng.with_entropy(0.5), eng.with_entropy(T)]
        rng = np.random.default_rng(0)
        jobs = [(views[j % 3], list(rng.choice(len(ROWS), 6)), int(rng.integers(1, 5))) for j in range(18)]
        serial = [v.predict([ROWS[i] for i in ix], batch_size=b) for v, ix, b in jobs]
        results = on_threads(jobs, lambda job: job[0].predict([ROWS[i] for i in job[1]], batch_size=job[2]))
    assert len({tuple(w.depths) for w in serial}) > 1  # the thresholds send rows to different depths
    for got, want in zip(results, serial):
        np.testing.assert_allclose(got.logits, want.logits, atol=1e-6)
        np.testing.assert_array_equal(got.depths, want.depths)


def test_the_bench_refuses_entropy_on_an_export_without_segments(no_segments, tmp_path) -> None:
    """Like the probe on an export without its graphs: refused up front with the export option that makes them,
    not a failed cell."""
    from geep_deploy.bench.harness import BenchConfig, run_bench

    data = sst2_slice(tmp_path / "data", train=8, dev=8)
    res = run_bench(BenchConfig(export=no_segments, data=data, split="dev", batch_sizes=(4,),
                                methods="full,entropy:0.5", repeats=1, progress=False))
    (refused,) = res["errors"]
    assert refused["method"] == "entropy:0.5" and refused["status"] == "refused"
    assert "Re-export without --no-segments" in refused["reason"]
    assert [r["method"] for r in res["records"]] == ["full"]


def test_bare_entropy_benches_the_exports_own_threshold(export, tmp_path) -> None:
    from geep_deploy.bench.harness import BenchConfig, run_bench

    data = sst2_slice(tmp_path / "data", train=8, dev=12)
    res = run_bench(BenchConfig(export=export, data=data, split="dev", batch_sizes=(4,),
                                methods=f"full,entropy,entropy:{T}", repeats=1, progress=False))
    assert res["errors"] == []
    recs = {r["method"]: r for r in res["records"]}
    for key in ("accuracy", "mean_depth", "depth_histogram", "flops_speedup"):
        assert recs["entropy"][key] == recs[f"entropy:{T:g}"][key], key


def test_refusals(export, no_segments, model, tmp_path) -> None:
    with GeepEngine.load(no_segments, "onnxruntime", threads=1) as eng:
        with pytest.raises(ConfigError, match="--no-segments"):
            eng.with_entropy(0.3)
    with pytest.raises(ConfigError, match="records no entropy-exit threshold"):
        GeepEngine.load(no_segments, "onnxruntime", predictor="entropy")
    with pytest.raises(ConfigError, match="fixed_depth runs every row at one depth"):
        LoadOptions(predictor="entropy", fixed_depth=2)
    with pytest.raises(ConfigError, match="tune the layer-1 probe dispatch, but this load dispatches by the entropy"):
        GeepEngine.load(export, "onnxruntime", risk=0.3)
    with GeepEngine.load(export, "onnxruntime", threads=1) as eng:
        with pytest.raises(ConfigError, match=r"threshold is a normalised entropy in \[0, 1\]"):
            eng.with_entropy(1.5)
        with pytest.raises(ConfigError, match="no probe dispatch"):
            eng.with_probe(0.3)
        bare = GeepEngine(EngineParts(eng.encoder, None, {L: OrtEngine(load_export(export).find(depth=L).path).load()},
                                      ["neg", "pos"]))
        with pytest.raises(ConfigError, match="has no segment engines"):
            bare.with_entropy(0.3)
        bare.close()
    with pytest.raises(ConfigError, match="--no-segments .* and --entropy exclude each other"):
        ExportOptions(entropy=EntropyExit(0.3), segments=False)
    with pytest.raises(ConfigError, match="give --probe or --entropy"):
        ExportOptions(entropy=EntropyExit(0.3), probe="p.json")
    with pytest.raises(ConfigError, match="a 'full' checkpoint has no early exits, so no entropy exit"):
        export_checkpoint(_ckpt(model, "full"), tmp_path / "full", entropy=EntropyExit(0.3), progress=False)
    with pytest.raises(ConfigError, match="chosen for 2 layers"):
        export_checkpoint(_ckpt(model), tmp_path / "two", progress=False,
                          entropy={"threshold": 0.3, "num_layers": 2, "checkpoint": None, "calibration": {}})
    bad = tmp_path / "bad"
    shutil.copytree(export, bad)
    m = json.loads((bad / MANIFEST).read_text())
    m["entropy"]["threshold"] = 1.5
    write_manifest(bad, {k: v for k, v in m.items() if k != "manifest_sha256"})
    with pytest.raises(ArtifactError, match=r"entropy.threshold must be a number in \[0, 1\]"):
        load_export(bad)
    del m["entropy"]
    write_manifest(bad, {k: v for k, v in m.items() if k != "manifest_sha256"})
    with pytest.raises(ArtifactError, match="predictor is 'entropy' but the manifest has no entropy"):
        load_export(bad)


# -- calibrate --predictor entropy through the CLI ------------------------------------------------------------

def test_calibrate_export_serve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = sst2_slice(tmp_path / "data", train=60, dev=40)  # 40 dev rows certify 10% at 90% (one chain)
    ckpt = tmp_path / "t.pt"
    tiny_checkpoint(ckpt)
    table, file = tmp_path / "table.npz", tmp_path / "table.entropy.json"
    assert main(["calibrate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(table),
                 "--predictor", "entropy", "--max-disagree", "0.1", "--confidence", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "entropy exit (40 dev rows" in out and f"wrote {file}" in out and table.is_file()
    assert "guarantee (entropy exit, 40 dev rows)" in out and "recommendation:" in out
    doc = json.loads(file.read_text())
    cal = doc["calibration"]
    assert doc["format"] == "geep-deploy-entropy-exit" and doc["num_layers"] == 3
    assert doc["threshold"] == cal["chosen"]["tau"] and cal["mode"] == "max_disagree"
    assert cal["guarantee"]["knob"] == {"tau": doc["threshold"]} and cal["guarantee"]["chains"] == 1
    assert [c["tau"] for c in cal["curve"]][0] == 0.0  # depth L is on the grid

    export = tmp_path / "export"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(export), "--exit-table", str(table),
                 "--entropy", str(file), "--quiet"]) == 0
    assert "the export dispatches by it" in capsys.readouterr().out
    m = json.loads((export / MANIFEST).read_text())
    assert m["predictor"] == ENTROPY and m["entropy"]["threshold"] == doc["threshold"]
    assert m["entropy"]["guarantee"] == cal["guarantee"]

    assert main(["predict", "--export", str(export), "--text", "a fine film", "--text", "bad", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["engine"]["predictor"] == ENTROPY and len(res["predictions"]) == 2
    assert main(["predict", "--export", str(export), "--text", "bad", "--predictor", "table", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["engine"]["predictor"] == "table"

    from test_guarantee import _service_reports_guarantee

    with GeepEngine.load(export, "onnxruntime", threads=1) as eng:
        g = eng.guarantee
        assert g is not None and g["predictor"] == ENTROPY and g["knob"] == {"tau": doc["threshold"]}
        _service_reports_guarantee(eng, ["a fine film", "bad", "the plot goes nowhere , slowly"])

    other = tmp_path / "other.npz"  # the same rules as the probe: an accuracy budget picks a threshold too
    assert main(["calibrate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(other),
                 "--predictor", "entropy", "--max-drop", "5"]) == 0
    assert json.loads((tmp_path / "other.entropy.json").read_text())["calibration"]["mode"] == "max_drop"
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "x"), "--entropy", str(file),
                 "--no-segments", "--quiet"]) == 1
    assert "exclude each other" in capsys.readouterr().err
    assert main(["calibrate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "y.npz"),
                 "--predictor", "entropy", "--escalation", "tune"]) == 1
    assert "add --predictor probe" in capsys.readouterr().err
    assert main(["calibrate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "y.npz"),
                 "--predictor", "probe", "--entropy-out", str(tmp_path / "y.json")]) == 1
    assert "add --predictor entropy" in capsys.readouterr().err


def test_calibrate_defaults_from_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """calibrate's --predictor comes from DEFAULT_PREDICTOR for its --device: the one place to switch it."""
    from geep_deploy import names
    from geep_deploy.cli.calibrate import derived_outputs, predictor_kind

    args = argparse.Namespace(predictor=None, device="cpu", out="runs/t.npz", probe_out=None, entropy_out=None)
    monkeypatch.setitem(names.DEFAULT_PREDICTOR, "cpu", PROBE)
    assert predictor_kind(args) == PROBE and list(derived_outputs(args)) == ["--probe-out"]
    monkeypatch.setitem(names.DEFAULT_PREDICTOR, "cpu", ENTROPY)
    assert predictor_kind(args) == ENTROPY and derived_outputs(args) == {"--entropy-out": Path("runs/t.entropy.json")}
    assert predictor_kind(argparse.Namespace(**{**vars(args), "device": "cuda"})) == PROBE
    assert predictor_kind(argparse.Namespace(**{**vars(args), "predictor": "table"})) == "table"
