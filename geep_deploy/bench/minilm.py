"""The export benchmarks' model when no trained checkpoint exists: the packaged all-MiniLM-L6-v2 encoder with fresh
exit heads (seed 0), and those heads fitted as linear probes on frozen [CLS] states so accuracies are not those of
a constant (``bench/export_report.py``, ``bench/export_size.py``)."""

from __future__ import annotations

from geep_deploy.checkpoint import Checkpoint


def fresh_head_checkpoint(max_len: int = 128) -> Checkpoint:
    """The packaged MiniLM encoder with two-label exit heads drawn under ``torch.manual_seed(0)``, in eval mode."""
    import torch

    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.data import bundled_data_dir, read_labels
    from geep_deploy.model import ExitBert

    bb = load_backbone_dir()
    torch.manual_seed(0)
    model = ExitBert(bb.shape, 2)
    model.load_backbone(bb.weights)
    labels = read_labels(bundled_data_dir() / "labels.txt")
    return Checkpoint(model=model.eval(), method="geep", label_names=labels, tokenizer_json=bb.tokenizer_json,
                      max_len=max_len)


def fit_heads_on_frozen_states(ckpt: Checkpoint, rows: int = 2000, steps: int = 300) -> None:
    """Fit each exit head (Adam, cross-entropy, full batch) on the frozen [CLS] states of the first ``rows``
    bundled train rows; the encoder is not touched."""
    import torch

    from geep_deploy.data import bundled_data_dir, load_split
    from geep_deploy.encoding import TextEncoder
    from geep_deploy.evaluate import iter_sorted_batches

    train = load_split(bundled_data_dir(), "train").subset(rows)
    enc = TextEncoder(ckpt.tokenizer_json, ckpt.max_len).encode(train.texts_a)
    model, L = ckpt.model, ckpt.model.num_layers
    feats = torch.zeros(len(enc), L, model.shape.hidden_size)
    with torch.inference_mode():
        for idx, batch in iter_sorted_batches(enc, 64, "cpu", desc="probe features"):
            res = model.forward_all(**batch)
            feats[torch.from_numpy(idx)] = torch.stack([h[:, 0] for h in res.hidden], dim=1)
    y = torch.tensor(train.labels)
    for k in range(L):
        head = model.head(k + 1).train()
        opt = torch.optim.Adam(head.parameters(), lr=3e-3, weight_decay=1e-4)
        x = feats[:, k].clone()
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(head(x), y).backward()
            opt.step()
        head.eval()
