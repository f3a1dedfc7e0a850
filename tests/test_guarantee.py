"""The consistency guarantee end to end on the tiny checkpoint: calibrate --max-disagree, export, manifest,
GeepEngine.guarantee, predict(exact=True), and the service's /readyz and /metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from models import sst2_slice, tiny_checkpoint

from geep_deploy.cli import main
from runtime.guarantee import guarantee_problems, served_guarantee
from runtime.manifest import read_manifest

EPS = 0.1  # min_rows(0.1, 0.1) = 22 rows; the 40 dev rows below are enough


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 train / 40 dev rows of the bundled SST-2 slice."""
    return sst2_slice(tmp_path_factory.mktemp("data"), train=60, dev=40)


@pytest.fixture(scope="module")
def export(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """calibrate --predictor probe --max-disagree, then export with the table and the probe."""
    tmp = tmp_path_factory.mktemp("guarantee")
    ckpt, table = tmp / "t.pt", tmp / "table.npz"
    tiny_checkpoint(ckpt)
    assert main(["calibrate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(table),
                 "--predictor", "probe", "--max-disagree", str(EPS), "--confidence", "0.9"]) == 0
    calib = json.loads((tmp / "table.probe.json").read_text())["calibration"]
    out = tmp / "export"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--exit-table", str(table),
                 "--probe", str(tmp / "table.probe.json"), "--no-segments", "--quiet"]) == 0
    return out, calib


def test_calibrate_certifies_and_records_the_guarantee(export: tuple[Path, dict]) -> None:
    _, calib = export
    g = calib["guarantee"]
    assert calib["mode"] == "max_disagree" and g["max_disagree"] == EPS and g["confidence"] == pytest.approx(0.9)
    assert g["calibration_rows"] == 40 and g["chains"] == 1 and g["knob"] is not None
    # the chosen point is the certified knob, and its observed disagreement is within the certified budget
    assert (calib["chosen"]["risk"], calib["chosen"]["escalate"]) == (g["knob"]["risk"], g["knob"]["escalate"])
    assert calib["chosen"]["certified"] and g["calibration_disagreement"] <= g["certified_bound"] <= EPS


def test_manifest_engine_and_exact(export: tuple[Path, dict]) -> None:
    from runtime import GeepEngine

    out, calib = export
    m = read_manifest(out)  # checksum and schema hold with the guarantee in
    assert m["probe"]["guarantee"] == calib["guarantee"] and m["exit_table"]["guarantee"]["max_disagree"] == EPS
    with GeepEngine.load(out, "onnxruntime", threads=1) as eng:
        g = eng.guarantee
        assert g is not None and g["predictor"] == "probe" and g["max_disagree"] == EPS
        other = 0.5 if g["knob"]["risk"] != 0.5 else 0.3
        assert eng.with_probe(risk=other).guarantee is None  # other knobs: no guarantee
        texts = ["a fine film", "bad", "the plot goes nowhere , slowly"]
        exact = eng.predict(texts, exact=True)
        full = eng.predict(texts, depths=[3, 3, 3])
        assert exact.depths.tolist() == [3, 3, 3]
        np.testing.assert_allclose(exact.probabilities, full.probabilities, atol=1e-6)
        from geep_deploy.errors import ConfigError

        with pytest.raises(ConfigError, match="exact=True runs every row at depth L"):
            eng.predict(texts, depths=[1, 1, 1], exact=True)
        _service_reports_guarantee(eng, texts)
    with GeepEngine.load(out, "onnxruntime", threads=1, predictor="table") as eng:
        assert eng.guarantee is not None and eng.guarantee["predictor"] == "table"
        assert eng.with_predictor(eng.predictor.with_params(0.01, 0)).guarantee in (None, eng.guarantee)


def _service_reports_guarantee(engine, texts: list[str]) -> None:
    from geep_deploy.service.app import LocalService, build_app
    from geep_deploy.service.metrics import parse_samples
    from geep_deploy.service.schema import ClassifyRequest

    svc = LocalService(engine)
    app = build_app(lambda: svc)
    routes = {r.path: r.endpoint for r in app.routes if hasattr(r, "endpoint")}

    async def go() -> tuple[dict, dict, dict]:
        await svc.start()
        try:
            ready = await routes["/readyz"]()
            exact = await routes["/v1/classify"](ClassifyRequest(text=texts, exact=True))
            plain = await routes["/v1/classify"](ClassifyRequest(text=texts))
        finally:
            await svc.batcher.close()
        return ready, exact, plain

    ready, exact, plain = asyncio.run(go())
    assert ready["model"]["guarantee"] == engine.guarantee
    assert [r["depth"] for r in exact["predictions"]] == [3, 3, 3]
    assert [r["depth"] for r in plain["predictions"]] == engine.predict(texts).depths.tolist()
    samples = parse_samples(svc.metrics.render())
    assert samples["geep_guarantee_certified"] == 1 and samples["geep_guarantee_max_disagree"] == EPS
    assert samples["geep_guarantee_calibration_rows"] == 40


def test_calibrate_refusals(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "t.pt"
    tiny_checkpoint(ckpt)
    base = ["calibrate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "x.npz")]
    assert main([*base, "--max-disagree", "0.01", "--predictor", "probe"]) == 1  # 40 dev rows; 1% at 90%: 230
    err = capsys.readouterr().err
    assert "40 dev rows cannot certify disagreement <= 0.01 at confidence 0.9" in err and "at least 230 rows" in err
    assert main([*base, "--max-disagree", "0.01", "--predictor", "table"]) == 1  # 3 margin chains at 0.1 / 3 each
    assert "(delta 0.1 split over 3 knob chains)" in (err := capsys.readouterr().err) and "at least 339 rows" in err
    assert main([*base, "--confidence", "0.95"]) == 1
    assert "add --max-disagree" in capsys.readouterr().err
    assert main([*base, "--max-disagree", "1.5"]) == 1
    assert "--max-disagree" in (err := capsys.readouterr().err) and "1.5" in err
    assert main([*base, "--max-disagree", "0.1", "--calib-split", "dev"]) == 1
    assert "must not also fit" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one budget at a time (argparse)
        main([*base, "--max-disagree", "0.1", "--max-drop", "1"])


def test_guarantee_records_are_checked_and_matched() -> None:
    good = {"max_disagree": 0.02, "confidence": 0.9, "calibration_rows": 500, "knob": {"risk": 0.3, "escalate": None}}
    assert guarantee_problems("probe.guarantee", good) == [] and guarantee_problems("x", None) == []
    bad = guarantee_problems("probe.guarantee", {"max_disagree": 2, "confidence": True, "calibration_rows": 0})
    assert len(bad) == 4 and any("knob is missing" in b for b in bad)
    m = {"probe": {"file": "probe.json", "guarantee": good}, "exit_table": {"file": "t.npz"}}
    assert served_guarantee(m, "probe", {"risk": 0.3, "escalate": None})["predictor"] == "probe"
    assert served_guarantee(m, "probe", {"risk": 0.3, "escalate": 0.6}) is None
    assert served_guarantee(m, "table", {"quantile": 0.9, "margin": 0}) is None  # none recorded (old export)
    assert served_guarantee(m, None, {}) is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.booleans(), st.booleans()), min_size=1, max_size=8))
def test_exact_requests_get_their_own_calls_and_their_own_rows(spec: list[tuple[int, bool, bool]]) -> None:
    from geep_deploy.service.pooling import Rows, plan_pool, scatter

    pool = [Rows(tuple(f"r{i}.{j}" for j in range(n)), tuple("b" for _ in range(n)) if pair else None, exact)
            for i, (n, pair, exact) in enumerate(spec)]
    calls = plan_pool(pool)
    assert len({(c.texts_b is not None, c.exact) for c in calls}) == len(calls)
    for c in calls:  # every request in a call shares the call's kind
        assert all(pool[s.request].exact == c.exact and pool[s.request].is_pair == (c.texts_b is not None)
                   for s in c.spans)
    back = scatter(calls, [list(c.texts) for c in calls], len(pool))
    assert back == [list(r.texts) for r in pool]
