"""A small training run for the distributed tests: started by torchrun (2 processes, gloo) or
alone. Trains a WELDON head on fixed random feature maps with benchmark labels (no
BatchNorm, so two ranks of batch B equal one process of batch 2B)."""

import argparse
import json
import sys
from pathlib import Path

import torch

from mlrobust.config import DataConfig, ExperimentConfig, LossConfig, ModelConfig, TrainConfig
from mlrobust.data import DataSplits, FeatureMaps, ShapeScenes
from mlrobust.engine import Hook
from mlrobust.engine.distributed import init_distributed
from mlrobust.experiments import run_experiment


class Crash(Hook):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_start(self, trainer, epoch: int) -> None:
        if epoch == self.at:
            sys.exit(3)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--crash-at", type=int, default=-1)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args()
    info = init_distributed("cpu")
    scenes = ShapeScenes(250, image_size=32)  # 250: not a multiple of 2 x batch, so shards are padded
    feats = torch.randn(250, 8, 3, 3, generator=torch.Generator().manual_seed(0)) + scenes.labels[:, :8, None, None]
    train = FeatureMaps(feats, scenes.labels, scenes.classes)
    test = FeatureMaps(feats[:101], scenes.labels[:101], scenes.classes)
    cfg = ExperimentConfig(name="ddp", output_dir=a.out)
    cfg.data = DataConfig(protocol="partial", protocol_args={"known": 0.5}, augment="none")
    cfg.model = ModelConfig(backbone="features", head="classmap", head_args={"pooling": "weldon"})
    cfg.loss = LossConfig("partial_bce")
    cfg.train = TrainConfig(epochs=4, batch_size=a.batch_size, lr=0.1, device="cpu", progress=False)
    result = run_experiment(cfg, data=DataSplits(train=train, test=test), resume=a.resume, hooks=(Crash(a.crash_at),))
    if info.rank == 0:
        state = {k: v.tolist() for k, v in result.trainer.module.state_dict().items()}
        Path(a.out, "result.json").write_text(json.dumps({"metrics": result.metrics, "state": state,
                                                          "world": info.world_size}))
    if info.distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
