"""Command line: ``python -m mlrobust {run,bench,config,datasets,pretrain}``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlrobust", description="Multi-label learning with missing, "
                                "partial and noisy labels: training runs and benchmarks.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate one experiment")
    run.add_argument("--config", type=Path, help="YAML or JSON experiment config (defaults if omitted)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set train.lr=0.01 (repeatable)")
    again = run.add_mutually_exclusive_group()  # a folder that already holds a run is refused otherwise
    again.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    again.add_argument("--overwrite", action="store_true", help="replace the run already in the run folder "
                       "(its files are deleted once the new run is built and holds the folder)")

    bench = sub.add_parser("bench", help="write the performance record: training, inference, data loading and "
                           "method step times relative to BCE (Markdown)")
    bench.add_argument("--backbone", default="cnn_s")
    bench.add_argument("--image-size", type=int, default=32)
    bench.add_argument("--batch-size", type=int, default=64)
    bench.add_argument("--classes", type=int, default=24, help="number of classes of the random labels")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--steps", type=int, default=20, help="timed steps (batches for data loading) per measurement")
    bench.add_argument("--warmup", type=int, default=5, help="untimed steps before each measurement")
    bench.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    bench.add_argument("--no-channels-last", action="store_true")
    bench.add_argument("--compile", action="store_true", help="torch.compile the model of every measurement")
    bench.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    bench.add_argument("--loss", default="bce", help="loss of the training-step row")
    bench.add_argument("--methods", default="all", metavar="LIST",
                       help="method ratio table: 'all', 'none' or a comma list of method names "
                       "(a wrong name lists the valid ones)")
    bench.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds of the method table")
    bench.add_argument("--frozen", type=int, default=2, metavar="K",
                       help="model.freeze_at of the frozen-layers table (with and without stored maps); 0 skips it")
    bench.add_argument("--dataset", default="shapescenes", help="registered dataset of the loading table")
    bench.add_argument("--data-root", help="root of a dataset read from disk")
    bench.add_argument("--workers", type=int, default=0, help="DataLoader workers of the loading table")
    bench.add_argument("--arg", dest="dataset_args", action="append", default=[], metavar="KEY=VALUE",
                       help="a loader option of --dataset, e.g. --arg layout=csv (repeatable)")
    bench.add_argument("--augment", default="none,flip,weak,strong", metavar="LIST",
                       help="augmentation policies of the loading table, a comma list of none, flip, weak, "
                       "strong ('' skips the table)")
    bench.add_argument("--output", type=Path, help="also write the record (Markdown) to this file")

    cfg = sub.add_parser("config", help="print the default config (with overrides) as YAML")
    cfg.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    ds = sub.add_parser("datasets", help="list the registered datasets, or describe one on disk")
    ds.add_argument("name", nargs="?", help="a registered dataset: print its splits' counts and label statistics")
    ds.add_argument("--root", help="the dataset's folder (data.root)")
    ds.add_argument("--split", action="append", help="split(s) to read (default: train and test)")
    ds.add_argument("--n", type=int, default=0, help="images per split: a seeded subset; 0 (default) keeps a "
                    "whole split of a dataset on disk (the generated benchmark needs n >= 1)")
    ds.add_argument("--arg", dest="dataset_args", action="append", default=[], metavar="KEY=VALUE",
                    help="a loader option, e.g. --arg keep_empty=false (repeatable)")

    pre = sub.add_parser("pretrain", help="rebuild a shipped pretrained backbone from its recorded settings and "
                         "check that it is bit-identical to the shipped file")
    pre.add_argument("--name", default="cnn_s-objects32", help="a shipped backbone (mlrobust.pretrained.SHIPPED)")
    pre.add_argument("--output", type=Path, help="where to write the rebuilt weights (default: beside the "
                     "shipped file, as <name>.rebuilt.safetensors; the shipped file is never overwritten)")
    pre.add_argument("--device", default="cpu", help="bit-identity is only promised on the CPU")
    return p


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from .pretrained import SHIPPED, rebuild

    record = rebuild(args.name, args.output, args.device)
    print(json.dumps(record, indent=2))
    if not record["identical"]:
        print(f"the rebuild differs from the shipped file (expected SHA-256 {SHIPPED[args.name].sha256}); "
              "a different platform or library version changes the low bits of training", file=sys.stderr)
        return 1
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import ExperimentConfig, apply_overrides, load_config
    from .experiments import run_experiment

    from .engine.distributed import init_distributed

    cfg = load_config(args.config) if args.config else ExperimentConfig()
    cfg = apply_overrides(cfg, args.overrides)
    info = init_distributed(cfg.train.device)  # under torchrun: join the process group
    try:
        result = run_experiment(cfg, resume=args.resume, overwrite=args.overwrite)
    finally:
        if info.distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    if info.rank == 0:
        print(json.dumps({"run_dir": str(result.run_dir), "test": result.metrics}, indent=2))
    return 0


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from .bench import BenchSettings, format_report, run_bench

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    settings = BenchSettings(args.backbone, args.image_size, args.batch_size, args.device, args.steps, args.warmup,
                             amp=not args.no_amp, channels_last=not args.no_channels_last, compile=args.compile,
                             num_classes=args.classes)
    methods = {"all": None, "none": []}.get(args.methods, _comma_list(args.methods))
    tables = run_bench(settings, loss=args.loss, methods=methods, rounds=args.rounds, dataset=args.dataset,
                       data_root=args.data_root, workers=args.workers, augment=_comma_list(args.augment),
                       dataset_args=_key_values(args.dataset_args), frozen=args.frozen)
    report = format_report(tables, settings.dev)
    print(report, end="")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(report)
    return 0


def _key_values(items: list[str]) -> dict[str, Any]:
    """``--arg KEY=VALUE`` options, each value read as YAML (numbers, booleans, lists)."""
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--arg expects KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)
    return options


def _cmd_datasets(args: argparse.Namespace) -> int:
    from .data import DATASETS, create_dataset

    if args.name is None:
        print("\n".join(sorted(DATASETS)))
        return 0
    options = _key_values(args.dataset_args)
    for split in args.split or ["train", "test"]:
        dataset = create_dataset(args.name, split, root=args.root, n=args.n, **options)
        labels = dataset.labels
        print(json.dumps({"split": split, "images": len(dataset), "classes": len(dataset.classes),
                          "positives_per_image": round(float((labels == 1).sum(1).float().mean()), 3),
                          "unknown_share": round(float((labels == 0).float().mean()), 4),
                          "first_classes": dataset.classes[:5], **getattr(dataset, "info", {})}))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from .config import ConfigError
    from .engine.run_folder import RunFolderError

    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "bench":
            return _cmd_bench(args)
        if args.command == "pretrain":
            return _cmd_pretrain(args)
        if args.command == "config":
            from .config import ExperimentConfig, apply_overrides

            print(apply_overrides(ExperimentConfig(), args.overrides).to_yaml(), end="")
            return 0
        return _cmd_datasets(args)
    except (ConfigError, FileNotFoundError, ValueError, TypeError, RunFolderError) as err:
        # bad input of any kind, a run folder in use or on a full disk: one line naming what was
        # wrong, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
