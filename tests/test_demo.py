"""The demo's deploy half runs GEEP with the product's default predictor on the CPU (``DEFAULT_PREDICTOR["cpu"]``),
whichever it is: calibrated by calibrate's own calls, exported with that file, benched, served, and named in the
printed report, the JSON and the README block rendered from it. Tiny random checkpoints; no training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from models import tiny_checkpoint

from geep_deploy.cli import demo_deploy
from geep_deploy.data import TextDataset, bundled_data_dir, load_split
from geep_deploy.errors import ConfigError
from geep_deploy.names import ENTROPY, PROBE, TABLE


def _rows(ds: TextDataset, a: int, b: int) -> TextDataset:
    return TextDataset(ds.texts_a[a:b], None, ds.labels[a:b], ds.label_names, ds.source)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three tiny checkpoints where the demo trains them, and its rows: 40 calibrate, 30 tune, 30 are reported.
    Shared by both kinds: the second run reuses `full`'s and FastBERT's exports and must rebuild GEEP's."""
    out = tmp_path_factory.mktemp("demo")
    ckpts = {m: tiny_checkpoint(out / f"{m}.pt", method=m, seed=i) for i, m in enumerate(("full", "geep", "fastbert"))}
    data = bundled_data_dir()
    train, dev = load_split(data, "train"), load_split(data, "dev")
    return {"out": out, "ckpts": ckpts, "pool": _rows(train, 0, 40), "tune": _rows(dev, 0, 30),
            "report": _rows(dev, 30, 60)}


@pytest.mark.parametrize("kind", [PROBE, ENTROPY])
def test_deploy_half_runs_geep_with_the_cpu_default(kind: str, workspace: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from geep_deploy import names
    from geep_deploy.reporting.blocks_bench import DEMO, block_demo
    from geep_deploy.reporting.sources import Results
    from runtime.artifacts import load_export

    monkeypatch.setitem(names.DEFAULT_PREDICTOR, "cpu", kind)
    out = workspace["out"]
    assert demo_deploy.default_predictor(out) == kind
    phases: list[str] = []
    d = demo_deploy.deploy_and_report(out, workspace["ckpts"], workspace["pool"], workspace["tune"],
                                      workspace["report"], fresh=False, phase=lambda name, _title: phases.append(name))
    assert phases == ["calibrate", "export", "bench_b1", "bench_b64", "serve"]
    assert d["predictor"] == kind and d["served"]["kind"] == kind  # what the served engine dispatched by
    assert load_export(out / "export_geep").predictor == kind
    assert all(d["knobs"]["geep"][w].startswith(f"{kind}:") for w in ("budget", "fast"))
    cal = (out / "exit_table.probe.json") if kind == PROBE else (out / "exit_table.entropy.json")
    chosen = json.loads(cal.read_text())["calibration"]["chosen"]
    assert d["knobs"]["geep"]["budget"] == chosen["knob"]  # the point calibrate chose is the one benched
    geep_rows = [r for r in d["table"] if r["method"] == "geep"]
    assert [r["row"] for r in geep_rows][0] == f"GEEP's default ({kind}), knob at the budget"
    if kind == ENTROPY:  # benched as the same walk on GEEP's own export
        methods = {r["method"] for r in d["bench"]["64"]}
        assert demo_deploy.bench_method(d["knobs"]["geep"]["budget"]) in methods
        assert all(m.startswith("fastbert:") for m in methods - {"full", f"static:{d['num_layers']}"})

    # the printed report, the JSON and the README block rendered from it name the predictor
    d.update({"command": "geep-deploy demo", "settings": {"epochs": 1, "train_rows": 1, "pool_rows": 40,
                                                          "tune_rows": 30, "report_rows": 30, "max_len": 64},
              "phases_s": {p: 1.0 for p in phases}, "total_s": 5.0, "cpu_count": 2,
              "load_average": {"before": [0.5, 0.5, 0.5], "after": [0.5, 0.5, 0.5]}})
    results = out / f"results_{kind}"
    demo_deploy.finish(d, results / DEMO, results / "demo.png")
    printed = capsys.readouterr().out
    assert f"exit predictor: {kind}" in printed and f"GEEP's default ({kind}) is" in printed
    assert json.loads((results / DEMO).read_text())["predictor"] == kind
    block = "\n".join(block_demo(Results(results)))
    assert f"| GEEP's default ({kind}), knob at the budget |" in block and f"GEEP's default ({kind}) is" in block


def test_results_without_a_predictor_are_the_probe_and_a_table_default_is_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from geep_deploy import names

    assert demo_deploy.predictor({"served": {"kind": PROBE}}) == PROBE  # the committed demo JSON predates the key
    assert demo_deploy.bench_method("probe:0.1") == "probe:0.1"
    assert demo_deploy.bench_method("entropy:0.3").startswith("fastbert:0.3@")
    monkeypatch.setitem(names.DEFAULT_PREDICTOR, "cpu", TABLE)
    with pytest.raises(ConfigError, match="the demo shows GEEP with the probe or the entropy exit"):
        demo_deploy.default_predictor(tmp_path)
