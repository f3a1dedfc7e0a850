"""The real loader end to end on a tiny export: GeepEngine.load per backend, and the bench/predict commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from models import sst2_slice, tiny_table_export

from geep_deploy.cli import main
from geep_deploy.errors import ArtifactError, ConfigError
from runtime.artifacts import load_export
from runtime.engine import GeepEngine
from runtime.options import LoadOptions
from runtime.predictor import ExitPredictor

REQUIRED = {"method", "backend", "device", "precision", "batch_size", "accuracy", "flops_speedup", "wall_speedup",
            "samples_per_s"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """A 40-row dev / 60-row train slice of the bundled SST-2 data, copied into tmp."""
    return sst2_slice(tmp_path_factory.mktemp("data"), train=60, dev=40)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_data) -> Path:
    return tiny_table_export(tmp_path_factory.mktemp("export"), tiny_data)


def test_load_backends_agree_and_use_the_table(tiny_export):
    texts = ["a gorgeous , witty , seductive movie .", "bad", "it never fails to engage us ."]
    results = {}
    for backend in ("onnxruntime", "torch"):
        with GeepEngine.load(tiny_export, backend=backend) as eng:
            assert eng.info["backend"] == backend and sorted(eng.engines) == [1, 2, 3]
            results[backend] = eng.predict(texts)
            table = ExitPredictor.load(load_export(tiny_export).exit_table)
            assert results[backend].depths.tolist() == table.predict(eng.encoder.encode(texts).ids).tolist()
    np.testing.assert_allclose(results["onnxruntime"].logits, results["torch"].logits, atol=1e-4)
    with GeepEngine.load(tiny_export, backend="auto") as eng:
        assert eng.info["backend"] == "onnxruntime" and eng.info["provider"] == "CPUExecutionProvider"
    with GeepEngine.load(tiny_export, LoadOptions(backend="torch")) as eng:  # options passed positionally
        assert eng.info["backend"] == "torch"
        np.testing.assert_allclose(eng.predict(texts).logits, results["torch"].logits, atol=1e-6)


def test_load_errors(tmp_path, tiny_export):
    with pytest.raises(ArtifactError):
        GeepEngine.load(tmp_path)
    with pytest.raises(ArtifactError, match="no depth artifact.*precision=int8"):
        GeepEngine.load(tiny_export, backend="onnxruntime", precision="int8")
    with pytest.raises(ConfigError, match="both as its second argument and as options="):
        GeepEngine.load(tiny_export, LoadOptions(), options=LoadOptions())


@pytest.mark.parametrize("cmd", ["bench", "predict"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--export" in out and "Example" in out  # "Example:" or "Example (what writes the files it names):"


def test_bench_cli_writes_records_and_plot(tiny_export, tiny_data, tmp_path, capsys):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    rc = main(["bench", "--export", str(tiny_export), "--data", str(tiny_data), "--batch-sizes", "4,16",
               "--methods", "geep,geep-pool,geep:0+0,fastbert:0.3,pabee:2,static:1", "--repeats", "2", "--threads", "1",
               "--json", str(out), "--plot", str(png), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "fastbert:0.3" in text and "wall x" in text
    result = json.loads(out.read_text())
    assert result["machine"]["cpu_count"] >= 1 and "onnxruntime" in result["machine"]
    recs = result["records"]
    assert len(recs) == 2 * 7  # full added automatically
    for bs in (4, 16):  # pooling changes the batches, not the answers: same predicted depths and accuracy
        g, gp = (next(r for r in recs if r["method"] == m and r["batch_size"] == bs) for m in ("geep", "geep-pool"))
        assert g["accuracy"] == gp["accuracy"] and g["mean_depth"] == gp["mean_depth"]
    geep0 = [r for r in recs if r["method"] == "geep:0+0"]
    assert all(r["mean_depth"] == 1 for r in geep0)  # quantile 0: the smallest depth, every row
    for r in recs:
        assert REQUIRED <= r.keys() and 0 <= r["accuracy"] <= 1 and r["repeats"] == 2
        assert r["heads_from"] == "same-export"
    fulls = [r for r in recs if r["method"] == "full"]
    assert all(r["wall_speedup"] == 1.0 and r["flops_speedup"] == 1.0 for r in fulls)
    static1 = next(r for r in recs if r["method"] == "static:1")
    assert static1["flops_speedup"] > 2 and static1["mean_depth"] == 1
    assert png.stat().st_size > 1000


def test_bench_baseline_export_and_bad_args(tiny_export, tiny_data, tmp_path, capsys):
    out = tmp_path / "b.json"
    rc = main(["bench", "--export", str(tiny_export), "--data", str(tiny_data), "--batch-sizes", "8",
               "--methods", "full,fastbert:0.5", "--baseline-export", f"fastbert={tiny_export}", "--repeats", "1",
               "--json", str(out), "--no-progress"])
    assert rc == 0
    fb = next(r for r in json.loads(out.read_text())["records"] if r["family"] == "fastbert")
    assert fb["heads_from"] == str(tiny_export)
    assert main(["bench", "--export", str(tiny_export), "--data", str(tiny_data), "--methods", "medusa"]) == 1
    assert "unknown method 'medusa'" in capsys.readouterr().err
    assert main(["bench", "--export", str(tiny_export), "--data", str(tiny_data),
                 "--baseline-export", "fastbert"]) == 1
    assert "expects NAME=DIR" in capsys.readouterr().err


def test_bench_entropy_times_the_served_entropy_dispatch(tiny_export, tiny_data, tmp_path, capsys):
    """``entropy:T`` runs `GeepEngine.with_entropy` (what `serve` runs on an --entropy export) and answers exactly
    as ``fastbert:T``, the bench's own walk under the same rule on the same heads."""
    out = tmp_path / "e.json"
    assert main(["bench", "--export", str(tiny_export), "--data", str(tiny_data), "--batch-sizes", "8",
                 "--methods", "full,entropy:0.5,fastbert:0.5", "--repeats", "1", "--json", str(out),
                 "--no-progress"]) == 0
    recs = {r["method"]: r for r in json.loads(out.read_text())["records"]}
    for key in ("accuracy", "mean_depth", "depth_histogram", "flops_speedup"):
        assert recs["entropy:0.5"][key] == recs["fastbert:0.5"][key], key
    assert recs["entropy:0.5"]["family"] == "entropy" and recs["entropy:0.5"]["heads_from"] == "same-export"
    # bare `entropy` takes the export's own threshold; this export was made without --entropy
    capsys.readouterr()
    assert main(["bench", "--export", str(tiny_export), "--data", str(tiny_data), "--batch-sizes", "8",
                 "--methods", "full,entropy", "--repeats", "1", "--json", str(tmp_path / "bare.json"),
                 "--no-progress"]) == 1
    assert "method=entropy: failed" in capsys.readouterr().err
    errors = json.loads((tmp_path / "bare.json").read_text())["errors"]
    assert [e["method"] for e in errors] == ["entropy"] and "export with --entropy" in errors[0]["reason"]
    assert main(["bench", "--export", str(tiny_export), "--data", str(tiny_data), "--methods", "entropy:2"]) == 1
    assert "entropy:T needs 0 <= T <= 1" in capsys.readouterr().err


def test_predict_cli(tiny_export, tmp_path, capsys):
    assert main(["predict", "--export", str(tiny_export), "--text", "a charming journey", "--text", "dull",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["predictions"]) == 2 and out["engine"]["backend"] == "onnxruntime"
    assert set(out["predictions"][0]) == {"label", "label_id", "probabilities", "depth"}
    tsv = tmp_path / "in.tsv"
    tsv.write_text("label\ttext\n1\tgood fun\n0\tawful\n")
    assert main(["predict", "--export", str(tiny_export), "--input", str(tsv), "--backend", "torch"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and "depth" in lines[0] and lines[2].startswith("# torch cpu fp32")
    assert lines[3].startswith("# accuracy ") and "of 2 labelled rows" in lines[3]  # the file has labels
    assert main(["predict", "--export", str(tiny_export), "--text", "a charming journey", "--text", "dull",
                 "--exact", "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert [p["depth"] for p in exact["predictions"]] == [3, 3] and exact["engine"]["predictor"] == "exact (depth L)"
    assert main(["predict", "--export", str(tiny_export), "--text", "x", "--exact", "--depth", "1"]) == 1
    assert "cannot be combined" in capsys.readouterr().err
    assert main(["predict", "--export", str(tiny_export), "--text", "a", "--text-b", "b", "--text-b", "c"]) == 1
    assert "give one each" in capsys.readouterr().err
    assert main(["predict", "--export", str(tiny_export), "--text", "  "]) == 1
    assert "empty" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\tsentence\n1\tx\n")
    assert main(["predict", "--export", str(tiny_export), "--input", str(bad)]) == 1
    assert "names no `text`" in capsys.readouterr().err


def test_fusion_bench_times_both_settings_on_a_real_export(tiny_export, tiny_data):
    """bench/fusion_bench.py's measurement on a tiny export: every contender timed, the rewrite found only in the
    hidden-state graphs, and off in the runtime's default sessions."""
    from geep_deploy.bench.fusion_bench import run_fusion_bench

    r = run_fusion_bench(str(tiny_export), str(tiny_data), batch_size=16, repeats=1, threads=1, command="test")
    p = r["passes"]
    assert set(p) >= {"full", "full_again", "full_fused", "layerwise", "layerwise_fused", "ratios"}
    assert all(p[k]["median_s"] > 0 and len(p[k]["seconds"]) == 1 for k in p if k != "ratios")
    assert r["fused_nodes_with_rewrite"]["layer1"] > 0 and r["fused_nodes_with_rewrite"]["depth3"] == 0
    assert r["fused_nodes_default"] == {"depth3": 0, "layer1": 0}
    assert r["config"]["default_disabled_optimizers"] == ["SkipLayerNormFusion"] and r["config"]["rows"] == 40


TEXT = st.text(st.characters(blacklist_characters="|"), max_size=200)


@given(TEXT, st.one_of(st.none(), TEXT))
@settings(max_examples=60, deadline=None)
def test_predict_shows_both_halves_of_a_pair_and_cuts_long_text(a: str, b: str | None) -> None:
    from geep_deploy.cli.predict import shown_text

    shown = shown_text(a, b)
    assert len(shown) <= 60 + (4 if b is not None else 0)
    if b is None:
        assert shown == a or (len(a) > 60 and shown.endswith("...") and a.startswith(shown[:-3]))
    else:
        left, _, right = shown.partition(" || ")
        assert a.startswith(left.removesuffix("...")) and b.startswith(right.removesuffix("..."))
