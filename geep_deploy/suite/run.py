"""The resumable multi-dataset evaluation: slices, backbone, training, logits, calibration, export, bench, summary.

Every step writes its output atomically under ``work/<dataset>/`` (the seeded slices) and
``work/<dataset>/seed<S>/`` (what training seed S trained and measured), and is skipped when that output exists,
so an interrupted run continues where it stopped (``--fresh`` redoes a dataset). ``full``, GEEP and PABEE get the
same epoch budget over the same rows; FastBERT is trained as published (``stage_epochs``): its first stage is the
``full`` checkpoint itself (so its depth L answers exactly as ``full`` does), then its students self-distil with
that backbone frozen for FastBERT's own distillation epochs.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geep_deploy.atomic import atomic_write_text
from geep_deploy.suite.answers import answers_path, save_answers
from geep_deploy.suite.consistency import ScoredRows, consistency_knobs, consistency_table
from geep_deploy.suite.datasets import DatasetSpec, head_slice, tune_split, write_slices
from geep_deploy.suite.points import (
    TARGET_SPEEDUPS,
    area_under,
    auc,
    entropy_curve,
    geep_curve,
    interpolate_at,
    noise_knob,
    operating_points,
    paired_difference_ci,
    patience_curve,
    split_answers,
    static_curve,
    transfer,
    tuned_frontier,
)
from geep_deploy.suite.protocol import (
    ALL_DEPTH_L,
    AREA_RANGE,
    BENCH_RUNS,
    FASTBERT_DISTILL_EPOCHS,
    GEEP_EXPORT,
    HEADLINE,
    SKIP_EXPORT,
    SUITE_DISTILL_WEIGHT,
)

TRAINED = ("geep", "fastbert", "pabee", "full")
EXITING = ("geep", "fastbert", "pabee")  # the methods with a classifier at every depth
VOCAB_ABLATION = "full-minilm-vocab"
BENCH_BATCHES = (1, 64)
ZH_BACKBONE = "minilm-bert-base-chinese-vocab"


@dataclass
class SuiteConfig:
    """What to run and where; defaults are the committed run's settings."""

    datasets: list[DatasetSpec]
    data_root: Path
    work: Path = Path("runs/multi_dataset")
    results: Path = Path("bench/results/multi_dataset")
    zh_vocab: Path | None = None  # defaults to <data_root>/../models/vocab/bert-base-chinese/vocab.txt
    backbone: Path | None = None  # defaults to the packaged MiniLM
    epochs: int = 4  # the fine-tuning budget: full, GEEP and PABEE; FastBERT's teacher is `full`
    geep_loss: Any = None  # GeepLossConfig; None = the trainer's defaults with SUITE_DISTILL_WEIGHT
    seed: int = 42  # the slices' seed (train/pool/test rows are the same for every training seed)
    train_seeds: tuple[int, ...] = (42,)  # every method is trained once per seed on the same rows
    train_only: bool = False  # train every checkpoint, measure nothing (long runs start early)
    bench_rows: dict[int, int] = field(default_factory=lambda: {1: 300, 64: 1024})
    repeats: int = 5  # interleaved repeats per bench run (two runs: BENCH_RUNS)
    threads: int | None = None
    bench: bool = True
    vocab_ablation: tuple[str, ...] = ("afqmc", "thucnews_titles")
    zh_embed_lr: float | None = 5e-4  # new vocabulary rows start random: they learn at the heads' rate
    fresh: bool = False
    command: str = ""


class _Log:
    """Step headers with the elapsed time, so a long run shows where it is."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def step(self, ds: str, what: str) -> None:
        print(f"\n[{time.perf_counter() - self.t0:7.0f}s] {ds}: {what}", flush=True)


def _backbone(cfg: SuiteConfig, lang: str, log: _Log) -> Any:
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.errors import GeepError

    base = load_backbone_dir(cfg.backbone)
    if lang == "en":
        return base
    out = cfg.work / "backbones" / ZH_BACKBONE
    if out.is_dir():
        try:
            return load_backbone_dir(out)
        except GeepError as e:
            print(f"rebuilding {out}: {e}")
    from geep_deploy.vocab import transplant_vocab

    vocab = cfg.zh_vocab or cfg.data_root.parent / "models" / "vocab" / "bert-base-chinese" / "vocab.txt"
    log.step("backbone", f"MiniLM with the vocabulary {vocab}")
    bb, report = transplant_vocab(base, vocab, out, lowercase=True, seed=cfg.seed)
    print(f"{report.copied} embedding rows kept, {report.drawn} drawn -> {out}")
    return bb


def stage_epochs(method: str, budget: int) -> tuple[int, int | None]:
    """(epochs, distill_epochs) of ``method`` at a fine-tuning budget of ``budget`` epochs.

    ``full``, GEEP and PABEE fine-tune for the whole budget in one stage. FastBERT as published: its first stage
    is ``full`` (the whole budget, the same checkpoint), then ``FASTBERT_DISTILL_EPOCHS`` of distillation.
    """
    if method.split("-")[0] == "fastbert":
        return budget, FASTBERT_DISTILL_EPOCHS
    return budget, None


def _default_loss() -> Any:
    from geep_deploy.methods import GeepLossConfig

    return GeepLossConfig()


def _geep_loss(cfg: SuiteConfig) -> Any:
    return cfg.geep_loss or dataclasses.replace(_default_loss(), distill_weight=SUITE_DISTILL_WEIGHT)


def _loss_dict(loss: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(loss).items()}


def _recipe(cfg: SuiteConfig, spec: DatasetSpec, method: str, rows: int, seed: int,
            teacher: Any = None) -> dict[str, Any]:
    """The hyper-parameters a cached checkpoint must match to be reused (FastBERT's: also its teacher's weights)."""
    epochs, distill = stage_epochs(method, cfg.epochs)
    recipe = {"epochs": epochs, "distill_epochs": distill, "max_len": spec.max_len, "seed": seed,
              "train_rows": rows, "embed_lr": cfg.zh_embed_lr if spec.lang == "zh" else None}
    if method == "geep":
        recipe["geep"] = _loss_dict(_geep_loss(cfg))
    if teacher is not None:
        recipe["teacher"] = {"weights_sha256": teacher.weights_sha256}
    return recipe


def _train(cfg: SuiteConfig, spec: DatasetSpec, method: str, backbone: Any, train_ds: Any, path: Path,
           log: _Log, seed: int, teacher: Any = None) -> tuple[Any, bool]:
    """A checkpoint trained by ``cfg``'s recipe: reused when one is cached, else trained. Returns (ckpt, trained).

    ``teacher``: FastBERT's first stage (the ``full`` checkpoint of the same seed); only its students train."""
    from geep_deploy.checkpoint import load_checkpoint, save_checkpoint
    from geep_deploy.trainer import TrainConfig, train

    recipe = _recipe(cfg, spec, method, len(train_ds), seed, teacher)
    if path.is_file():
        ckpt = load_checkpoint(path)
        cached = {k: ckpt.hparams.get(k) for k in recipe}
        if isinstance(cached.get("teacher"), dict):
            cached["teacher"] = {"weights_sha256": cached["teacher"].get("weights_sha256")}
        if isinstance(cached.get("geep"), dict):  # options added since it was trained had their default then
            cached["geep"] = {**_loss_dict(_default_loss()), **cached["geep"]}
        if cached == recipe:
            return ckpt, False
        print(f"retraining {path}: it was trained with {cached}, the run asks for {recipe}")
    epochs, distill = recipe["epochs"], recipe["distill_epochs"]
    what = (f"{distill} distillation epochs from the `full` teacher" if teacher is not None
            else f"{epochs} epochs")
    log.step(spec.name, f"train {method} (seed {seed}) on {len(train_ds)} rows ({what})")
    ckpt = train(backbone, train_ds, None, TrainConfig(method=method.split("-")[0], epochs=epochs,
                                                       distill_epochs=distill, max_len=spec.max_len,
                                                       seed=seed, embed_lr=recipe["embed_lr"],
                                                       geep=_geep_loss(cfg)), teacher=teacher)
    save_checkpoint(ckpt, path)
    return ckpt, True


def _encode(ckpt: Any, ds: Any) -> Any:
    from geep_deploy.encoding import TextEncoder

    return TextEncoder(ckpt.tokenizer_json, ckpt.max_len).encode(ds.texts_a, ds.texts_b)


def _logits(ckpt: Any, enc: Any) -> np.ndarray:
    from geep_deploy.evaluate import collect_depth_logits

    return collect_depth_logits(ckpt.model, enc, 64, "cpu", desc="per-depth logits")


def _shared_path_logits(ckpt: Any, enc: Any) -> np.ndarray:
    from geep_deploy.evaluate import collect_skip_logits

    return collect_skip_logits(ckpt.model, enc, 64, "cpu", desc="shared exit path logits")


def _read_cached(path: Path, read: Any) -> Any:
    """A cached step's output, or None when it is missing or unreadable (then the step runs again)."""
    if not path.is_file():
        return None
    try:
        return read(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # truncated or foreign file
        print(f"recomputing {path}: {type(e).__name__}: {e}")
        return None


def _export(ckpt_path: Path, out: Path, exit_table: Path | None, log: _Log, ds: str,
            probe: Path | None = None, exit_mode: str | None = None) -> Path:
    from export.bundle import export_checkpoint, load_export
    from geep_deploy.errors import GeepError

    if out.is_dir():
        try:
            load_export(out, verify=False)
            return out
        except GeepError as e:
            print(f"rebuilding {out}: {e}")
    log.step(ds, f"export {ckpt_path.name} -> {out}")
    extra = {} if probe is None else {"probe": probe}
    if exit_mode is not None:  # the shared-path export serves the probe only: no segment graphs
        extra.update(exit_mode=exit_mode, segments=False)
    export_checkpoint(ckpt_path, out, exit_table=exit_table, precisions=("fp32",), force=True, **extra)
    return out


def _bench(cfg: SuiteConfig, work: Path, exports: dict[str, Path], knobs: list[str], reported: np.ndarray,
           log: _Log, ds: str) -> dict[int, list[dict[str, Any]]]:
    """``BENCH_RUNS`` separate runs per batch size (cached per run), every run with the same methods and rows."""
    out: dict[int, list[dict[str, Any]]] = {bs: [] for bs in BENCH_BATCHES}
    for run in range(1, BENCH_RUNS + 1):
        for bs in BENCH_BATCHES:
            out[bs].append(_bench_run(cfg, work, exports, knobs, reported, log, ds, bs, run))
    return out


def _bench_run(cfg: SuiteConfig, work: Path, exports: dict[str, Path], knobs: list[str], reported: np.ndarray,
               log: _Log, ds: str, bs: int, run: int) -> dict[str, Any]:
    from geep_deploy.bench.harness import BenchConfig, engine_settings, run_bench

    path = work / f"bench_b{bs}_run{run}.json"
    rows = cfg.bench_rows[bs]
    cached = _read_cached(path, lambda p: json.loads(p.read_text(encoding="utf-8")))
    if cached is not None:  # reused only when it ran the same methods on as many rows as often, same settings
        recs = cached["records"]
        if (sorted(r["method"] for r in recs) == sorted(knobs)
                and all(r["rows"] == min(rows, len(reported)) and r["repeats"] == cfg.repeats for r in recs)
                and cached.get("config", {}).get("engine_settings") == engine_settings("onnxruntime", "cpu")):
            return cached
    log.step(ds, f"wall-clock bench run {run}/{BENCH_RUNS}, ONNX Runtime CPU fp32, batch {bs}, {rows} test rows, "
                 f"{len(knobs)} methods")
    data = head_slice(work.parent / "data", work / f"bench_rows_b{bs}", rows, among=reported)
    res = run_bench(BenchConfig(
        export=exports["geep"], data=data, split="test", batch_sizes=(bs,), methods=",".join(knobs),
        baseline_exports={**{m: exports[m] for m in ("full", "fastbert", "pabee", SKIP_EXPORT)},
                          GEEP_EXPORT: exports["geep"]},
        repeats=cfg.repeats, threads=cfg.threads))
    if res.get("errors"):  # the page shows a failed method as unmeasured; the run says why, loudly
        from geep_deploy.errors import ConfigError

        reasons = "; ".join(f"{e.get('method')}: {e.get('reason', '')[:160]}" for e in res["errors"])
        raise ConfigError(f"suite | {ds} bench run {run} at batch {bs} failed for {len(res['errors'])} cell(s): "
                          f"{reasons}. Nothing was cached for it; fix the cause and rerun (finished steps resume).")
    atomic_write_text(path, json.dumps(res, indent=1) + "\n")
    return res


PROBE_POOL_SIZES = (250, 500, 1000, 2000)


def _logit_arrays(work: Path, ckpts: dict[str, Any], geep: Any, enc_pool: Any, enc_test: Any,
                  log: _Log, ds: str) -> dict[str, np.ndarray]:
    """Per-depth logits of every method on the held-out pool and the test rows, plus GEEP's shared exit path on
    both (the probe over that path is fitted and tuned on the pool). Cached; only missing arrays are computed."""
    path = work / "logits.npz"
    jobs = {"test_geep_shared_path": lambda: _shared_path_logits(geep, enc_test),
            "pool_geep_shared_path": lambda: _shared_path_logits(geep, enc_pool)}
    for m, ck in ckpts.items():  # `full` has no knob to choose on the pool
        jobs[f"test_{m}"] = lambda ck=ck: _logits(ck, enc_test)
        if m in EXITING:
            jobs[f"pool_{m}"] = lambda ck=ck: _logits(ck, enc_pool)
    arrays = _read_cached(path, lambda p: dict(np.load(p))) or {}
    missing = [k for k in jobs if k not in arrays]
    if missing:
        log.step(ds, f"logits on the held-out pool and on test: {', '.join(missing)}")
        arrays.update({k: jobs[k]() for k in missing})
        np.savez(path.with_suffix(".tmp.npz"), **arrays)
        path.with_suffix(".tmp.npz").replace(path)
    return arrays


def _curves(arrays: dict[str, np.ndarray], split: str, labels: np.ndarray, lengths: np.ndarray, geep: Any,
            mass: np.ndarray, probe_probs: np.ndarray, skip_probs: np.ndarray,
            rows: np.ndarray | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every method's accuracy/FLOPs sweep on one split (``pool`` or ``test``; its ``rows`` when given), with
    identical knobs on every split. ``skip_probs`` are the probe's over the shared exit path. Every point carries
    its per-row answers (``points.split_answers`` separates them)."""
    from export.calibration import DEFAULT_QUANTILES, dev_curve
    from export.probe_fit import ESCALATE_GRID, ProbeSweep, probe_curve

    sel = slice(None) if rows is None else rows
    labels, lengths, mass, probe_probs = labels[sel], lengths[sel], mass[sel], probe_probs[sel]
    shape, L = geep.shape, geep.shape.num_hidden_layers
    lg = {m: arrays[f"{split}_{m}"][sel] for m in EXITING}
    shared = _shared_exits(arrays, split)[sel]
    full = arrays[f"{split}_full"][sel] if f"{split}_full" in arrays else lg["fastbert"]  # the pool never picks it
    return {
        "full": [{**static_curve(full, labels, lengths, shape, answers=True)[-1], "knob": "full"}],
        "geep": geep_curve(dev_curve(mass, lg["geep"], labels, lengths, geep, DEFAULT_QUANTILES,
                                     tuple(range(min(2, L - 1) + 1)), answers=True)),
        "probe": probe_curve(probe_probs, lg["geep"], labels, lengths, shape, ProbeSweep(answers=True)),
        "probe_esc": probe_curve(probe_probs, lg["geep"], labels, lengths, shape,
                                 ProbeSweep(escalations=[e for e in ESCALATE_GRID if e is not None], answers=True)),
        "probe_skip": probe_curve(skip_probs[sel], shared, labels, lengths, shape,
                                  ProbeSweep(exit_mode="skip", source=SKIP_EXPORT, answers=True)),
        "fastbert": entropy_curve(lg["fastbert"], labels, lengths, shape, answers=True),
        "pabee": patience_curve(lg["pabee"], labels, lengths, shape, answers=True),
        "static": static_curve(lg["geep"], labels, lengths, shape, answers=True),
        # GEEP's own students under FastBERT's entropy exit, run on GEEP's export: separates training from prediction
        "geep_entropy": entropy_curve(lg["geep"], labels, lengths, shape, answers=True, suffix=f"@{GEEP_EXPORT}"),
    }


def _shared_exits(arrays: dict[str, np.ndarray], split: str) -> np.ndarray:
    """(N, L, C) exits of GEEP's shared exit path on ``split``: layers 1..k, then layer L and the teacher."""
    from geep_deploy.evaluate import exit_path_logits

    return exit_path_logits(arrays[f"{split}_geep"], arrays[f"{split}_geep_shared_path"])


def prepare_slices(cfg: SuiteConfig, spec: DatasetSpec, log: _Log) -> dict[str, Any]:
    """``work/<dataset>/data``: the seeded train/pool/test slices, written once (``write_slices``); returns their
    record (row counts, duplicates dropped from test). New slices make everything trained on the old ones stale."""
    root = cfg.work / spec.name
    data = root / "data"
    slicing = {"seed": cfg.seed, "train_rows": spec.train_rows, "test_rows": spec.test_rows,
               "pool_rows": spec.pool_rows, "train_split": spec.train_split, "test_split": spec.test_split,
               "test_dedup": "text in train or pool"}
    marker = data / "slices.json"
    cached = _read_cached(marker, lambda p: json.loads(p.read_text(encoding="utf-8")))
    if cached is None or {k: cached.get(k) for k in slicing} != slicing:
        log.step(spec.name, "write the seeded train/pool/test slices")
        for derived in (p for p in root.glob("*") if p.name != "data"):  # trained or measured on other rows
            shutil.rmtree(derived) if derived.is_dir() else derived.unlink()
        cached = {**slicing, "rows": write_slices(spec, cfg.data_root, data, seed=cfg.seed)}
        atomic_write_text(marker, json.dumps(cached))
        print(f"{spec.name}: {cached['rows']['test_dropped_duplicates']} test rows dropped: their text is in the "
              "train slice or the pool")
    return cached


def train_checkpoints(cfg: SuiteConfig, spec: DatasetSpec, seed: int, log: _Log,
                      backbone: Any = None) -> dict[str, tuple[Any, bool]]:
    """Every method's checkpoint for training seed ``seed`` (cached): ``full`` first, as FastBERT's teacher.
    ``backbone``: the dataset's backbone when the caller already has it."""
    from geep_deploy.data import load_split

    prepare_slices(cfg, spec, log)
    train_ds = load_split(cfg.work / spec.name / "data", "train")
    backbone = backbone or _backbone(cfg, spec.lang, log)
    ckpt_dir = seed_dir(cfg, spec, seed) / "ckpt"
    trained = {"full": _train(cfg, spec, "full", backbone, train_ds, ckpt_dir / "full.pt", log, seed)}
    for m in TRAINED:
        if m != "full":
            teacher = trained["full"][0] if m == "fastbert" else None
            trained[m] = _train(cfg, spec, m, backbone, train_ds, ckpt_dir / f"{m}.pt", log, seed, teacher)
    return {m: trained[m] for m in TRAINED}


def train_again(cfg: SuiteConfig, spec: DatasetSpec, seed: int, method: str, out: Path, teacher: Any = None) -> Any:
    """``method`` of training seed ``seed`` trained now by the suite's recipe into ``out`` (replaced), on the cached
    slices; ``teacher``: FastBERT's `full` checkpoint. For ``retrain_check``: the cached checkpoints stay as they are."""
    from geep_deploy.data import load_split

    log = _Log()
    out.unlink(missing_ok=True)  # _train reuses a checkpoint it finds: this one must be trained now
    train_ds = load_split(cfg.work / spec.name / "data", "train")
    return _train(cfg, spec, method, _backbone(cfg, spec.lang, log), train_ds, out, log, seed, teacher)[0]


def seed_summary_path(results: Path, dataset: str, seed: int) -> Path:
    """Where one training seed's summary of a dataset goes (``aggregate`` reads every seed's)."""
    return results / dataset / f"seed{seed}.json"


def seed_dir(cfg: SuiteConfig, spec: DatasetSpec, seed: int) -> Path:
    """What training seed ``seed`` trained and measured on ``spec``'s slices."""
    return cfg.work / spec.name / f"seed{seed}"


def run_dataset(cfg: SuiteConfig, spec: DatasetSpec, log: _Log, seed: int | None = None) -> dict[str, Any]:
    """All steps for one dataset and training seed (default: the first of ``cfg.train_seeds``); returns (and
    writes) its summary."""
    from export.calibration import batch_mass, calibrate_from_logits
    from export.probe_calibration import fit_layer1_probe, out_of_fold_mass
    from export.probe_fit import cross_fitted_probabilities, fit_probe
    from geep_deploy.data import load_split
    from geep_deploy.exits import consistency_exit_depths
    from runtime.probe import probe_features

    seed = cfg.train_seeds[0] if seed is None else seed
    slices = prepare_slices(cfg, spec, log)
    backbone = _backbone(cfg, spec.lang, log)
    trained = train_checkpoints(cfg, spec, seed, log, backbone)
    data, work = cfg.work / spec.name / "data", seed_dir(cfg, spec, seed)
    train_ds, pool_ds, test_ds = (load_split(data, s) for s in ("train", "dev", "test"))  # dev = the pool
    ckpts = {m: ck for m, (ck, _) in trained.items()}
    if any(new for _, new in trained.values()):  # everything derived from older checkpoints is stale
        for stale in (work / "logits.npz", work / "exit_table.geep", work / "probe.json", work / "probe_skip.json",
                      work / "answers.npz", *work.glob("bench_b*.json")):  # answers.npz: runs before answers_path
            stale.unlink(missing_ok=True)
        shutil.rmtree(work / "export", ignore_errors=True)
    ablation = None
    if spec.lang == "zh" and spec.name in cfg.vocab_ablation:
        ck, _ = _train(cfg, spec, VOCAB_ABLATION, _backbone(cfg, "en", log), train_ds,
                       work / "ckpt" / f"{VOCAB_ABLATION}.pt", log, seed)
        ablation = _ablation_figures(ck, test_ds)

    from geep_deploy.encoding import TextEncoder

    geep = ckpts["geep"]  # every trained method shares the dataset's backbone, hence its tokenizer
    encoder = TextEncoder(geep.tokenizer_json, geep.max_len)
    enc_pool, enc_test = (encoder.encode(d.texts_a, d.texts_b) for d in (pool_ds, test_ds))
    arrays = _logit_arrays(work, ckpts, geep, enc_pool, enc_test, log, spec.name)
    labels, pool_labels = np.asarray(test_ds.labels), np.asarray(pool_ds.labels)
    lengths, pool_lengths = enc_test.lengths, enc_pool.lengths
    L = geep.shape.num_hidden_layers
    tune, report = tune_split(spec, len(test_ds), cfg.seed)

    # The token table: exit labels of the held-out pool (no model trained on those rows), as `calibrate` builds it;
    # its descriptive figures are on the rows that choose operating points.
    if tune is None:
        sel_ids, sel_logits, sel_labels = enc_pool.ids, arrays["pool_geep"], pool_labels
    else:
        sel_ids, sel_logits, sel_labels = [enc_test.ids[i] for i in tune], arrays["test_geep"][tune], labels[tune]
    calib = calibrate_from_logits(geep, enc_pool.ids, arrays["pool_geep"], sel_ids, sel_logits, sel_labels,
                                  sorted(encoder.special_ids), target_speedup=2.0)
    table = work / "exit_table.geep"
    calib.predictor.checkpoint = geep.weights_sha256  # what `calibrate` records: export checks it
    if not table.is_file():
        calib.predictor.save(table)
    # The table was built from every pool row's exit label, so on the pool its figures would be in-sample (on AG
    # News it looked 3 points better there than on test): each pool row is scored by a table built on the other
    # folds, as the probe's pool scores are cross-fitted (pool curves, and the probe fitted with table features).
    exits_pool = consistency_exit_depths(arrays["pool_geep"])
    mass = {"pool": out_of_fold_mass(enc_pool.ids, exits_pool, L, sorted(encoder.special_ids), seed=cfg.seed),
            "test": batch_mass(calib.predictor, enc_test.ids)}
    # The layer-1 probe: fitted on the pool's exit labels; the pool's own scores are cross-fitted (tuning rows never
    # fitted the probe that scored them); test rows are scored by the probe fitted on the whole pool. It reads depth
    # 1's logits and the length, not the table: with the table's features (cross-fitted on the pool) its AUC was
    # about the same
    # (`probe_with_table` in `hard_row_auc`).
    probe, pool_feats = fit_layer1_probe(arrays["pool_geep"][:, 0], pool_lengths, exits_pool, L)
    feats = {"pool": pool_feats, "test": probe_features(arrays["test_geep"][:, 0], lengths)}
    probs = {"pool": cross_fitted_probabilities(feats["pool"], exits_pool, L, seed=cfg.seed),
             "test": probe.probabilities(feats["test"])}
    # The same probe features, with exit labels and answers from GEEP's shared exit path (one layer more).
    exits_skip = consistency_exit_depths(_shared_exits(arrays, "pool"))
    skip_probe, _ = fit_layer1_probe(arrays["pool_geep"][:, 0], pool_lengths, exits_skip, L, exit_mode="skip")
    skip_probs = {"pool": cross_fitted_probabilities(feats["pool"], exits_skip, L, seed=cfg.seed),
                  "test": skip_probe.probabilities(feats["test"])}
    if tune is None:
        tune_curves = _curves(arrays, "pool", pool_labels, pool_lengths, geep, mass["pool"], probs["pool"],
                              skip_probs["pool"])
    else:
        tune_curves = _curves(arrays, "test", labels, lengths, geep, mass["test"], probs["test"], skip_probs["test"],
                              rows=tune)
    curves = _curves(arrays, "test", labels, lengths, geep, mass["test"], probs["test"], skip_probs["test"],
                     rows=report)
    tune_curves, _ = split_answers(tune_curves)
    curves, answers = split_answers(curves)
    # Operating points are chosen on the tuning rows for every method alike, then reported on the other rows.
    points = {m: transfer(operating_points(tune_curves[m]), curves[m]) for m in curves if m != "full"}
    fair = fair_figures(tune_curves, curves)
    # The guarantee needs certifying rows the probe did not fit: on the pool, a probe fitted on one half scores
    # the other half (which certifies) and the test rows; SST-2's tuning half of test never fitted the pool's probe.
    if tune is None:
        fit, trows = np.array_split(np.random.default_rng(cfg.seed + 3).permutation(len(pool_labels)), 2)
        half = fit_probe(feats["pool"][fit], exits_pool[fit], L, uses_table=False)
        cert_probs, test_probs = half.probabilities(feats["pool"][trows]), half.probabilities(feats["test"][report])
        tsplit, tlen, tlab = "pool", pool_lengths, pool_labels
    else:
        trows, tsplit, tlen, tlab = tune, "test", lengths, labels
        cert_probs, test_probs = probs["test"][tune], probs["test"][report]
    consistency = consistency_table(
        geep.shape,
        ScoredRows(arrays[f"{tsplit}_geep"][trows], tlen[trows], cert_probs, labels=tlab[trows],
                   fastbert_logits=arrays[f"{tsplit}_fastbert"][trows]),
        ScoredRows(arrays["test_geep"][report], lengths[report], test_probs, labels=labels[report],
                   fastbert_logits=arrays["test_fastbert"][report]))
    save_answers(answers_path(cfg.results, spec.name, seed), labels[report], answers)
    probe_path, skip_probe_path = work / "probe.json", work / "probe_skip.json"
    for fitted, path, export_dir, method in ((probe, probe_path, "geep", "probe"),
                                             (skip_probe, skip_probe_path, "geep_skip", "probe_skip")):
        at2 = points[method][TARGET_SPEEDUPS.index(2.0)]
        fitted = dataclasses.replace(fitted.with_knobs(risk=at2["risk"] if at2 else 0.5),
                                     checkpoint=geep.weights_sha256)
        _invalidate_if_probe_changed(work, fitted, export_dir)
        fitted.save(path)
    y = labels[report]
    per_depth = {m: [float((arrays[f"test_{m}"][report, k].argmax(-1) == y).mean())
                     for k in range(L)] for m in EXITING}
    shared_path = arrays["test_geep_shared_path"][report]
    summary: dict[str, Any] = {
        "dataset": spec.to_dict(),
        "rows": {"train": len(train_ds), "pool": len(pool_ds), "test": len(report),
                 "tune": len(pool_ds) if tune is None else len(tune)},
        "command": cfg.command, "epoch_budget": cfg.epochs, "seed": seed, "slice_seed": cfg.seed,
        "test_dropped_duplicates": slices["rows"]["test_dropped_duplicates"],
        "epochs": {m: [e for e in stage_epochs(m, cfg.epochs) if e] for m in TRAINED},
        "geep_loss": _recipe(cfg, spec, "geep", len(train_ds), seed)["geep"],
        "embed_lr": cfg.zh_embed_lr if spec.lang == "zh" else None,
        "backbone": str(backbone.path.name if spec.lang == "zh" else "all-MiniLM-L6-v2 (packaged)"),
        # FastBERT's training is its teacher's (the `full` checkpoint) plus its distillation
        "train_seconds": {m: _train_seconds(ckpts, m) for m in ckpts},
        "stage_seconds": {m: ck.metrics.get("stage_seconds") for m, ck in ckpts.items()},
        "full_accuracy": curves["full"][0]["accuracy"], "per_depth_accuracy": per_depth,
        "depth_l_minus_full_ci95": list(paired_difference_ci(arrays["test_geep"][report, -1].argmax(-1) == y,
                                                             arrays["test_full"][report, -1].argmax(-1) == y,
                                                             seed=cfg.seed)),
        # GEEP's shared exit path (layers 1..k, then layer L and the teacher) at depths 1..L-1
        "per_depth_shared_path": [float((shared_path[:, k].argmax(-1) == y).mean())
                                  for k in range(shared_path.shape[1])],
        "majority_share": float(np.bincount(y).max() / len(y)),
        # whether the set learns at all is decided on the tuning rows, like every other choice
        "tuning": _tuning_figures(arrays, labels if tune is not None else pool_labels, tune),
        "targets": list(TARGET_SPEEDUPS), "points_chosen_on": spec.tune_on,
        "curves": curves, "points": points, "headline": HEADLINE, "fair": fair,
        # issue 27: knobs certified on the tuning rows to disagree with depth L on at most EPS of rows
        "consistency": consistency,
        "exit_prediction": {k: calib.figures[k] for k in (
            "dev_mae_layers", "dev_within_one_layer", "dev_mae_layers_constant_median", "oracle_accuracy",
            "oracle_flops_speedup", "table_keys", "dev_exit_hist", "dev_predicted_hist", "calib_rows")},
        "vocab_ablation": ablation,
        "hard_row_auc": _hard_row_auc(probs["test"][:, 0], feats, mass, exits_pool, arrays, lengths, L,
                                      pool_lengths),
    }
    if cfg.bench:
        exports = {"geep": _export(work / "ckpt" / "geep.pt", work / "export" / "geep", table, log, spec.name,
                                   probe=probe_path),
                   SKIP_EXPORT: _export(work / "ckpt" / "geep.pt", work / "export" / "geep_skip", None, log,
                                        spec.name, probe=skip_probe_path, exit_mode="skip")}
        for m in ("fastbert", "pabee", "full"):
            exports[m] = _export(work / "ckpt" / f"{m}.pt", work / "export" / m, None, log, spec.name)
        L = int(ckpts["geep"].model.num_layers)
        # every chosen point, the identical contender (noise), GEEP sending every row to depth L (probe:0) and
        # every knob the consistency table chose (issue 27 reports its wall-clock speed-up too)
        knobs = ["full"] + sorted({p["knob"] for m, ps in points.items() for p in ps if p is not None}
                                  | {noise_knob(L), ALL_DEPTH_L} | consistency_knobs(consistency))
        benches = _bench(cfg, work, exports, knobs, report, log, spec.name)
        summary["machine"] = benches[BENCH_BATCHES[0]][0]["machine"]
        summary["engine_settings"] = benches[BENCH_BATCHES[0]][0]["config"].get("engine_settings", {})
        summary["bench"] = {str(bs): _bench_summary(runs, L, cfg.repeats) for bs, runs in benches.items()}
    out = seed_summary_path(cfg.results, spec.name, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(summary, indent=1) + "\n")
    print(f"wrote {out}")
    return summary


def fair_figures(tune_curves: dict[str, list[Any]], curves: dict[str, list[Any]]) -> dict[str, Any]:
    """One rule for every method: its curve is the tuning rows' frontier knobs with their reported figures
    (``tuned_frontier``); its accuracy at exactly each target FLOPs speed-up is interpolated on that curve
    (``interpolate_at``; below the curve's slowest point, that point answers: a knob at least as fast and, on the
    tuning rows, at least as accurate as any slower one), and its area is the mean accuracy over ``AREA_RANGE``."""
    out: dict[str, Any] = {"targets": list(TARGET_SPEEDUPS), "area_range": list(AREA_RANGE), "methods": {}}
    for m, test_curve in curves.items():
        if m == "full":
            continue
        curve = tuned_frontier(tune_curves[m], test_curve)
        out["methods"][m] = {"frontier": [c["knob"] for c in curve],
                             "at": {f"{t:g}": interpolate_at(curve, t) for t in TARGET_SPEEDUPS},
                             "area": area_under(curve, *AREA_RANGE)}
    return out


def _tuning_figures(arrays: dict[str, np.ndarray], labels: np.ndarray, tune: np.ndarray | None) -> dict[str, Any]:
    """On the tuning rows: the best accuracy of any method at any depth (FastBERT's depth L is `full`) and the
    majority-class share, so the page can tell a set that learns without reading the reported rows."""
    split, rows = ("pool", slice(None)) if tune is None else ("test", tune)
    y = labels[rows]
    best = max(float((arrays[f"{split}_{m}"][rows][:, k].argmax(-1) == y).mean())
               for m in EXITING for k in range(arrays[f"{split}_{m}"].shape[1]))
    return {"rows": int(len(y)), "best_accuracy": best, "majority_share": float(np.bincount(y).max() / len(y))}


def _train_seconds(ckpts: dict[str, Any], method: str) -> float | None:
    """A method's training seconds; FastBERT's are its teacher's (the `full` checkpoint) plus its distillation.
    None when a checkpoint did not record its time."""
    parts = [ckpts[method].metrics.get("train_seconds")]
    if method == "fastbert":
        parts.append(ckpts["full"].metrics.get("train_seconds"))
    return None if any(p is None for p in parts) else float(sum(parts))


def _invalidate_if_probe_changed(work: Path, probe: Any, export_dir: str = "geep") -> None:
    """An export (and its benches) built with another probe is rebuilt: the bench's knob names would not tell."""
    from runtime.probe import ProbeModel

    old = work / "export" / export_dir / "probe.json"
    if old.is_file() and ProbeModel.load(old).to_dict() != probe.to_dict():
        print(f"rebuilding {old.parent}: its probe differs from the one fitted now")
        shutil.rmtree(old.parent)
        for stale in work.glob("bench_b*.json"):
            stale.unlink()


def _hard_row_auc(probe_score: np.ndarray, feats: dict[str, np.ndarray], mass: dict[str, np.ndarray],
                  exits_pool: np.ndarray, arrays: dict[str, np.ndarray], lengths: np.ndarray, L: int,
                  pool_lengths: np.ndarray) -> dict[str, Any]:
    """How well each signal finds the test rows that need more than depth 1 (consistency label > 1), as ROC AUC.

    Also the probe with the table's features added, and the probe against the size of the pool it was fitted on.
    """
    test_mass = mass["test"]
    from export.probe_calibration import fit_layer1_probe
    from export.probe_fit import fit_probe
    from geep_deploy.exits import consistency_exit_depths, normalized_entropy
    from runtime.probe import probe_features

    logits = arrays["test_geep"]
    hard = consistency_exit_depths(logits) > 1
    expected = (test_mass * np.arange(1, test_mass.shape[1] + 1)).sum(axis=1)
    with_table, _ = fit_layer1_probe(arrays["pool_geep"][:, 0], pool_lengths, exits_pool, L, mass=mass["pool"])
    by_size = {}
    for n in (*[n for n in PROBE_POOL_SIZES if n < len(exits_pool)], len(exits_pool)):
        fitted = fit_probe(feats["pool"][:n], exits_pool[:n], L, uses_table=False)
        by_size[str(n)] = auc(fitted.probabilities(feats["test"])[:, 0], hard)
    return {"hard_share": float(hard.mean()), "predictor_expected_depth": auc(expected, hard),
            "length": auc(lengths, hard), "depth1_entropy": auc(normalized_entropy(logits[:, 0]), hard),
            "probe": auc(probe_score, hard),
            "probe_with_table": auc(with_table.probabilities(probe_features(logits[:, 0], lengths, test_mass))[:, 0],
                                    hard),
            "probe_by_pool_size": by_size}


def _bench_summary(runs: list[dict[str, Any]], num_layers: int, repeats: int) -> dict[str, Any]:
    """One batch size's runs: every method's fields (wall-clock: the mean of the runs' speed-ups, each run's
    beside it), and the noise: how far the identical contender (``noise_knob``) sits from 1.00x in any run."""
    per_run = [{r["method"]: _bench_fields(r) for r in b["records"]} for b in runs]
    records = {}
    for m, first in per_run[0].items():
        walls = [pr[m]["wall_speedup"] for pr in per_run if m in pr]
        records[m] = {**first, "wall_speedup": float(np.mean(walls)), "wall_speedup_runs": walls}
    noise = [abs(pr[noise_knob(num_layers)]["wall_speedup"] - 1.0) for pr in per_run if noise_knob(num_layers) in pr]
    return {"rows": runs[0]["records"][0]["rows"], "repeats": repeats, "runs": len(runs), "records": records,
            "noise": max(noise) if noise else None}


def _bench_fields(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("accuracy", "flops_speedup", "wall_speedup", "wall_speedup_e2e", "model_s",
                              "exit_s", "mean_depth", "batch_latency_ms", "escalated_share") if k in r}


def _ablation_figures(ck: Any, test_ds: Any) -> dict[str, Any]:
    from geep_deploy.vocab import tokenizer_vocab

    enc = _encode(ck, test_ds)
    unk = tokenizer_vocab(ck.tokenizer_json).index("[UNK]")
    body = np.concatenate([r[1:-1] for r in enc.ids])
    return {"method": "full", "vocab": "all-MiniLM-L6-v2 (bert-base-uncased)",
            "accuracy": float((_logits(ck, enc)[:, -1].argmax(-1) == np.asarray(test_ds.labels)).mean()),
            "unk_token_share": float((body == unk).mean()), "train_seconds": ck.metrics.get("train_seconds")}


def run_suite(cfg: SuiteConfig) -> list[dict[str, Any]]:
    """Every dataset in turn, then the results page."""
    from geep_deploy.suite.page import write_page

    cfg.command = cfg.command or shlex.join([".venv/bin/python", sys.argv[0], *sys.argv[1:]])
    log = _Log()
    if cfg.fresh:  # once, before any seed: a later seed must not delete what an earlier one trained
        for spec in cfg.datasets:
            shutil.rmtree(cfg.work / spec.name, ignore_errors=True)
    if cfg.train_only:  # every dataset's first seed before any second seed: whole seeds land first
        for seed in cfg.train_seeds:
            for spec in cfg.datasets:
                train_checkpoints(cfg, spec, seed, log)
        return []
    from geep_deploy.suite.aggregate import aggregate_dataset

    out = [run_dataset(cfg, spec, log, seed) for seed in cfg.train_seeds for spec in cfg.datasets]
    for spec in cfg.datasets:
        aggregate_dataset(cfg.results, cfg.work, spec.name)
    write_page(cfg.results)
    return out
