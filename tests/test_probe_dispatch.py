"""The probe dispatch end to end on a tiny export: continuation graphs, answers, escalation, threads, old exports.

One export (3 layers, random weights, a random exit table, a hand-made probe that sends short rows to depth 1,
middle ones to 2 and long ones to 3) serves every test; tests that damage it work on a copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from models import TEXTS, as_old_manifest, real_tokenizer_json, tiny_checkpoint, tiny_model
from runtime_helpers import on_threads

from engines.base import EngineStateError
from engines.ort import OrtEngine
from engines.torch_engine import TorchEngine
from export.bundle import export_checkpoint
from export.manifest import file_entry, write_manifest
from export.trt_build import graph_profiles, plan_graphs
from geep_deploy.checkpoint import Checkpoint
from geep_deploy.cli import main
from geep_deploy.encoding import TextEncoder, pad_batch
from geep_deploy.errors import ArtifactError, ConfigError, TableError
from runtime.artifacts import load_export
from runtime.engine import EngineView, GeepEngine
from runtime.keys import pad_rows
from runtime.manifest import MANIFEST, SELF_HASH
from runtime.predictor import ExitPredictor, build_predictor
from runtime.probe import FEATURES, ProbeModel, probe_features

L = 3


def length_probe(layers: int = L, uses_table: bool = True) -> ProbeModel:
    """P(exit > k) rises with the row's length: about 8+ tokens go past depth 1, about 16+ past depth 2."""
    w = np.zeros((layers - 1, len(FEATURES) + 1))
    w[:, FEATURES.index("log_length")] = 4.0
    w[:, -1] = np.linspace(-8.0, -11.0, layers - 1)
    f = len(FEATURES)
    return ProbeModel(layers, np.zeros(f), np.ones(f), w, uses_table=uses_table)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(real_tokenizer_json(), 64)


def _ckpt(model) -> Checkpoint:
    return Checkpoint(model=model, method="geep", label_names=["neg", "pos"], tokenizer_json=real_tokenizer_json(),
                      max_len=64)


@pytest.fixture(scope="module")
def table_file(encoder, tmp_path_factory) -> Path:
    rows = encoder.encode(TEXTS * 3).ids
    exits = np.random.default_rng(0).integers(1, L + 1, len(rows))
    return build_predictor(rows, exits, L, sorted(encoder.special_ids)).save(tmp_path_factory.mktemp("t") / "t.npz")


@pytest.fixture(scope="module")
def export(model, table_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("probe") / "export"
    return export_checkpoint(_ckpt(model), out, exit_table=table_file, probe=length_probe(), segments=False,
                             progress=False).root


@pytest.fixture(scope="module")
def engines(export):
    engs = {b: GeepEngine.load(export, backend=b, threads=1) for b in ("onnxruntime", "torch")}
    yield engs
    for e in engs.values():
        e.close()


@pytest.fixture(scope="module")
def offline(model, encoder) -> np.ndarray:
    """(N, L, C): every row alone, unpadded, at every depth (no batching, no dispatch)."""
    enc = encoder.encode(TEXTS)
    with torch.no_grad():
        return np.asarray([[model(torch.from_numpy(i)[None], torch.ones(1, len(i), dtype=torch.int64),
                                  torch.from_numpy(t)[None], depth=k)[0].numpy() for k in range(1, L + 1)]
                           for i, t in zip(enc.ids, enc.type_ids)])


def test_manifest_records_the_probe_and_its_graphs(export) -> None:
    m = json.loads((export / MANIFEST).read_text())
    assert m["format_version"] == 5 and m["predictor"] == "probe"
    assert m["probe"]["file"] == "probe.json" and m["probe"]["params"] == {
        "num_layers": L, "risk": 0.5, "escalate": None, "uses_table": True, "exit_mode": "student"}
    kinds = {(a["kind"], a["depth"]): a for a in m["artifacts"]}
    assert {("prefix", None), ("cont", 2), ("cont", 3)} <= kinds.keys() and ("cont", 1) not in kinds
    assert list(kinds[("cont", 2)]["inputs"]) == ["hidden", "attention_mask"]
    assert list(kinds[("prefix", None)]["outputs"]) == ["hidden", "logits"]
    assert kinds[("cont", 3)]["validation"]["passed"] and m["export"]["continuations"] is True


def _graph(backend: str, export: Path, model, kind: str, depth: int | None):
    if backend == "torch":
        return TorchEngine(model, kind=kind, depth=depth).load()
    from runtime.artifacts import load_export

    return OrtEngine(load_export(export).find(kind=kind, depth=depth).path).load()


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_prefix_then_continuation_equals_depth_graph(backend, export, model, encoder) -> None:
    """cont{d}(prefix(x).hidden) == depth{d}(x) for every d, with padding, and after re-padding a subset."""
    feed = pad_batch(encoder.encode(TEXTS), pad_id=encoder.pad_id)
    mask = feed["attention_mask"]
    short = np.argsort(mask.sum(1))[:4]
    width = int(mask[short].sum(1).max())
    with _graph(backend, export, model, "prefix", None) as prefix, _graph(backend, export, model, "depth", 1) as d1:
        out = prefix.infer(feed)
        np.testing.assert_allclose(out["logits"], d1.infer(feed)["logits"], atol=1e-4)
    for d in range(2, L + 1):
        with _graph(backend, export, model, "cont", d) as cont, _graph(backend, export, model, "depth", d) as full:
            want = full.infer(feed)["logits"]
            np.testing.assert_allclose(cont.infer({"hidden": out["hidden"], "attention_mask": mask})["logits"],
                                       want, atol=1e-4)
            trimmed = {"hidden": np.ascontiguousarray(out["hidden"][short, :width]),
                       "attention_mask": np.ascontiguousarray(mask[short, :width])}
            np.testing.assert_allclose(cont.infer(trimmed)["logits"], want[short], atol=1e-4)


def _expected_depths(engine: GeepEngine, offline: np.ndarray) -> np.ndarray:
    enc = engine.encoder.encode(TEXTS)
    mass = ExitPredictor.load(load_export(engine.info["export"]).exit_table).exit_mass(*pad_rows(enc.ids))
    return length_probe().depths(probe_features(offline[:, 0], enc.lengths, mass))


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_answers_are_the_offline_logits_at_the_reported_depth(backend, engines, offline) -> None:
    eng = engines[backend]
    assert eng.info["predictor"] == "probe" and eng.probe is not None
    res = eng.predict(TEXTS, batch_size=3)
    assert sorted(set(res.depths.tolist())) == [1, 2, 3]  # the fixture probe mixes depths
    np.testing.assert_array_equal(res.depths, _expected_depths(eng, offline))
    np.testing.assert_allclose(res.logits, offline[np.arange(len(TEXTS)), res.depths - 1], atol=1e-4)
    assert res.escalated is not None and not res.escalated.any() and res.timings.as_dict()["escalated"] == 0
    for off in (eng.with_probe(escalate=None), eng.with_probe(escalate=1.0)):  # entropy never exceeds 1
        again = off.predict(TEXTS, batch_size=3)
        np.testing.assert_array_equal(again.logits, res.logits)
        np.testing.assert_array_equal(again.depths, res.depths)
    explicit = eng.predict(TEXTS, depths=res.depths)  # the depth graphs, for comparison
    np.testing.assert_allclose(explicit.logits, res.logits, atol=1e-4)
    assert explicit.escalated is None
    for cost in (0.0, 16.0):  # every pass cut into calls by padded work instead of 3-row chunks
        eng.call_cost = cost
        try:
            cut = eng.predict(TEXTS, batch_size=64)
        finally:
            eng.call_cost = None
        np.testing.assert_array_equal(cut.depths, res.depths)
        np.testing.assert_allclose(cut.logits, res.logits, atol=1e-4)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_forced_escalation_answers_at_depth_L(backend, engines) -> None:
    eng = engines[backend]
    planned = eng.predict(TEXTS, batch_size=1).depths
    res = eng.with_probe(escalate=0.0).predict(TEXTS, batch_size=1)
    assert res.escalated.tolist() == (planned < L).tolist() and (res.depths == L).all()
    t = res.timings.as_dict()
    assert t["escalated"] == res.num_escalated == int((planned < L).sum()) > 0 and t["escalate_s"] > 0
    at_l = eng.with_probe(risk=0.0).predict(TEXTS, batch_size=1)  # risk 0: every row planned at depth L
    assert (at_l.depths == L).all() and not at_l.escalated.any()
    np.testing.assert_array_equal(res.logits, at_l.logits)
    pooled = eng.with_probe(escalate=0.0).predict(TEXTS, batch_size=4)  # one pooled pass, length groups
    np.testing.assert_allclose(pooled.logits, at_l.logits, atol=1e-4)


def test_dispatch_reports_what_each_row_ran(engines) -> None:
    eng = engines["onnxruntime"]
    out = eng.with_probe(escalate=0.0).dispatch(eng.encoder.encode(TEXTS))
    assert out.layers.tolist() == [d + (L - 1) * e for d, e in zip(out.planned, out.escalated)]
    assert out.heads.tolist() == [1 + (d > 1) + e for d, e in zip(out.planned, out.escalated)]


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_threads_equal_serial(engines, backend) -> None:
    base = engines[backend]
    views = [base, base.with_probe(escalate=0.0), base.with_probe(risk=0.9)]
    rng = np.random.default_rng(0)
    jobs = [(views[j % 3], list(rng.choice(len(TEXTS), 6)), int(rng.integers(1, 5))) for j in range(18)]
    serial = [v.predict([TEXTS[i] for i in ix], batch_size=b) for v, ix, b in jobs]
    results = on_threads(jobs, lambda job: job[0].predict([TEXTS[i] for i in job[1]], batch_size=job[2]))
    for got, want in zip(results, serial):
        np.testing.assert_allclose(got.logits, want.logits, atol=1e-5)
        np.testing.assert_array_equal(got.depths, want.depths)
        np.testing.assert_array_equal(got.escalated, want.escalated)


def test_views_borrow_the_owners_engines(export) -> None:
    """A view (other probe knobs, another predictor) borrows its owner's engines: no ``close``, no ``with``. The old
    bug: ``with engine.with_probe(risk=0.3) as v:`` closed the owner's engines on leaving the block; now a view can
    be used and dropped and the owner still predicts. Closing the owner closes every engine, the probe's too."""
    owner = GeepEngine.load(export, backend="onnxruntime", threads=1)
    want = owner.predict(TEXTS).logits
    probe_view = owner.with_probe(risk=0.3)
    views = [probe_view, owner.with_predictor(owner.predictor), probe_view.with_probe(escalate=None)]
    for v in views:
        assert isinstance(v, EngineView) and not isinstance(v, GeepEngine) and v.owner is owner
        assert not hasattr(v, "close") and v.engines == owner.engines
        with pytest.raises((TypeError, AttributeError)):
            with v:  # a view is no context manager: leaving a block cannot close what it borrows
                pass
        v.predict(TEXTS)
    knobs = owner.probe.with_knobs(risk=0.3)  # the probe dispatch's view: the same engines, nothing to close
    assert knobs.prefix is owner.probe.prefix and not hasattr(knobs, "close")
    del views, probe_view, knobs
    np.testing.assert_allclose(owner.predict(TEXTS).logits, want)
    survivor = owner.with_probe(risk=0.3)
    owner.close()
    assert all(e.is_closed for e in [*owner.engines.values(), *owner.probe.engines])
    with pytest.raises(EngineStateError, match="closed"):
        survivor.predict(TEXTS)  # closing the owner ends its views


def test_table_dispatch_on_the_same_export(export, engines) -> None:
    enc_texts = TEXTS[:6]
    with GeepEngine.load(export, predictor="table") as eng:
        assert eng.probe is None and eng.info["predictor"] == "table"
        res = eng.predict(enc_texts)
        assert res.escalated is None
        want = eng.predictor.predict(eng.encoder.encode(enc_texts).ids)
        np.testing.assert_array_equal(res.depths, want)
        with pytest.raises(ConfigError, match="no probe dispatch"):
            eng.with_probe(risk=0.2)
    view = engines["onnxruntime"].with_predictor(engines["onnxruntime"].predictor)
    np.testing.assert_array_equal(view.predict(enc_texts).depths, want)


def _rewrite(root: Path, edit) -> None:
    m = json.loads((root / MANIFEST).read_text())
    edit(m)
    m.pop(SELF_HASH, None)
    write_manifest(root, m)


def test_old_exports_dispatch_by_the_table(model, table_file, tmp_path, encoder) -> None:
    plain = export_checkpoint(_ckpt(model), tmp_path / "plain", exit_table=table_file, segments=False,
                              progress=False).root
    m = json.loads((plain / MANIFEST).read_text())
    assert m["predictor"] == "table" and m["probe"] is None
    assert not any(a["kind"] in ("prefix", "cont") for a in m["artifacts"])
    with GeepEngine.load(plain) as eng:
        new = eng.predict(TEXTS)
        assert eng.probe is None and new.escalated is None
        with pytest.raises(ConfigError, match="no probe dispatch"):
            eng.with_probe()
    with pytest.raises(ConfigError, match="carries no probe"):
        GeepEngine.load(plain, predictor="probe")

    def as_format_3(m: dict) -> None:
        as_old_manifest(m, 3)
        del m["probe"], m["predictor"]

    _rewrite(plain, as_format_3)
    with GeepEngine.load(plain) as eng:
        old = eng.predict(TEXTS)
    np.testing.assert_array_equal(old.logits, new.logits)
    np.testing.assert_array_equal(old.depths, new.depths)
    _rewrite(plain, lambda m: m.update(format_version=6))
    with pytest.raises(ArtifactError, match=r"format version 6; this geep-deploy reads 1\.\.5"):
        GeepEngine.load(plain)


def test_bad_probes_are_named(export, model, table_file, tmp_path) -> None:
    with pytest.raises(ConfigError, match="fitted for 4 layers"):
        export_checkpoint(_ckpt(model), tmp_path / "a", exit_table=table_file, probe=length_probe(4), progress=False)
    with pytest.raises(ConfigError, match="reads exit-table statistics"):
        export_checkpoint(_ckpt(model), tmp_path / "b", probe=length_probe(), progress=False)
    with pytest.raises(ConfigError, match="add 3 to --depths"):
        export_checkpoint(_ckpt(model), tmp_path / "d", exit_table=table_file, probe=length_probe(), depths="1,2",
                          progress=False)
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(TableError, match="is not JSON"):
        export_checkpoint(_ckpt(model), tmp_path / "c", exit_table=table_file, probe=tmp_path / "bad.json",
                          progress=False)
    assert not any((tmp_path / n).exists() for n in "abcd")
    with pytest.raises(ConfigError, match="cannot go with predictor='probe'"):
        GeepEngine.load(export, fixed_depth=2, predictor="probe")
    with pytest.raises(ConfigError, match="predictor must be"):
        GeepEngine.load(export, predictor="oracle")

    damaged = tmp_path / "damaged"
    shutil.copytree(export, damaged)
    (damaged / "probe.json").write_text('{"format": "geep-probe", "version": 1}')
    with pytest.raises(ArtifactError, match="probe.json is corrupted"):
        GeepEngine.load(damaged)
    with pytest.raises(TableError, match="format version|damaged probe file|features"):
        GeepEngine.load(damaged, verify=False)

    foreign = tmp_path / "foreign"
    shutil.copytree(export, foreign)
    length_probe(4).save(foreign / "probe.json")
    _rewrite(foreign, lambda m: m.update(probe=file_entry(foreign, foreign / "probe.json", params={})))
    with pytest.raises(ConfigError, match="fitted for 4 layers; the export's model has 3"):
        GeepEngine.load(foreign)


def test_tensorrt_plans_cover_the_continuations() -> None:
    """Plain data (no TensorRT needed): which graphs get plans and their profiles over (batch, seq[, H])."""
    graphs = [("depth", 1), ("depth", 3), ("prefix", None), ("cont", 3)]
    assert plan_graphs(graphs, "fp16") == graphs
    assert plan_graphs(graphs, "int8") == [("depth", 1), ("depth", 3)]  # Q/DQ graphs exist for depths only
    (p,) = graph_profiles("cont", 32, 2, max_batch=8, max_len=64)
    assert p.to_dict() == {"hidden": {"min": [1, 1, 32], "opt": [8, 64, 32], "max": [8, 64, 32]},
                           "attention_mask": {"min": [1, 1], "opt": [8, 64], "max": [8, 64]}}
    (q,) = graph_profiles("prefix", 32, 2, max_batch=8, max_len=64)
    assert set(q.shapes) == {"input_ids", "attention_mask", "token_type_ids"}


@pytest.mark.trt
def test_real_continuation_plans(model, table_file, tmp_path) -> None:
    b = export_checkpoint(_ckpt(model), tmp_path / "e", exit_table=table_file, probe=length_probe(),
                          formats=("onnx", "tensorrt"), max_batch=8, segments=False, progress=False)
    for kind, d in (("prefix", None), ("cont", 2), ("cont", 3)):
        assert b.find(kind=kind, depth=d, format="tensorrt").path.stat().st_size > 0


def test_skip_exit_mode_export(tmp_path, encoder) -> None:
    """``--exit-mode skip``: depth k < L exits through layer L and the teacher, recorded in the manifest."""
    ckpt = tiny_checkpoint(tmp_path / "t.pt")
    assert main(["export", "--checkpoint", str(tmp_path / "t.pt"), "--out", str(tmp_path / "e"), "--depths", "1,3",
                 "--exit-mode", "skip", "--no-segments", "--quiet"]) == 0
    m = json.loads((tmp_path / "e" / MANIFEST).read_text())
    assert m["exit_mode"] == "skip"
    feed = pad_batch(encoder.encode(TEXTS[:4]), pad_id=encoder.pad_id)
    with GeepEngine.load(tmp_path / "e", fixed_depth=1) as eng:
        got = eng.predict(TEXTS[:4]).logits
    with torch.no_grad():
        t = {k: torch.from_numpy(v) for k, v in feed.items()}
        want = ckpt.model(t["input_ids"], t["attention_mask"], t["token_type_ids"], depth=1, exit_mode="skip")
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)
    with pytest.raises(ConfigError, match="fitted for the 'student' exits, but the export exits through 'skip'"):
        export_checkpoint(ckpt, tmp_path / "p", exit_mode="skip", probe=length_probe(uses_table=False),
                          progress=False)
    assert not (tmp_path / "p").exists()


def skip_probe() -> ProbeModel:
    from dataclasses import replace

    return replace(length_probe(uses_table=False), exit_mode="skip")


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_probe_dispatch_through_the_shared_exit_path(backend, model, encoder, tmp_path) -> None:
    """A probe fitted for the shared exit path: depth-1 rows continue too (``cont1``: layer L and the teacher on
    their layer-1 states), every answer is the offline shared-path logit at the reported depth, and the cost
    counts the extra layer."""
    root = export_checkpoint(_ckpt(model), tmp_path / "skip", probe=skip_probe(), exit_mode="skip", segments=False,
                             progress=False).root
    m = json.loads((root / MANIFEST).read_text())
    assert m["exit_mode"] == "skip" and m["probe"]["params"]["exit_mode"] == "skip"
    assert {("cont", 1), ("cont", 2), ("cont", 3)} <= {(a["kind"], a["depth"]) for a in m["artifacts"]}
    enc = encoder.encode(TEXTS)
    with torch.no_grad():
        offline = np.asarray([[model(torch.from_numpy(i)[None], torch.ones(1, len(i), dtype=torch.int64),
                                     torch.from_numpy(t)[None], depth=k, exit_mode="skip")[0].numpy()
                               for k in range(1, L + 1)] for i, t in zip(enc.ids, enc.type_ids)])
        head1 = np.asarray([model(torch.from_numpy(i)[None], torch.ones(1, len(i), dtype=torch.int64),
                                  torch.from_numpy(t)[None], depth=1)[0].numpy() for i, t in zip(enc.ids, enc.type_ids)])
    with GeepEngine.load(root, backend=backend, threads=1) as eng:
        assert eng.probe.describe()["exit_mode"] == "skip"
        res = eng.predict(TEXTS, batch_size=3)
        want_depths = skip_probe().depths(probe_features(head1, enc.lengths))  # features: head 1, as ever
        assert sorted(set(want_depths.tolist())) == [1, 2, 3]
        np.testing.assert_array_equal(res.depths, want_depths)
        np.testing.assert_allclose(res.logits, offline[np.arange(len(TEXTS)), res.depths - 1], atol=1e-4)
        out = eng.with_probe(escalate=0.0).dispatch(enc)
        assert (out.depths == L).all() and out.escalated.tolist() == (out.planned < L).tolist()
        np.testing.assert_allclose(out.logits, offline[:, -1], atol=1e-4)
        plain = eng.dispatch(enc)
        assert plain.layers.tolist() == [d + (d < L) for d in plain.planned]
        assert plain.heads.tolist() == [2] * len(TEXTS)  # head 1 (features) and the teacher


def test_probe_and_export_must_share_the_exit_path(export, tmp_path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(export, mixed)
    from dataclasses import replace

    replace(length_probe(), exit_mode="skip").save(mixed / "probe.json")
    _rewrite(mixed, lambda m: m.update(probe=file_entry(mixed, mixed / "probe.json", params={})))
    with pytest.raises(ConfigError, match="fitted for the 'skip' exits, but the export exits through 'student'"):
        GeepEngine.load(mixed)
    with pytest.raises(ConfigError, match="exit_mode must be one of"):
        replace(length_probe(), exit_mode="teacher")
    old = {k: v for k, v in length_probe().to_dict().items() if k != "exit_mode"}  # written before the field
    assert ProbeModel.from_dict(old).exit_mode == "student"


def _suite_work(export: Path, tmp_path: Path) -> Path:
    """A suite-shaped seed work folder: the export as `geep` and as `full`, and batch-4 bench rows."""
    work = tmp_path / "work"
    (work / "export").mkdir(parents=True)
    for name in ("geep", "full"):  # `full` is loaded at depth L, as the suite bench loads its export
        shutil.copytree(export, work / "export" / name)
    rows = work / "bench_rows_b4"
    rows.mkdir()
    (rows / "labels.txt").write_text("neg\npos\n")
    (rows / "test.tsv").write_text("label\ttext\n" + "".join(f"{i % 2}\t{t}\n" for i, t in enumerate(TEXTS)))
    return work


def test_dispatch_outside_engines_bench_splits_each_pass_on_a_real_export(export, tmp_path) -> None:
    """`bench/dispatch_outside_engines.py`: per pass, wall = engines + outside for both dispatches, both positive."""
    import subprocess
    import sys

    work, out = _suite_work(export, tmp_path), tmp_path / "outside.json"
    cmd = [sys.executable, "bench/dispatch_outside_engines.py", "--work", str(work), "--json", str(out), "--batch",
           "4", "--repeats", "3", "--threads", "1"]
    run = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads(out.read_text())
    (w,) = res["works"]
    assert w["rows"] == len(TEXTS) and res["config"]["repeats"] == 3
    for name in ("full", "probe0"):
        d = w[name]
        assert len(d["outside_runs_s"]) == 3 and min(d["outside_runs_s"]) > 0
        assert 0 < d["engines_s"] < d["wall_s"]
    assert w["extra_outside_share_of_full"] == pytest.approx(
        (w["probe0"]["outside_s"] - w["full"]["outside_s"]) / w["full"]["wall_s"])
    missing = subprocess.run([*cmd[:3], str(tmp_path / "nowhere"), *cmd[4:]], cwd=Path(__file__).resolve().parents[1],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "is missing" in missing.stderr


def test_all_depth_l_overhead_bench_splits_probe0_time_on_a_real_export(export, tmp_path) -> None:
    """`bench/all_depth_l_overhead.py` on a suite-shaped work folder: every contender timed, the ratios consistent
    with the medians, and a missing folder named."""
    import subprocess
    import sys

    work = _suite_work(export, tmp_path)
    out = tmp_path / "overhead.json"
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "bench/all_depth_l_overhead.py", "--work", str(work), "--json", str(out), "--batch", "4",
           "--repeats", "2", "--threads", "1"]
    run = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads(out.read_text())
    med = res["median_s"]
    assert set(med) == {"full", "full_again", "full_reloaded", "probe0", "graphs_full", "graphs_probe",
                        "graphs_prefix"}
    assert all(len(s) == 4 and min(s) > 0 for s in res["seconds"].values())  # 2 runs x 2 repeats, pooled
    assert res["ratios"]["probe0_over_full"] == pytest.approx(med["probe0"] / med["full"])
    assert res["python_s"]["probe0"] == pytest.approx(med["probe0"] - med["graphs_probe"])
    assert res["config"]["rows"] == len(TEXTS) and res["config"]["engine_calls_per_pass"] >= res["config"]["batches"]
    # the check, by the suite's rule, from each run's own medians: noise from `full` loaded again (`check`) and,
    # beside it, from the same engines timed twice (`check_same_engines`)
    runs = res["runs"]
    assert len(runs) == 2 and all(len(s) == 2 for r in runs for s in r["seconds"].values())
    speedups = [r["median_s"]["full"] / r["median_s"]["probe0"] for r in runs]
    for key, again in (("check", "full_reloaded"), ("check_same_engines", "full_again")):
        check = res[key]
        noise = max(abs(r["median_s"]["full"] / r["median_s"][again] - 1) for r in runs)
        assert check["noise_contender"] == again and check["noise"] == pytest.approx(noise)
        assert check["probe0_speedup_runs"] == pytest.approx(speedups)
        assert check["within_noise"] == (abs(sum(speedups) / 2 - 1) <= noise + 1e-9)
    quick = subprocess.run([*cmd[:5], str(tmp_path / "quick.json"), *cmd[6:], "--runs", "1", "--no-graphs"],
                           cwd=root, capture_output=True, text=True, timeout=300)
    assert quick.returncode == 0, quick.stderr[-2000:]
    assert set(json.loads((tmp_path / "quick.json").read_text())["median_s"]) == {"full", "full_again",
                                                                                 "full_reloaded", "probe0"}
    missing = subprocess.run([*cmd[:3], str(tmp_path / "nowhere"), *cmd[4:]], cwd=root, capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode != 0 and "is missing" in missing.stderr
