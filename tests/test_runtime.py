"""GeepEngine dispatch, input handling, concurrency, and the layer-by-layer baselines, against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models import TEXTS, real_tokenizer_json, tiny_model
from runtime_helpers import export_depth_graphs, export_segment_graphs, on_threads

from engines.base import EngineOptions
from engines.ort import OrtEngine, OrtWeightPool
from engines.torch_engine import TorchEngine, TorchOptions
from geep_deploy.bench.baselines import EngineSegments, MethodRunner, run_layerwise
from geep_deploy.bench.methods import MethodSpec, parse_methods
from geep_deploy.encoding import TextEncoder, pad_batch
from geep_deploy.errors import ConfigError, DataError
from geep_deploy.exits import entropy_exit_depths, patience_exit_depths
from runtime.engine import EngineParts, FixedDepth, GeepEngine

L = 3


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder(real_tokenizer_json(), 64)


@pytest.fixture(scope="module")
def graph_dir(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("rt")
    return export_depth_graphs(model, d), export_segment_graphs(model, d / "seg")


def ort_engine(graph_dir, encoder, predictor=None) -> GeepEngine:
    pool = OrtWeightPool()
    engines = {k: OrtEngine(p, EngineOptions(check_inputs=False), pool=pool, threads=1).load() for k, p in graph_dir[0].items()}
    return GeepEngine(EngineParts(encoder, predictor or FixedDepth(L, L), engines, ["neg", "pos"]))


def torch_engine(model, encoder, predictor=None) -> GeepEngine:
    engines = {k: TorchEngine(model, depth=k).load() for k in range(1, L + 1)}
    return GeepEngine(EngineParts(encoder, predictor or FixedDepth(L, L), engines, ["neg", "pos"]))


@pytest.fixture(scope="module")
def per_row_reference(model, encoder):
    """(N, L, C): each row alone, unpadded, at every depth (no batching, no sorting)."""
    enc = encoder.encode(TEXTS)
    out = []
    with torch.no_grad():
        for ids, types in zip(enc.ids, enc.type_ids):
            t = torch.from_numpy(ids)[None]
            out.append([model(t, torch.ones_like(t), torch.from_numpy(types)[None], depth=k)[0].numpy()
                        for k in range(1, L + 1)])
    return np.asarray(out)


@pytest.fixture(scope="module")
def engines(graph_dir, model, encoder):
    return {"onnxruntime": ort_engine(graph_dir, encoder), "torch": torch_engine(model, encoder)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_dispatch_returns_input_order(engines, per_row_reference, data):
    idx = data.draw(st.lists(st.integers(0, len(TEXTS) - 1), min_size=1, max_size=14))
    depths = data.draw(st.lists(st.integers(1, L), min_size=len(idx), max_size=len(idx)))
    batch = data.draw(st.integers(1, 8))
    backend = data.draw(st.sampled_from(sorted(engines)))
    engine = engines[backend]
    engine.call_cost = data.draw(st.sampled_from([None, 0.0, 16.0, 1e6]))  # fixed chunks, or cuts by padding
    try:
        res = engine.predict([TEXTS[i] for i in idx], batch_size=batch, depths=depths)
    finally:
        engine.call_cost = None
    want = per_row_reference[idx, np.asarray(depths) - 1]
    np.testing.assert_allclose(res.logits, want, atol=1e-4)
    assert res.depths.tolist() == depths


def test_predict_result_fields(engines):
    res = engines["onnxruntime"].predict(TEXTS[:4])
    assert len(res) == 4 and res.depths.tolist() == [L] * 4
    preds = res.predictions
    assert {p.label for p in preds} <= {"neg", "pos"}
    assert all(abs(sum(p.probabilities) - 1) < 1e-6 and p.label == ["neg", "pos"][p.label_id] for p in preds)
    t = res.timings.as_dict()
    assert t["rows"] == 4 and t["total_s"] >= t["model_s"] > 0 and t["tokenize_s"] > 0
    assert res.to_records()[0].keys() == {"label", "label_id", "probabilities", "depth"}


def test_missing_depth_engine_runs_deeper(graph_dir, encoder, per_row_reference):
    parts = EngineParts(encoder, FixedDepth(1, L), {3: OrtEngine(graph_dir[0][3]).load()}, ["neg", "pos"])
    eng = GeepEngine(parts)
    res = eng.predict(TEXTS[:3])
    assert res.depths.tolist() == [3, 3, 3]
    np.testing.assert_allclose(res.logits, per_row_reference[:3, 2], atol=1e-4)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_threads_equal_serial(engines, backend):
    eng = engines[backend]
    rng = np.random.default_rng(0)
    jobs = [(list(rng.choice(len(TEXTS), 6)), list(rng.integers(1, L + 1, 6))) for _ in range(16)]
    serial = [eng.predict([TEXTS[i] for i in ix], depths=d, batch_size=3).logits for ix, d in jobs]
    results = on_threads(jobs, lambda job: eng.predict([TEXTS[i] for i in job[0]], depths=job[1], batch_size=3).logits)
    for got, want in zip(results, serial):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_bad_inputs(engines):
    eng = engines["onnxruntime"]
    cases = [
        (([],), "empty list"),
        ((["fine", ""],), "text #1 is empty"),
        ((["   "],), "empty or whitespace"),
        (("a single string",), "Wrap one text as \\[text\\]"),
        (([None],), "text #0 is a NoneType"),
        (([3.5],), "is a float"),
        ((None,), "must be a list of strings"),
        ((["a", "b"], ["only one"]), "2 first texts but 1 second"),
        ((["a"], [""]), "text_b #0 is empty"),
        ((["a"], "b"), "texts_b must be a list"),
    ]
    for args, msg in cases:
        with pytest.raises(DataError, match=msg):
            eng.predict(*args)
    with pytest.raises(ConfigError, match="depths must be"):
        eng.predict(["a"], depths=[L + 1])


def test_long_text_is_truncated_and_pairs_work(engines, encoder):
    eng = engines["torch"]
    long = " ".join(["wonderful"] * 5000)
    res = eng.predict([long, "short"])
    assert len(res) == 2 and np.isfinite(res.logits).all()
    assert len(encoder.encode([long]).ids[0]) == 64
    pair = eng.predict(["the premise", "a dull film"], texts_b=["is good", "it is not"])
    assert len(pair) == 2


def reference_all_depths(model, feed):
    with torch.no_grad():
        t = {k: torch.from_numpy(v) for k, v in feed.items()}
        out = model.forward_all(t["input_ids"], t["attention_mask"], t["token_type_ids"]).logits
    return np.stack([x.numpy() for x in out], axis=1)


def torch_segments(model, resident: bool = False) -> EngineSegments:
    """The ``embed`` and ``layer{k}`` torch engines; ``resident``: states stay torch tensors between layers."""
    opts = TorchOptions(resident=resident)
    return EngineSegments(TorchEngine(model, opts, kind="embed").load(),
                          [TorchEngine(model, opts, kind="layer", depth=k).load() for k in range(1, L + 1)])


@pytest.mark.parametrize("segments_kind", ["onnxruntime", "torch-engines", "torch-resident"])
@pytest.mark.parametrize("spec", [MethodSpec("fastbert", 0.0), MethodSpec("fastbert", 0.69),
                                  MethodSpec("fastbert", 1.0), MethodSpec("pabee", 1), MethodSpec("pabee", 2)])
def test_layerwise_baselines_match_exit_rules(model, encoder, graph_dir, segments_kind, spec):
    seg = graph_dir[1]
    if segments_kind == "onnxruntime":
        segments = EngineSegments(OrtEngine(seg["embed"]).load(),
                                  [OrtEngine(seg[f"layer{k}"]).load() for k in range(1, L + 1)])
    else:
        segments = torch_segments(model, resident=segments_kind == "torch-resident")
        assert segments.resident == (segments_kind == "torch-resident")
    feed = pad_batch(encoder.encode(TEXTS))
    all_logits = reference_all_depths(model, feed)
    if spec.family == "fastbert":
        want_depth = entropy_exit_depths(all_logits, spec.param)
    else:
        want_depth = patience_exit_depths(all_logits, spec.param)
    for call_cost in (None, 0.0, 8.0, 1e6):  # one call; cut by padding alone; cut with a per-call cost; never cut
        logits, depth = run_layerwise(segments, feed, L, spec, call_cost=call_cost)
        np.testing.assert_array_equal(depth, want_depth)
        np.testing.assert_allclose(logits, all_logits[np.arange(len(TEXTS)), want_depth - 1], atol=1e-4)


class _CountingSegments:
    """The real torch segments, recording the (rows, width) of every layer call."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def embed(self, feed):
        return self.inner.embed(feed)

    def layer(self, k, state):
        self.calls.append(tuple(state["hidden"].shape[:2]))
        return self.inner.layer(k, state)

    def keep(self, state, rows, width):
        return self.inner.keep(state, rows, width)


def test_layerwise_cut_path_pads_less_and_cuts_again_as_rows_leave(model, encoder):
    """The baselines get GEEP's call cutting: with no cost per call, rows of different lengths never share a
    padded call, and the rows still running after an exit are cut again (here: PABEE, nobody leaves at layer 1)."""
    feed = pad_batch(encoder.encode(TEXTS))
    lengths = feed["attention_mask"].sum(axis=1)
    spec = MethodSpec("pabee", 2)
    work = {}
    for cost in (None, 0.0):
        seg = _CountingSegments(torch_segments(model, resident=True))
        run_layerwise(seg, feed, L, spec, call_cost=cost)
        work[cost] = sum(r * w for r, w in seg.calls)
        if cost is not None:
            assert all(w == int(lengths[lengths == w].max()) for _, w in seg.calls)  # every call is unpadded
            assert len(seg.calls) > L  # more than one call per layer
    assert work[0.0] < work[None]


def test_method_runner_static_full_geep(engines, encoder, per_row_reference):
    eng = engines["onnxruntime"]
    enc = encoder.encode(TEXTS)
    for spec, k in ((MethodSpec("full"), L), (MethodSpec("static", 1), 1)):
        out = MethodRunner(spec, eng).run_batch(enc)
        assert out.depths.tolist() == [k] * len(TEXTS) and out.model_s > 0
        np.testing.assert_allclose(out.logits, per_row_reference[:, k - 1], atol=1e-4)
    geep = MethodRunner(MethodSpec("geep"), eng).run_batch(enc)
    assert geep.heads.tolist() == [1] * len(TEXTS)
    with pytest.raises(ConfigError, match="needs segment engines"):
        MethodRunner(MethodSpec("pabee", 2), eng)


def test_full_and_static_take_geeps_cut_path(engines, encoder, per_row_reference):
    """`full` and `static` run through GEEP's dispatch: with a cost per call their rows are cut by padded work,
    exactly as `plan_groups` cuts a GEEP depth group, and the answers do not change."""
    from runtime.dispatch import plan_groups

    eng = engines["onnxruntime"]
    enc = encoder.encode(TEXTS)
    depth_engine = eng.engines[L]
    shapes = []
    real_infer = depth_engine.infer

    def recording_infer(feed, **kw):
        shapes.append(feed["input_ids"].shape)
        return real_infer(feed, **kw)

    saved = eng.call_cost
    depth_engine.infer, eng.call_cost = recording_infer, 0.0
    try:
        out = MethodRunner(MethodSpec("full"), eng).run_batch(enc)
    finally:
        depth_engine.infer, eng.call_cost = real_infer, saved
    want = plan_groups(np.full(len(enc), L), enc.lengths, max_group=len(enc), call_cost=0.0)
    assert len(shapes) == len(want) > 1
    assert sorted(s[1] for s in shapes) == sorted(int(enc.lengths[g.indices].max()) for g in want)
    assert sum(s[0] * s[1] for s in shapes) < len(enc) * int(enc.lengths.max())  # less padding than one call
    np.testing.assert_allclose(out.logits, per_row_reference[:, L - 1], atol=1e-4)


def test_parse_methods():
    specs = parse_methods("full,geep,fastbert:0.3,pabee,static", 6)
    names = [s.name for s in specs]
    assert names[:3] == ["full", "geep", "fastbert:0.3"]
    assert "pabee:1" in names and "static:5" in names and "static:6" not in names
    assert [s.name for s in parse_methods("geep:0.5+1,geep:0.25", 6)] == ["geep:0.5+1", "geep:0.25+0"]
    for bad in ("fastbert:2", "static:9", "pabee:0", "medusa", "full:3", "geep:2", "geep:0.5+x"):
        with pytest.raises(ConfigError):
            parse_methods(bad, 6)
