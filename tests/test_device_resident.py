"""The probe dispatch keeps layer-1 states on the device when its engines say they are device-resident.

Run on the CPU with the real torch engine in ``resident=True`` mode (what CUDA engines default to): states stay
torch tensors from the prefix through every continuation group and escalation, and the answers equal the host
path's. The CUDA-graph replay of prefix/cont needs a GPU (``make gpu-check``); its static buffers are tested here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models import TEXTS, real_tokenizer_json, tiny_model
from test_probe_dispatch import L, length_probe

from engines.torch_cuda import fill_static, static_buffers
from engines.torch_engine import TorchEngine, TorchOptions
from geep_deploy.encoding import TextEncoder, pad_batch
from geep_deploy.errors import ConfigError
from runtime.probe_dispatch import PrefixStates, ProbeDispatch, gather_states


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def enc():
    return TextEncoder(real_tokenizer_json(), 64).encode(TEXTS)


def _dispatch(model, resident: bool, escalate: float | None = None) -> ProbeDispatch:
    opts = TorchOptions(resident=resident, check_inputs=False)
    prefix = TorchEngine(model, opts, kind="prefix").load()
    conts = {d: TorchEngine(model, opts, kind="cont", depth=d).load() for d in range(2, L + 1)}
    return ProbeDispatch(length_probe(uses_table=False).with_knobs(escalate=escalate), prefix, conts, num_labels=2)


@pytest.mark.parametrize("max_group", [1, 3, 64])
@pytest.mark.parametrize("escalate", [None, 0.0])
def test_resident_dispatch_equals_the_host_path(model, enc, max_group, escalate) -> None:
    host, dev = _dispatch(model, False, escalate), _dispatch(model, True, escalate)
    assert dev.resident and not host.resident and dev.describe()["states_on_device"]
    a, b = host.run(enc, max_group), dev.run(enc, max_group)
    np.testing.assert_allclose(b.logits, a.logits, atol=1e-5)
    np.testing.assert_array_equal(b.depths, a.depths)
    np.testing.assert_array_equal(b.escalated, a.escalated)
    assert escalate is None or b.escalated.any()


def test_resident_dispatch_never_brings_states_to_the_host(model, enc, monkeypatch) -> None:
    dev = _dispatch(model, True, escalate=0.0)
    converted: list[tuple[int, ...]] = []
    real_numpy = torch.Tensor.numpy

    def spy(self, *a, **k):
        converted.append(tuple(self.shape))
        return real_numpy(self, *a, **k)

    def no_host_infer(self, *a, **k):
        raise AssertionError(f"{self.name}: the host path ran on a device-resident dispatch")

    monkeypatch.setattr(torch.Tensor, "numpy", spy)
    monkeypatch.setattr(TorchEngine, "infer", no_host_infer)
    out = dev.run(enc, 4)
    assert out.escalated.any() and (out.planned > 1).any()
    assert converted and all(len(s) == 2 and s[-1] == 2 for s in converted)  # logits only, never (B, S, H)


def test_gather_states_pads_masks_and_crosses_chunks() -> None:
    h = 4
    chunks = [torch.arange(2 * 3 * h, dtype=torch.float32).reshape(2, 3, h) + 1,
              torch.arange(3 * 5 * h, dtype=torch.float32).reshape(3, 5, h) + 100]
    states = PrefixStates(chunks, chunk_of=np.array([0, 0, 1, 1, 1]), pos=np.array([0, 1, 0, 1, 2]))
    rows, lengths = np.array([4, 1, 2]), np.array([5, 3, 2])
    hidden, mask = gather_states(states, rows, lengths, width=5)
    assert hidden.shape == (3, 5, h) and mask.dtype == torch.int64
    assert mask.tolist() == [[1] * 5, [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    torch.testing.assert_close(hidden[0], chunks[1][2])
    torch.testing.assert_close(hidden[1, :3], chunks[0][1])
    torch.testing.assert_close(hidden[2, :2], chunks[1][0, :2])
    assert not hidden[1, 3:].any() and not hidden[2, 2:].any()  # zero past each row's length
    host = PrefixStates([c.numpy() for c in chunks], states.chunk_of, states.pos)
    h_np, m_np = gather_states(host, rows, lengths, width=5)  # the host path: the same gather in NumPy
    assert isinstance(h_np, np.ndarray) and m_np.dtype == np.int64
    np.testing.assert_array_equal(h_np, hidden.numpy())
    np.testing.assert_array_equal(m_np, mask.numpy())


@pytest.mark.parametrize("lib", [pytest.param("cupy", marks=pytest.mark.cupy),
                                 pytest.param("torch_cuda", marks=pytest.mark.cuda)])
def test_gather_states_on_a_gpu_equals_the_host_gather(lib: str) -> None:
    """The CuPy and torch-CUDA branches of `gather_states` give the NumPy gather's values and mask, on the device."""
    rng = np.random.default_rng(0)
    host_chunks = [rng.standard_normal((2, 3, 4)).astype(np.float32), rng.standard_normal((3, 5, 4)).astype(np.float32)]
    if lib == "cupy":
        import cupy as dev_lib

        chunks = [dev_lib.asarray(c) for c in host_chunks]
        to_host = dev_lib.asnumpy
    else:
        chunks = [torch.as_tensor(c, device="cuda") for c in host_chunks]
        to_host = lambda a: a.cpu().numpy()  # noqa: E731
    chunk_of, pos = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 1, 2])
    host = PrefixStates(host_chunks, chunk_of, pos)
    states = PrefixStates(chunks, chunk_of, pos)
    for rows, lengths, width in (([4, 1, 2], [5, 3, 2], 5), ([2, 3, 4], [5, 4, 5], 5), ([0, 1], [3, 2], 3)):
        rows, lengths = np.array(rows), np.array(lengths)
        h_np, m_np = gather_states(host, rows, lengths, width)
        h, m = gather_states(states, rows, lengths, width)
        assert type(h) is type(chunks[0]) and type(m) is type(chunks[0])  # stays on the device
        np.testing.assert_array_equal(to_host(h), h_np)
        np.testing.assert_array_equal(to_host(m), m_np)


def test_a_whole_prefix_chunk_is_continued_as_it_is_with_the_same_logits(model, enc) -> None:
    """Rows that are one whole prefix chunk (every row to one depth) skip the copy; the prefix's values left at
    the padded positions get exactly zero attention weight, so the logits equal the zeroed gather's bit for bit."""
    n, rows = len(enc), np.arange(len(enc))
    with TorchEngine(model, kind="prefix") as prefix, TorchEngine(model, kind="cont", depth=L) as cont:
        hidden = prefix.infer(pad_batch(enc))["hidden"]
        states = PrefixStates([hidden], chunk_of=np.zeros(n, np.int64), pos=rows)
        h, m = gather_states(states, rows, enc.lengths, width=hidden.shape[1])
        assert h is hidden and (hidden[m == 0] != 0).any()  # no copy; the pads hold the prefix's values
        zeroed = hidden * m[..., None].astype(hidden.dtype)
        np.testing.assert_array_equal(cont.infer({"hidden": h, "attention_mask": m})["logits"],
                                      cont.infer({"hidden": zeroed, "attention_mask": m})["logits"])
        for sub in (rows[::-1], rows[1:]):  # another order or a part of the chunk: the zeroing copy
            g, _ = gather_states(states, sub, enc.lengths[sub], width=int(enc.lengths[sub].max()))
            assert g is not hidden and not g[np.arange(g.shape[1])[None, :] >= enc.lengths[sub][:, None]].any()


def test_infer_states_needs_a_resident_engine(model) -> None:
    with TorchEngine(model, kind="prefix") as eng:
        assert not eng.device_resident  # CPU default: the host path
        with pytest.raises(ConfigError, match="resident=True"):
            eng.infer_states({})


def test_cont_static_buffers_take_states_from_host_or_device() -> None:
    bufs = static_buffers(torch, 4, 8, "cpu", names=("hidden", "attention_mask"), hidden=3, dtype=torch.float16)
    assert bufs["hidden"].shape == (4, 8, 3) and bufs["hidden"].dtype == torch.float16
    assert bufs["attention_mask"][:, 0].tolist() == [1] * 4
    fill_static(torch, bufs, {"hidden": torch.ones(2, 5, 3), "attention_mask": np.ones((2, 5), np.int64)})
    assert bufs["hidden"][:2, :5].eq(1).all() and not bufs["hidden"][2:].any() and not bufs["hidden"][:, 5:].any()
    assert bufs["attention_mask"].sum().item() == 10
    with pytest.raises(ConfigError, match="hidden"):
        static_buffers(torch, 1, 1, "cpu", names=("hidden", "attention_mask"))


def test_max_batch_sets_the_graph_buckets(model) -> None:
    eng = TorchEngine(model, TorchOptions(max_batch=32))
    assert max(eng.buckets.batches) == 32


def test_tensorrt_batches_above_the_profile_are_cut() -> None:
    """The chunking around the TensorRT run (no TensorRT needed: the run itself is replaced)."""
    from engines.trt import TrtEngine

    eng = TrtEngine("unused.plan")
    calls: list[int] = []

    def run(feed, host):
        calls.append(len(feed["input_ids"]))
        return {"logits": feed["input_ids"][:, :2].astype(np.float32)}

    eng._run, eng.max_batch = run, 4
    feed = {"input_ids": np.arange(22).reshape(11, 2), "attention_mask": np.ones((11, 2), np.int64)}
    out = eng._chunked(feed, host=True)
    assert calls == [4, 4, 3] and out["logits"].tolist() == feed["input_ids"].astype(np.float32).tolist()
    eng.max_batch = None  # unknown profile: one call
    eng._chunked(feed, host=True)
    assert calls[-1] == 11
