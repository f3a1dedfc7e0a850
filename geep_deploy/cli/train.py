"""Train BERT with exits on a TSV dataset directory (train.tsv, dev.tsv, labels.txt).

Methods: geep (shared exit loss + distillation in one step), fastbert (teacher, then distilled students),
pabee (depth-weighted CE at every layer), full (plain fine-tuning). FastBERT as published (what the demo and the
multi-dataset suite run): train `full` first, then `--method fastbert --teacher full.pt`, which starts from that
checkpoint and runs only FastBERT's distillation epochs. The checkpoint holds weights, tokenizer, labels and the
training history. Data: train.tsv (labels as names or ids, header optional; see geep_deploy/data.py), optional
dev.tsv, optional labels.txt.

Example:
  geep-deploy train --data geep_deploy/datasets/sst2_demo --method geep --out runs/geep.pt --epochs 4
  geep-deploy train --data geep_deploy/datasets/sst2_demo --method full --out runs/full.pt --epochs 4
  geep-deploy train --data geep_deploy/datasets/sst2_demo --method fastbert --out runs/fastbert.pt \\
      --teacher runs/full.pt            # FastBERT as published: 5 distillation epochs from the full model
  # Chinese text: MiniLM's vocabulary makes most Chinese tokens [UNK]; swap in a Chinese BERT vocabulary
  geep-deploy train --data my_chinese_data --method geep --out runs/zh.pt --vocab bert-base-chinese/vocab.txt
"""

from __future__ import annotations

import argparse

from geep_deploy.errors import ConfigError
from geep_deploy.names import DEVICES
from geep_deploy.suite.protocol import FASTBERT_DISTILL_EPOCHS, SUITE_DISTILL_WEIGHT


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset directory with train.tsv, labels.txt and optionally dev.tsv")
    p.add_argument("--method", required=True, choices=["geep", "fastbert", "pabee", "full"])
    p.add_argument("--out", required=True, help="checkpoint file to write (written atomically)")
    p.add_argument("--backbone", default=None, help="Hugging Face BERT directory (default: packaged all-MiniLM-L6-v2)")
    p.add_argument("--max-train", type=int, default=None, help="use only the first N training rows")
    p.add_argument("--epochs", type=int, default=2, help="epochs per stage (default 2)")
    p.add_argument("--distill-epochs", type=int, default=None,
                   help=f"epochs of FastBERT's distillation stage (default: {FASTBERT_DISTILL_EPOCHS} with --teacher, "
                        "else --epochs)")
    p.add_argument("--teacher", default=None, metavar="FULL_CKPT",
                   help="fastbert: start from this `full` checkpoint (trained on the same rows) and run only the "
                        "distillation, as FastBERT is published")
    p.add_argument("--batch-size", type=int, default=32, help="training rows per step (default: 32)")
    p.add_argument("--max-len", type=int, default=128, help="truncate inputs to N tokens (default 128)")
    p.add_argument("--lr", type=float, default=5e-5, help="backbone learning rate (default 5e-5)")
    p.add_argument("--head-lr", type=float, default=5e-4, help="exit heads' learning rate (default 5e-4)")
    p.add_argument("--embed-lr", type=float, default=None,
                   help="word embeddings' learning rate (default: --lr); raise it with --vocab, whose new rows "
                        "start random")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="default: cpu")
    p.add_argument("--seed", type=int, default=42, help="seed of initialisation and shuffling (default: 42)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="distillation temperature (geep, fastbert; default: 1.0)")
    p.add_argument("--exit-set", default=None, help="GEEP's K, e.g. 1,3,5 (default: 1..L-1)")
    p.add_argument("--student-ce-weight", type=float, default=0.0,
                   help="geep: add gold-label cross-entropy to every student's loss with this weight (default 0; "
                        "see bench/results/train_diagnostics_*.json for what it changes)")
    p.add_argument("--distill-warmup", type=float, default=0.0,
                   help="geep: ramp the distillation weight from 0 over this share of the steps (default 0)")
    p.add_argument("--distill-weight", type=float, default=1.0,
                   help="geep: weight of the students' distillation (default 1, the reference; the multi-dataset "
                        f"suite and the demo use {SUITE_DISTILL_WEIGHT}, see docs/training.md)")
    p.add_argument("--skip-weight", type=float, default=1.0,
                   help="geep: weight of the shallow depths' shared-path terms (k < L-1) against the full path's "
                        "(default 1, the reference)")
    p.add_argument("--pooling", default="mean", choices=["mean", "cls"],
                   help="what exit heads classify: masked mean of the states (default) or the [CLS] state")
    p.add_argument("--vocab", default=None,
                   help="train with this BERT vocab.txt instead of the backbone's: shared tokens keep their "
                        "embedding, new ones start random (see geep_deploy/vocab.py); e.g. bert-base-chinese")
    p.add_argument("--no-dev", action="store_true", help="skip per-epoch evaluation on dev.tsv")


def run(args: argparse.Namespace) -> int:
    from geep_deploy.backbone import load_backbone_dir
    from geep_deploy.checkpoint import save_checkpoint
    from geep_deploy.data import available_splits, load_split
    from geep_deploy.methods import GeepLossConfig
    from geep_deploy.trainer import TrainConfig, train

    try:
        exit_set = tuple(int(x) for x in args.exit_set.split(",")) if args.exit_set else None
    except ValueError:
        raise ConfigError(f"train | --exit-set {args.exit_set!r} is not a comma-separated list of depths.") from None
    if args.teacher is not None and args.method != "fastbert":
        raise ConfigError(f"train | --teacher is FastBERT's first stage (a `full` checkpoint); --method "
                          f"{args.method} trains without one. Drop --teacher, or use --method fastbert.")
    distill_epochs = args.distill_epochs
    if args.teacher is not None and distill_epochs is None:
        distill_epochs = FASTBERT_DISTILL_EPOCHS
    cfg = TrainConfig(
        method=args.method, epochs=args.epochs, distill_epochs=distill_epochs, batch_size=args.batch_size,
        lr=args.lr, head_lr=args.head_lr, embed_lr=args.embed_lr, max_len=args.max_len, seed=args.seed,
        device=args.device, pooling=args.pooling,
        geep=GeepLossConfig(exit_set=exit_set, temperature=args.temperature,
                            student_ce_weight=args.student_ce_weight, distill_warmup=args.distill_warmup,
                            skip_weight=args.skip_weight, distill_weight=args.distill_weight),
    )
    cfg.validate()
    cfg.geep.validate()
    from geep_deploy.atomic import check_output_file
    from geep_deploy.limits import check_count, check_max_len

    check_output_file(args.out, "train --out")  # fail now, not after hours of training
    check_count("train | --max-train", args.max_train, allow_none=True)
    teacher = None
    if args.teacher is not None:
        from geep_deploy.checkpoint import load_checkpoint

        teacher = load_checkpoint(args.teacher)
        if teacher.method != "full":
            raise ConfigError(f"train | --teacher {args.teacher} is a `{teacher.method}` checkpoint; FastBERT's "
                              "teacher is a `full` one: train it first with --method full on the same data.")
    backbone = load_backbone_dir(args.backbone)  # its config only: the weights load when training starts
    check_max_len("train | --max-len", args.max_len, backbone.shape.max_position_embeddings)
    L = backbone.shape.num_hidden_layers
    if args.method == "geep":  # the loss's own rule (`methods.exit_set`), before any data or weights are read
        from geep_deploy.methods import exit_set as checked_exit_set

        try:
            checked_exit_set(cfg.geep, L)
        except ConfigError:
            raise ConfigError(f"train | --exit-set {args.exit_set}: the backbone ({backbone.path.name}) has {L} "
                              f"layers, so GEEP's exit depths K must lie in 1..{L - 1} (depth L is the "
                              "teacher's).") from None
    if args.vocab:
        import tempfile
        from pathlib import Path

        from geep_deploy.vocab import transplant_vocab

        tmp = tempfile.TemporaryDirectory(prefix="geep-vocab-")  # the checkpoint carries tokenizer and embeddings
        backbone, report = transplant_vocab(backbone, Path(args.vocab), Path(tmp.name) / "backbone", seed=args.seed)
        print(f"train | vocabulary {args.vocab}: {report.copied} of {report.new_vocab_size} tokens keep a "
              f"pretrained embedding, {report.drawn} start random")
    train_ds = load_split(args.data, "train").subset(args.max_train)
    write_label_names(args.data, train_ds.label_names)
    dev_ds = load_split(args.data, "dev") if "dev" in available_splits(args.data) and not args.no_dev else None
    print(f"train | {args.method} on {len(train_ds)} rows of {args.data} ({backbone.path.name}, "
          f"{backbone.shape.num_hidden_layers} layers), device {args.device}")
    ckpt = train(backbone, train_ds, dev_ds, cfg, teacher=teacher)
    save_checkpoint(ckpt, args.out)
    print(f"train | wrote {args.out} in {ckpt.metrics['train_seconds']}s")
    return 0


def write_label_names(data: str, names: list[str]) -> None:
    """Without labels.txt, write the names taken from train.tsv, so every later command maps labels the same way."""
    from pathlib import Path

    from geep_deploy.atomic import atomic_write_text

    path = Path(data) / "labels.txt"
    if path.exists():
        return
    try:
        atomic_write_text(path, "\n".join(names) + "\n")
        print(f"train | no labels.txt in {data}: wrote it from train.tsv's labels ({', '.join(names[:10])}"
              f"{', ...' if len(names) > 10 else ''}; line number = label id)")
    except OSError as e:
        print(f"train | no labels.txt in {data} and it cannot be written ({e.strerror}); labels are mapped in the "
              "order shown by the checkpoint.")
