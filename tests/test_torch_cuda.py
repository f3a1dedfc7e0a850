"""The CPU-testable parts of the torch CUDA path: bucket bounding, precision scoping, inference-mode buffers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from engines.torch_cuda import GraphBuckets, fill_static, fp32_precision_scope, static_buffers, tf32_state
from geep_deploy.errors import ConfigError


def test_bucket_set_is_bounded_and_covers_every_shape_up_to_the_maxima():
    gb = GraphBuckets(max_batch=128, max_len=128)
    assert gb.batches == (1, 2, 4, 8, 16, 32, 64, 128) and gb.lengths == (16, 32, 64, 128)
    assert len(gb.all()) == 32  # per depth, whatever the traffic (was: unbounded above batch 256)
    assert gb.all()[0] == (128, 128) and gb.all()[-1] == (1, 16)  # largest first: later graphs reuse its blocks
    assert [gb.bucket_for(b, 9) for b in (1, 3, 8, 9, 128)] == [(1, 16), (4, 16), (8, 16), (16, 16), (128, 16)]
    assert gb.bucket_for(5, 100) == (8, 128) and gb.bucket_for(129, 5) is None and gb.bucket_for(1, 129) is None
    odd = GraphBuckets(max_batch=48, max_len=40)
    assert odd.batches[-1] == 48 and odd.lengths == (16, 32, 40)
    assert GraphBuckets(max_batch=4, max_len=8).lengths == (8,)
    with pytest.raises(ConfigError, match="positive"):
        GraphBuckets(max_batch=0)


def test_tf32_is_scoped_to_the_block_and_restored():
    before = tf32_state(torch)
    with fp32_precision_scope(torch, "tf32"):
        assert tf32_state(torch)
        with fp32_precision_scope(torch, "fp32"):
            assert not tf32_state(torch)
        assert tf32_state(torch)
    assert tf32_state(torch) == before
    with fp32_precision_scope(torch, "fp16"):  # no float32 matmuls to scope
        assert tf32_state(torch) == before


def test_tf32_scope_restores_after_an_error_and_serialises_threads():
    before = tf32_state(torch)
    with pytest.raises(RuntimeError), fp32_precision_scope(torch, "tf32"):
        raise RuntimeError("boom")
    assert tf32_state(torch) == before
    seen: list[bool] = []

    def fp32_call() -> None:
        with fp32_precision_scope(torch, "fp32"):
            seen.append(tf32_state(torch))

    with fp32_precision_scope(torch, "tf32"):
        t = threading.Thread(target=fp32_call)
        t.start()
        t.join(timeout=0.2)
        assert t.is_alive()  # waits: it must not flip the switch under a running tf32 call
        assert tf32_state(torch)
    t.join()
    assert seen == [False]


def test_static_buffers_made_in_inference_mode_can_be_refilled_outside_it():
    with torch.inference_mode():
        bufs = static_buffers(torch, 4, 16, "cpu")
    assert not any(b.is_inference() for b in bufs.values())
    feed = {n: np.full((2, 5), 7, dtype=np.int64) for n in bufs}
    fill_static(torch, bufs, feed)  # outside inference mode: torch refuses this on inference tensors
    assert int(bufs["input_ids"][:2, :5].sum()) == 70 and int(bufs["input_ids"].sum()) == 70
    with torch.inference_mode():
        fill_static(torch, bufs, {n: np.ones((1, 1), dtype=np.int64) for n in bufs})
    assert int(bufs["attention_mask"].sum()) == 1
