"""One small end-to-end run on real weights (packaged all-MiniLM-L6-v2) and real data (bundled SST-2 rows).

train -> eval -> export (exit table calibrated from the data) -> GeepEngine on ONNX Runtime and torch -> predict,
all through the CLI a user types. Small (96 rows, one epoch) so it stays within CI's budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geep_deploy.checkpoint import load_checkpoint
from geep_deploy.cli import main
from geep_deploy.data import bundled_data_dir, load_split
from geep_deploy.encoding import pad_batch


def _slice(src: Path, dst: Path, rows: int) -> Path:
    dst.mkdir(parents=True)
    (dst / "labels.txt").write_text((src / "labels.txt").read_text())
    for split in ("train", "dev"):
        lines = (src / f"{split}.tsv").read_text().splitlines()
        (dst / f"{split}.tsv").write_text("\n".join(lines[: rows + 1]) + "\n")
    return dst


@pytest.mark.slow
def test_real_weights_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _slice(bundled_data_dir(), tmp_path / "sst2", 96)
    ckpt = tmp_path / "geep.pt"
    assert main(["train", "--data", str(data), "--method", "geep", "--out", str(ckpt), "--epochs", "1",
                 "--max-len", "32", "--batch-size", "32"]) == 0
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(data), "--json", str(tmp_path / "e.json")]) == 0
    ev = json.loads((tmp_path / "e.json").read_text())
    assert [d["depth"] for d in ev["per_depth"]] == [1, 2, 3, 4, 5, 6]
    assert ev["per_depth"][0]["flops_speedup"] > 4.0
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--calib-data", str(data), "--quiet"]) == 0
    assert (out / "manifest.json").is_file()

    from runtime.engine import GeepEngine

    dev = load_split(data, "dev")
    model = load_checkpoint(ckpt).model
    results = {}
    for backend in ("onnxruntime", "torch"):
        with GeepEngine.load(out, backend=backend) as eng:
            res = eng.predict(dev.texts_a[:40], batch_size=16)
            enc = eng.encoder.encode(dev.texts_a[:40])
        assert len(res) == 40 and set(np.unique(res.depths)) <= set(range(1, 7))
        np.testing.assert_allclose(res.probabilities.sum(1), 1.0, atol=1e-5)
        # each row's logits equal the PyTorch model run at the depth the engine used for it
        for i in (0, 17, 39):
            b = {k: torch.from_numpy(v) for k, v in pad_batch(enc.take([i])).items()}
            with torch.no_grad():
                ref = model(**b, depth=int(res.depths[i]))[0].numpy()
            np.testing.assert_allclose(res.logits[i], ref, atol=1e-4)
        results[backend] = res
    assert (results["onnxruntime"].depths == results["torch"].depths).all()
    capsys.readouterr()
    assert main(["predict", "--export", str(out), "--text", "a charming and often affecting journey"]) == 0
    assert any(name in capsys.readouterr().out for name in ("0", "1"))
