"""Compare accuracy and latency of GEEP and the baselines across backends and precisions.

Every method runs in the same runtime on the same length-sorted batches of one split; repeats are interleaved
and times are medians. Speed-ups are against `full` with the same backend, precision and batch size; "model"
time covers the engines only, "e2e" adds tokenisation and exit prediction. Bare `fastbert`, `pabee` and `static`
expand to a sweep (speeds 0.1,0.2,0.3,0.5; patience 1,2,3; depths 1..L-1); give `fastbert:0.3` for one.
`probe:0.3+esc0.6` runs the layer-1 probe dispatch of an export made with --probe (risk 0.3, escalation above
normalised entropy 0.6); `geep` always dispatches by the exit table.

Example:
  geep-deploy bench --export runs/demo/export_geep --data geep_deploy/datasets/sst2_demo --batch-sizes 64 \\
      --methods full,probe,fastbert --baseline-export fastbert=runs/demo/export_fastbert --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from geep_deploy.errors import ConfigError
from geep_deploy.names import AUTO, AUTO_RULE, BACKENDS, DEVICES, ONNXRUNTIME, PRECISIONS


def _csv(kind: type, what: str):  # argparse type factory
    def parse(text: str) -> list:
        try:
            vals = [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a comma-separated list, got {text!r}") from None
        if not vals:
            raise argparse.ArgumentTypeError(f"{what} is empty")
        return vals

    parse.numeric_kind = kind  # geep_deploy.cli.checks range-checks every element
    return parse


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--export", required=True, type=Path, help="export directory (geep-deploy export --out)")
    p.add_argument("--data", required=True, type=Path, help="dataset directory with labels.txt and <split>.tsv")
    p.add_argument("--split", default="dev", help="split to run (default: dev)")
    p.add_argument("--backend", default=ONNXRUNTIME, choices=(*BACKENDS, AUTO),
                   help=f"runtime every method is timed on (default: {ONNXRUNTIME}; {AUTO}: {AUTO_RULE})")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="default: cpu")
    p.add_argument("--precision", default=["fp32"], type=_csv(str, "--precision"),
                   help=f"comma list of {','.join(PRECISIONS)} (what the export has; default fp32)")
    p.add_argument("--batch-sizes", default=[1, 32, 128], type=_csv(int, "--batch-sizes"),
                   help="comma list (default 1,32,128)")
    p.add_argument("--methods", default="full,geep,fastbert,pabee,static",
                   help="comma list of full, geep[:Q+M], geep-pool[:Q+M] (rows pooled per predicted depth across the "
                        "split), probe[:R[+escT]] (the layer-1 probe dispatch at risk R, escalating above "
                        "entropy T; exports with --probe), entropy[:T] (the served entropy dispatch, "
                        "GeepEngine.with_entropy; bare: the export's --entropy threshold), static[:k], fastbert[:speed] "
                        "(the same rule through the bench's own walk, on FastBERT's export if given), "
                        "pabee[:patience]; a suffix @NAME runs a method on the export --baseline-export NAME=DIR gives "
                        "(default: full,geep,fastbert,pabee,static)")
    p.add_argument("--baseline-export", action="append", default=[], metavar="NAME=DIR",
                   help="run a baseline on its own export, e.g. fastbert=runs/export_fastbert (repeatable; "
                        "default: the same export's heads); any other NAME is an export methods pick with @NAME, "
                        "e.g. skip=runs/export_skip with --methods probe:0.3@skip")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians are reported (default 3)")
    p.add_argument("--threads", type=int, default=None, help="intra-op CPU threads (default: backend's choice)")
    p.add_argument("--max-rows", type=int, default=None, help="use only the first N rows of the split")
    p.add_argument("--json", type=Path, default=None, help="write the records and machine info here")
    p.add_argument("--plot", type=Path, default=None, help="draw accuracy vs wall-clock speed-up (PNG)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from geep_deploy.atomic import atomic_path, check_output_file
    from geep_deploy.bench.harness import BenchConfig, format_table, run_bench
    from geep_deploy.bench.plot import plot
    from geep_deploy.limits import check_count

    if args.repeats < 1:
        raise ConfigError(f"bench | --repeats must be >= 1, got {args.repeats}.")
    if any(b < 1 for b in args.batch_sizes):
        raise ConfigError(f"bench | batch sizes must be >= 1, got {args.batch_sizes}.")
    check_count("bench | --threads", args.threads, allow_none=True)
    check_count("bench | --max-rows", args.max_rows, allow_none=True)
    if not args.methods.strip(" ,"):
        raise ConfigError(f"bench | --methods {args.methods!r} names no method. Give e.g. full,geep.")
    if args.json:  # fail now, not after the benchmark ran
        check_output_file(args.json, "bench --json")
    plot_path = None
    if args.plot:
        plot_path = args.plot if args.plot.suffix else args.plot.with_suffix(".png")
        check_output_file(plot_path, "bench --plot")
    baseline: dict[str, Path] = {}
    for item in args.baseline_export:
        method, sep, d = item.partition("=")
        if not sep or not method or not d:
            raise ConfigError(f"bench | --baseline-export expects NAME=DIR (NAME: fastbert, pabee, static, full, "
                              f"or a name methods pick with @NAME); got {item!r}.")
        baseline[method] = Path(d)
    cfg = BenchConfig(export=args.export, data=args.data, split=args.split, backend=args.backend,
                      device=args.device, precisions=args.precision, batch_sizes=args.batch_sizes,
                      methods=args.methods, baseline_exports=baseline, repeats=args.repeats, threads=args.threads,
                      max_rows=args.max_rows, progress=not args.no_progress)
    result = run_bench(cfg)
    if args.json:  # first, so a run whose cells failed still leaves its JSON (with the error rows)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    m, recs, errors = result["machine"], result["records"], result.get("errors", [])
    rows = f"{recs[0]['rows']} rows" if recs else "no rows"
    print(f"# {m.get('gpu') or m['cpu']} ({m['cpu_count']} cores); {args.backend} {args.device}; {rows} of "
          f"{args.split}; medians of {args.repeats} repeats")
    print(format_table(recs, errors))
    if args.json:
        print(f"wrote {args.json}")
    if plot_path is not None and recs:
        print(f"wrote {plot(recs, plot_path)}")
    if errors:
        print(f"bench | {len(errors)} cell(s) failed or were refused; see the rows above and 'errors' in the JSON.",
              file=sys.stderr)
    return 1 if errors else 0
