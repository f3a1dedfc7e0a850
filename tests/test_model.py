"""ExitBert equals a Hugging Face BertModel truncated to k layers plus the head, at every depth."""

from __future__ import annotations

import pytest
import torch
from models import TINY_SHAPE, tiny_model
from transformers import BertConfig, BertModel

from geep_deploy.errors import CheckpointError, ConfigError
from geep_deploy.model import DepthModel


def _hf_truncated(model, k: int) -> BertModel:
    cfg = {k_: v for k_, v in TINY_SHAPE.to_dict().items() if k_ != "model_type"}
    hf = BertModel(BertConfig(**{**cfg, "num_hidden_layers": k}, attn_implementation="eager"), add_pooling_layer=False)
    state = {
        n: t for n, t in model.state_dict().items()
        if not n.startswith("heads.") and (not n.startswith("encoder.layer.") or int(n.split(".")[2]) < k)
    }
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing)
    return hf.eval()


def _inputs(seed: int = 0, b: int = 4, s: int = 11):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 5000, (b, s), generator=g)
    mask = torch.ones(b, s, dtype=torch.long)
    mask[1, 7:] = 0
    mask[3, 3:] = 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    return ids, mask, types


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_depth_forward_matches_hf_truncated(depth: int) -> None:
    model = tiny_model(num_labels=3)
    ids, mask, types = _inputs()
    with torch.no_grad():
        h = _hf_truncated(model, depth)(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        ref = model.head(depth)((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))
        out = model(ids, mask, types, depth=depth)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_forward_all_equals_per_depth_and_padding_is_inert() -> None:
    model = tiny_model()
    ids, mask, types = _inputs()
    with torch.no_grad():
        res = model.forward_all(ids, mask, types)
        for k in range(1, model.num_layers + 1):
            torch.testing.assert_close(res.logits[k - 1], model(ids, mask, types, depth=k))
        # row 3 has 3 real tokens: its logits must not depend on what the padding holds
        ids2 = ids.clone()
        ids2[3, 3:] = 7
        torch.testing.assert_close(model(ids2, mask, types)[3], model(ids, mask, types)[3])


def test_skip_exit_runs_last_layer_and_teacher() -> None:
    model = tiny_model()
    ids, mask, types = _inputs()
    with torch.no_grad():
        res = model.forward_all(ids, mask, types)
        skip = model(ids, mask, types, depth=1, exit_mode="skip")
        torch.testing.assert_close(skip, model.teacher_from(res.hidden[0], res.mask_bias, mask))
        assert not torch.allclose(skip, res.logits[0])
        torch.testing.assert_close(DepthModel(model, 2)(ids, mask, types), res.logits[1])


@pytest.mark.parametrize("bad", [0, 4, 1.5, "2"])
def test_bad_depth_is_a_clear_error(bad) -> None:
    with pytest.raises(ConfigError, match=r"depth must be an int in 1\.\.3"):
        tiny_model()(*_inputs(), depth=bad)


def test_bad_exit_mode_and_labels() -> None:
    with pytest.raises(ConfigError, match="exit_mode"):
        tiny_model()(*_inputs(), exit_mode="teacher")
    with pytest.raises(ConfigError, match="num_labels"):
        tiny_model(num_labels=1)


def test_load_backbone_rejects_wrong_weights() -> None:
    model = tiny_model()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("heads.")}
    model.load_backbone(state)  # its own weights load
    with pytest.raises(CheckpointError, match="lack"):
        model.load_backbone({k: v for k, v in state.items() if "layer.2" not in k})
    bad = dict(state)
    bad["embeddings.word_embeddings.weight"] = torch.zeros(10, 32)
    with pytest.raises(CheckpointError, match="shape"):
        model.load_backbone(bad)


def test_packaged_minilm_loads_and_gives_real_embeddings() -> None:
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.encoding import TextEncoder, pad_batch
    from geep_deploy.model import ExitBert

    bb = load_backbone_dir()
    assert bb.shape.num_hidden_layers == 6 and bb.shape.hidden_size == 384
    model = ExitBert(bb.shape, 2).eval()
    model.load_backbone(bb.weights)
    enc = TextEncoder(bb.tokenizer_json, 32).encode(["a great movie", "a terrible movie", "a great film"])
    batch = {k: torch.from_numpy(v) for k, v in pad_batch(enc).items()}
    with torch.no_grad():
        res = model.forward_all(**batch)
        h = model.pool(res.hidden[-1], batch["attention_mask"])
    sim = torch.nn.functional.cosine_similarity
    # pretrained weights: paraphrases are closer than opposites
    assert sim(h[0], h[2], dim=0) > sim(h[0], h[1], dim=0)


def test_cls_pooling_option() -> None:
    import torch as t

    from geep_deploy.model import ExitBert

    t.manual_seed(0)
    m = ExitBert(TINY_SHAPE, 2, pooling="cls").eval()
    ids, mask, types = _inputs()
    with t.no_grad():
        res = m.forward_all(ids, mask, types)
        t.testing.assert_close(m(ids, mask, types, depth=2), m.head(2)(res.hidden[1][:, 0]))
    with pytest.raises(ConfigError, match="pooling"):
        ExitBert(TINY_SHAPE, 2, pooling="max")


def test_skip_logits_equal_the_skip_exit_mode_at_every_depth() -> None:
    """eval's shared-exit-path column is exactly what an export with exit_mode="skip" runs at each depth."""
    from models import real_tokenizer_json

    from geep_deploy.encoding import TextEncoder, pad_batch
    from geep_deploy.evaluate import collect_skip_logits

    m = tiny_model().eval()
    enc = TextEncoder(real_tokenizer_json(), 32).encode(["a charming journey", "bleak", "the acting is all astounding"])
    skip = collect_skip_logits(m, enc, batch_size=2)
    assert skip.shape == (3, m.num_layers - 1, m.num_labels)
    batch = {k: torch.from_numpy(v) for k, v in pad_batch(enc).items()}
    with torch.inference_mode():
        for k in range(1, m.num_layers):
            want = m(**batch, depth=k, exit_mode="skip").numpy()
            torch.testing.assert_close(torch.from_numpy(skip[:, k - 1]), torch.from_numpy(want), atol=1e-5, rtol=1e-5)
            assert not torch.allclose(torch.from_numpy(want), m(**batch, depth=k).float())  # not the student
