"""Classify texts with an exported model (GEEP: each input runs only to its predicted exit depth).

Give texts with --text (repeatable; --text-b adds the second side of a pair, once per --text) or a TSV file
with --input: a header line naming the columns `text` (or `text_a` and `text_b`) and optionally `label`, or no
header and the training format (`label<TAB>text`, `label<TAB>text_a<TAB>text_b`; one column: texts only). When
the file has labels (names or ids), it also prints the accuracy. Texts longer than the export's max length are
truncated.

Example (runs/demo/export_geep is written by `geep-deploy demo`):
  geep-deploy predict --export runs/demo/export_geep --text "a charming and often affecting journey" --json
  geep-deploy predict --export runs/demo/export_geep --input geep_deploy/datasets/sst2_demo/dev.tsv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from geep_deploy.errors import DataError
from geep_deploy.names import AUTO, AUTO_RULE, BACKENDS, DEVICES, PRECISIONS, PREDICTOR_KINDS


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--export", required=True, type=Path, help="export directory (geep-deploy export --out)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="a text to classify (repeatable)")
    src.add_argument("--input", type=Path,
                     help="TSV file: a header naming text (or text_a, text_b) and optionally label, or the training "
                          "format without header; with labels, the accuracy is printed too")
    p.add_argument("--text-b", action="append", help="second text of a pair, one per --text")
    p.add_argument("--backend", default=AUTO, choices=(AUTO, *BACKENDS),
                   help=f"default: {AUTO} ({AUTO_RULE})")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="default: cpu")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="tf32 is torch-only (default fp32)")
    p.add_argument("--batch-size", type=int, default=64, help="most rows per engine call (default 64)")
    p.add_argument("--depth", type=int, default=None, help="run every input at this depth (no exit prediction)")
    p.add_argument("--exact", action="store_true",
                   help="the full model's answers: every input at depth L, no early exit (the guarantee does not "
                        "apply because nothing exits early)")
    p.add_argument("--predictor", choices=PREDICTOR_KINDS, default=None,
                   help="dispatch by the exit table, the layer-1 probe or the entropy exit over the model's own heads "
                        "(default: what the export records)")
    p.add_argument("--json", action="store_true", help="print JSON (one record per input, plus timings)")
    p.add_argument("--no-progress", action="store_true", help=f"no progress bar (shown above {CHUNK} rows)")


CHUNK = 4096  # rows per predict call when showing progress: large enough for full depth groups


def shown_text(text_a: str, text_b: str | None = None, most: int = 60) -> str:
    """A row's text as predict prints it: cut to ``most`` characters, a pair as ``A || B`` (each half cut)."""
    def cut(t: str, n: int) -> str:
        return t if len(t) <= n else t[:n - 3] + "..."
    return cut(text_a, most) if text_b is None else f"{cut(text_a, most // 2)} || {cut(text_b, most // 2)}"


def predict_with_progress(eng: Any, texts_a: list[str], texts_b: list[str] | None, batch_size: int,
                          progress: bool, exact: bool = False) -> Any:
    """``eng.predict`` in chunks of CHUNK rows with a progress bar on stderr (a 100k-row file takes minutes);
    the same results as one call, since rows never interact."""
    import numpy as np
    from tqdm.auto import tqdm

    from runtime.engine import PredictResult
    from runtime.timing import StageTimes

    if not progress or len(texts_a) <= CHUNK:
        return eng.predict(texts_a, texts_b, batch_size=batch_size, exact=exact)
    parts, times = [], StageTimes()
    with tqdm(total=len(texts_a), desc="predict", unit="row") as bar:
        for s in range(0, len(texts_a), CHUNK):
            r = eng.predict(texts_a[s:s + CHUNK], None if texts_b is None else texts_b[s:s + CHUNK],
                            batch_size=batch_size, exact=exact)
            parts.append(r)
            times.merge(r.timings)
            bar.update(len(r))
    esc = None if parts[0].escalated is None else np.concatenate([r.escalated for r in parts])
    return PredictResult(np.concatenate([r.logits for r in parts]), np.concatenate([r.depths for r in parts]),
                         parts[0].label_names, times, escalated=esc)


def read_inputs(path: Path) -> tuple[list[str], list[str] | None]:
    """Texts (and second texts) of a TSV file (see ``read_labelled_inputs``)."""
    texts_a, texts_b, _ = read_labelled_inputs(path)
    return texts_a, texts_b


HEADERLESS = {1: ("text",), 2: ("label", "text"), 3: ("label", "text_a", "text_b")}


def read_labelled_inputs(path: Path) -> tuple[list[str], list[str] | None, list[str] | None]:
    """Texts, second texts and labels (as written) of a TSV file whose header names text, or text_a and text_b,
    and optionally label; a file without such a header is read as the training format (``HEADERLESS``)."""
    from geep_deploy.data import read_text_file

    lines = [ln.rstrip("\r") for ln in read_text_file(path, "predict").split("\n")]
    header = lines[0].split("\t") if lines and lines[0] else []
    start = 1
    if not {"text", "text_a", "label"} & {h.strip().lower() for h in header}:
        if len(header) not in HEADERLESS:
            raise DataError(f"predict | {path}:1 has {len(header)} columns and no header; give a header naming "
                            "`text` (or `text_a`, `text_b`) and optionally `label`.")
        header, start = list(HEADERLESS[len(header)]), 0
    names = {n.strip().lower(): i for i, n in enumerate(header)}
    a_col = names.get("text", names.get("text_a"))
    b_col = names.get("text_b")
    y_col = names.get("label")
    if a_col is None:
        raise DataError(f"predict | {path}:1 header {header!r} names no `text` or `text_a` column.")
    texts_a: list[str] = []
    texts_b: list[str] = []
    labels: list[str] = []
    for lineno, line in enumerate(lines[start:], start=start + 1):
        if not line:
            continue
        cols = line.split("\t")
        if len(cols) != len(header):
            raise DataError(f"predict | {path}:{lineno} has {len(cols)} columns, the header {len(header)}.")
        texts_a.append(cols[a_col])
        if b_col is not None:
            texts_b.append(cols[b_col])
        if y_col is not None:
            labels.append(cols[y_col].strip())
    if not texts_a:
        raise DataError(f"predict | {path} has {'a header but ' if start else ''}no rows.")
    return texts_a, (texts_b if b_col is not None else None), (labels if y_col is not None else None)


def accuracy_line(labels: list[str], label_ids: Any, label_names: list[str]) -> str:
    """``# accuracy ...`` of predictions against labels given by name or id; rows with another label are named."""
    ids = {n: i for i, n in enumerate(label_names)}
    gold = [ids.get(y, int(y) if y.isdigit() and int(y) < len(label_names) else None) for y in labels]
    known = [(g, int(p)) for g, p in zip(gold, label_ids) if g is not None]
    unknown = sorted({y for y, g in zip(labels, gold) if g is None})
    if not known:
        return (f"# no accuracy: the file's labels ({', '.join(unknown[:5])}) are none of the model's "
                f"({', '.join(label_names)}) nor ids 0..{len(label_names) - 1}")
    correct = sum(g == p for g, p in known)
    return (f"# accuracy {100 * correct / len(known):.2f}% ({correct} of {len(known)} labelled rows)"
            + (f"; {len(labels) - len(known)} rows with labels the model does not know skipped: "
               f"{', '.join(unknown[:5])}" if unknown else ""))


def run(args: argparse.Namespace) -> int:
    from runtime.engine import GeepEngine
    from runtime.options import LoadOptions

    if args.input is not None:
        if args.text_b:
            raise DataError("predict | --text-b goes with --text; put pairs in the --input file as text_a/text_b.")
        texts_a, texts_b, labels = read_labelled_inputs(args.input)
    else:
        labels = None
        texts_a, texts_b = args.text, args.text_b
        if texts_b is not None and len(texts_b) != len(texts_a):
            raise DataError(f"predict | got {len(texts_a)} --text but {len(texts_b)} --text-b; give one each.")
    if args.batch_size < 1:
        raise DataError(f"predict | --batch-size must be >= 1, got {args.batch_size}.")
    if args.exact and args.depth is not None:
        raise DataError("predict | --exact runs depth L; it cannot be combined with --depth.")
    opts = LoadOptions(backend=args.backend, device=args.device, precision=args.precision, fixed_depth=args.depth,
                       predictor=args.predictor)
    with GeepEngine.load(args.export, options=opts) as eng:
        res = predict_with_progress(eng, list(texts_a), None if texts_b is None else list(texts_b),
                                    args.batch_size, not args.no_progress, exact=args.exact)
        info = dict(eng.info)
    if args.depth is not None:
        info["predictor"] = f"fixed depth {args.depth}"
    elif args.exact:
        info["predictor"] = "exact (depth L)"
    switched = (args.backend == AUTO and info.get("backend") == "torch" and args.precision not in ("fp32", "tf32"))
    if switched:
        import sys

        print(f"predict | the export has no {args.precision} ONNX graphs, so {args.precision} runs on the torch "
              f"backend; for ONNX Runtime re-export with --precision fp32,{args.precision}, or pass --backend "
              "onnxruntime --precision fp32.", file=sys.stderr)
    acc = None if labels is None else accuracy_line(labels, [p.label_id for p in res.predictions],
                                                   list(res.label_names))
    if args.json:
        out = {"engine": info, "timings": res.timings.as_dict(), "predictions": res.to_records()}
        if acc is not None:
            out["accuracy"] = acc.lstrip("# ")
        print(json.dumps(out, indent=1))
        return 0
    for i, p in enumerate(res.predictions):
        print(f"{p.label}\t{max(p.probabilities):.3f}\tdepth {p.depth}/{info['num_layers']}\t"
              f"{shown_text(texts_a[i], None if texts_b is None else texts_b[i])}")
    t = res.timings.as_dict()
    print(f"# {info['backend']} {info['device']} {info['precision']}: {t['total_s'] * 1e3:.1f} ms total "
          f"(tokenize {t['tokenize_s'] * 1e3:.1f}, exits {t['predict_exits_s'] * 1e3:.1f}, "
          f"model {t['model_s'] * 1e3:.1f})"
          + (f"; probe dispatch, {res.num_escalated} escalated" if res.escalated is not None else ""))
    if acc is not None:
        print(acc)
    return 0
