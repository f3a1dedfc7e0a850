"""Classify texts with an exported model (GEEP: each input runs only to its predicted exit depth).

Give texts with --text (repeatable; --text-b adds the second side of a pair, once per --text) or a TSV file
with --input: a header line naming the columns `text` (or `text_a` and `text_b`); a `label` column, if present,
is ignored. Texts longer than the export's max length are truncated.

Example:
  geep-deploy predict --export runs/export --text "a charming and often affecting journey" --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from geep_deploy.errors import DataError
from geep_deploy.names import AUTO, BACKENDS, DEVICES, PRECISIONS


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--export", required=True, type=Path, help="export directory (geep-deploy export --out)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="a text to classify (repeatable)")
    src.add_argument("--input", type=Path, help="TSV file with a header: text, or text_a<TAB>text_b")
    p.add_argument("--text-b", action="append", help="second text of a pair, one per --text")
    p.add_argument("--backend", default=AUTO, choices=(AUTO, *BACKENDS))
    p.add_argument("--device", default="cpu", choices=DEVICES)
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="tf32 is torch-only (default fp32)")
    p.add_argument("--batch-size", type=int, default=64, help="most rows per engine call (default 64)")
    p.add_argument("--depth", type=int, default=None, help="run every input at this depth (no exit prediction)")
    p.add_argument("--predictor", choices=("table", "probe"), default=None,
                   help="dispatch by the exit table or the layer-1 probe (default: what the export records)")
    p.add_argument("--json", action="store_true", help="print JSON (one record per input, plus timings)")
    p.add_argument("--no-progress", action="store_true", help=f"no progress bar (shown above {CHUNK} rows)")


CHUNK = 4096  # rows per predict call when showing progress: large enough for full depth groups


def predict_with_progress(eng: Any, texts_a: list[str], texts_b: list[str] | None, batch_size: int,
                          progress: bool) -> Any:
    """``eng.predict`` in chunks of CHUNK rows with a progress bar on stderr (a 100k-row file takes minutes);
    the same results as one call, since rows never interact."""
    import numpy as np
    from tqdm.auto import tqdm

    from runtime.engine import PredictResult
    from runtime.timing import StageTimes

    if not progress or len(texts_a) <= CHUNK:
        return eng.predict(texts_a, texts_b, batch_size=batch_size)
    parts, times = [], StageTimes()
    with tqdm(total=len(texts_a), desc="predict", unit="row") as bar:
        for s in range(0, len(texts_a), CHUNK):
            r = eng.predict(texts_a[s:s + CHUNK], None if texts_b is None else texts_b[s:s + CHUNK],
                            batch_size=batch_size)
            parts.append(r)
            times.merge(r.timings)
            bar.update(len(r))
    esc = None if parts[0].escalated is None else np.concatenate([r.escalated for r in parts])
    return PredictResult(np.concatenate([r.logits for r in parts]), np.concatenate([r.depths for r in parts]),
                         parts[0].label_names, times, escalated=esc)


def read_inputs(path: Path) -> tuple[list[str], list[str] | None]:
    """Texts (and second texts) of a TSV file whose header names text, or text_a and text_b."""
    from geep_deploy.data import read_text_file

    lines = [ln.rstrip("\r") for ln in read_text_file(path, "predict").split("\n")]
    header = lines[0].split("\t") if lines and lines[0] else []
    names = {n: i for i, n in enumerate(header)}
    a_col = names.get("text", names.get("text_a"))
    b_col = names.get("text_b")
    if a_col is None:
        raise DataError(f"predict | {path}:1 header {header!r} names no `text` or `text_a` column.")
    texts_a: list[str] = []
    texts_b: list[str] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        cols = line.split("\t")
        if len(cols) != len(header):
            raise DataError(f"predict | {path}:{lineno} has {len(cols)} columns, the header {len(header)}.")
        texts_a.append(cols[a_col])
        if b_col is not None:
            texts_b.append(cols[b_col])
    if not texts_a:
        raise DataError(f"predict | {path} has a header but no rows.")
    return texts_a, (texts_b if b_col is not None else None)


def run(args: argparse.Namespace) -> int:
    from runtime.engine import GeepEngine

    if args.input is not None:
        if args.text_b:
            raise DataError("predict | --text-b goes with --text; put pairs in the --input file as text_a/text_b.")
        texts_a, texts_b = read_inputs(args.input)
    else:
        texts_a, texts_b = args.text, args.text_b
        if texts_b is not None and len(texts_b) != len(texts_a):
            raise DataError(f"predict | got {len(texts_a)} --text but {len(texts_b)} --text-b; give one each.")
    if args.batch_size < 1:
        raise DataError(f"predict | --batch-size must be >= 1, got {args.batch_size}.")
    with GeepEngine.load(args.export, args.backend, args.device, args.precision, fixed_depth=args.depth,
                         predictor=args.predictor) as eng:
        res = predict_with_progress(eng, list(texts_a), None if texts_b is None else list(texts_b),
                                    args.batch_size, not args.no_progress)
        info = eng.info
    if args.json:
        out = {"engine": info, "timings": res.timings.as_dict(), "predictions": res.to_records()}
        print(json.dumps(out, indent=1))
        return 0
    for p, text in zip(res.predictions, texts_a):
        short = text if len(text) <= 60 else text[:57] + "..."
        print(f"{p.label}\t{max(p.probabilities):.3f}\tdepth {p.depth}/{info['num_layers']}\t{short}")
    t = res.timings.as_dict()
    print(f"# {info['backend']} {info['device']} {info['precision']}: {t['total_s'] * 1e3:.1f} ms total "
          f"(tokenize {t['tokenize_s'] * 1e3:.1f}, exits {t['predict_exits_s'] * 1e3:.1f}, "
          f"model {t['model_s'] * 1e3:.1f})"
          + (f"; probe dispatch, {res.num_escalated} escalated" if res.escalated is not None else ""))
    return 0
