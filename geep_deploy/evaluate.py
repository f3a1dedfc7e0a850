"""Running a trained model over a dataset: per-depth logits from one pass, with length-sorted batches."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from geep_deploy.encoding import Encoded, length_sorted_batches, pad_batch
from geep_deploy.errors import CheckpointError
from geep_deploy.model import ExitBert


def torch_batch(enc: Encoded, idx: np.ndarray, device: str | torch.device, pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad rows ``idx`` of ``enc`` to their longest and move them to ``device``."""
    arrays = pad_batch(enc.take(idx), pad_id=pad_id)
    return {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}


def iter_sorted_batches(
    enc: Encoded, batch_size: int, device: str | torch.device, desc: str | None = None
) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Yield (row indices, padded batch) in length-sorted order, with a progress bar when ``desc`` is given."""
    batches = length_sorted_batches(enc.lengths, batch_size)
    for idx in tqdm(batches, desc=desc, disable=desc is None, leave=False):
        yield idx, torch_batch(enc, idx, device)


def collect_skip_logits(
    model: ExitBert, enc: Encoded, batch_size: int = 64, device: str = "cpu", desc: str | None = None
) -> np.ndarray:
    """(N, L-1, C) logits of the shared exit path at depths 1..L-1: layers 1..k, then layer L and the teacher.

    This is the path GEEP's shared exit loss trains (and EasyNLP's released GEEP exits through); it costs one
    layer more than the student at depth k.
    """
    return collect_depth_and_skip_logits(model, enc, batch_size, device, desc)[1]


def exit_path_logits(depth_logits: np.ndarray, skip_logits: np.ndarray | None) -> np.ndarray:
    """(N, L, C) logits of the exits a dispatch answers from: the students' (``depth_logits``) when
    ``skip_logits`` is None, else the shared exit path at depths 1..L-1 and depth L's own (the same graph)."""
    if skip_logits is None:
        return depth_logits
    if skip_logits.shape[0] != depth_logits.shape[0] or skip_logits.shape[1] != depth_logits.shape[1] - 1:
        raise ValueError(f"exit_path_logits | shared-path logits {skip_logits.shape} do not fit depth logits "
                         f"{depth_logits.shape}.")
    return np.concatenate([skip_logits, depth_logits[:, -1:]], axis=1)


def collect_depth_logits(
    model: ExitBert, enc: Encoded, batch_size: int = 64, device: str = "cpu", desc: str | None = None
) -> np.ndarray:
    """(N, L, C) float32 logits of every row at every depth, from one pass through all layers per batch."""
    return _collect(model, enc, batch_size, device, desc, skip=False)[0]


def collect_depth_and_skip_logits(
    model: ExitBert, enc: Encoded, batch_size: int = 64, device: str = "cpu", desc: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every depth's logits (N, L, C) and the shared exit path's (N, L-1, C) from the same single pass."""
    depth, skip = _collect(model, enc, batch_size, device, desc, skip=True)
    assert skip is not None
    return depth, skip


@torch.inference_mode()
def _collect(model: ExitBert, enc: Encoded, batch_size: int, device: str, desc: str | None,
             skip: bool) -> tuple[np.ndarray, np.ndarray | None]:
    model.eval().to(device)
    L, C = model.num_layers, model.num_labels
    out = np.zeros((len(enc), L, C), dtype=np.float32)
    shared = np.zeros((len(enc), L - 1, C), dtype=np.float32) if skip else None
    for idx, batch in iter_sorted_batches(enc, batch_size, device, desc):
        res = model.forward_all(**batch)
        out[idx] = torch.stack(res.logits, dim=1).float().cpu().numpy()
        if shared is not None and L > 1:
            shared[idx] = torch.stack([model.teacher_from(h, res.mask_bias, res.attention_mask)
                                       for h in res.hidden[: L - 1]], dim=1).float().cpu().numpy()
    if not np.isfinite(out).all():
        rows, depths = np.nonzero(~np.isfinite(out).all(axis=2))
        raise CheckpointError(f"model | the model gives NaN/inf logits for {len(set(rows.tolist()))} of {len(enc)} "
                              f"rows (first at depth {int(depths.min()) + 1}); an accuracy over them would be "
                              "meaningless. The weights are damaged or training diverged: retrain or use another "
                              "checkpoint.")
    return out, shared
