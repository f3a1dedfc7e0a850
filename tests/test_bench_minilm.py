"""The export benchmarks' fallback model (``geep_deploy.bench.minilm``): fresh heads are reproducible, and fitting
them as linear probes moves only the heads."""

from __future__ import annotations

import torch
from models import tiny_checkpoint

from geep_deploy.bench.minilm import fit_heads_on_frozen_states, fresh_head_checkpoint


def test_fresh_heads_are_seeded_and_labelled() -> None:
    a, b = fresh_head_checkpoint(), fresh_head_checkpoint()
    assert a.label_names == ["negative", "positive"] and a.max_len == 128 and not a.model.training
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fitting_moves_the_heads_only(tmp_path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    before = {k: v.clone() for k, v in ckpt.model.state_dict().items()}
    fit_heads_on_frozen_states(ckpt, rows=64, steps=10)
    after = ckpt.model.state_dict()
    head_keys = {k for k in before if k.startswith("heads.")}
    assert len(head_keys) == 4 * ckpt.model.num_layers
    assert all(any(not torch.equal(before[k], after[k]) for k in head_keys if k.startswith(f"heads.{i}."))
               for i in range(ckpt.model.num_layers))
    assert all(torch.equal(before[k], after[k]) for k in before if k not in head_keys)
    assert all(not ckpt.model.head(k).training for k in range(1, ckpt.model.num_layers + 1))
