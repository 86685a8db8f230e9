"""Command line: ``python -m mlrobust {run,bench,config,datasets}``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlrobust", description="Multi-label learning with missing, "
                                "partial and noisy labels: training runs and benchmarks.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate one experiment")
    run.add_argument("--config", type=Path, help="YAML or JSON experiment config (defaults if omitted)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set train.lr=0.01 (repeatable)")
    run.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")

    bench = sub.add_parser("bench", help="measure training-step and data throughput")
    bench.add_argument("--backbone", default="cnn_s")
    bench.add_argument("--image-size", type=int, default=32)
    bench.add_argument("--batch-size", type=int, default=64)
    bench.add_argument("--device", default="auto")
    bench.add_argument("--steps", type=int, default=20)
    bench.add_argument("--warmup", type=int, default=5)
    bench.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    bench.add_argument("--no-channels-last", action="store_true")
    bench.add_argument("--compile", action="store_true")
    bench.add_argument("--loss", default="bce")
    bench.add_argument("--output", type=Path, help="also write the table (Markdown) to this file")

    cfg = sub.add_parser("config", help="print the default config (with overrides) as YAML")
    cfg.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    sub.add_parser("datasets", help="list the registered datasets")
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    from .config import ExperimentConfig, apply_overrides, load_config
    from .experiments import run_experiment

    from .engine.distributed import init_distributed

    cfg = load_config(args.config) if args.config else ExperimentConfig()
    cfg = apply_overrides(cfg, args.overrides)
    info = init_distributed(cfg.train.device)  # under torchrun: join the process group
    try:
        result = run_experiment(cfg, resume=args.resume)
    finally:
        if info.distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    if info.rank == 0:
        print(json.dumps({"run_dir": str(result.run_dir), "test": result.metrics}, indent=2))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench_render, bench_train_step, format_table

    results = [
        bench_train_step(args.backbone, args.image_size, args.batch_size, args.device, args.steps, args.warmup,
                         amp=not args.no_amp, channels_last=not args.no_channels_last, compile=args.compile,
                         loss=args.loss),
        bench_render(args.image_size, device=args.device),
    ]
    table = format_table(results)
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from .config import ConfigError

    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "bench":
            return _cmd_bench(args)
        if args.command == "config":
            from .config import ExperimentConfig, apply_overrides

            print(apply_overrides(ExperimentConfig(), args.overrides).to_yaml(), end="")
            return 0
        from .data import DATASETS

        print("\n".join(sorted(DATASETS)))
        return 0
    except (ConfigError, FileNotFoundError, ValueError, TypeError) as err:
        # bad input of any kind: one line naming what was wrong, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
