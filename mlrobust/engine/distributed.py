"""Multi-GPU and multi-node training with torch.distributed, launched by ``torchrun``.

``torchrun --nproc-per-node=G -m mlrobust run --config FILE`` starts G processes; each reads
its rank from the environment (RANK, WORLD_SIZE, LOCAL_RANK), joins the process group (NCCL
on GPUs, gloo on CPUs) and trains on its shard of every epoch (the order is padded to a
multiple of the world size and dealt round-robin, as torch's DistributedSampler does).
Gradients are averaged by DistributedDataParallel. Evaluation gathers every rank's logits
with their dataset indices, so the padding duplicates are removed before any metric is
computed (AP is not decomposable: per-rank mAPs cannot be averaged). Rank 0 alone writes
checkpoints and results; every rank reads the checkpoint on resume.

``train.batch_size`` is the batch of one process: the global batch is batch_size x world size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["DistInfo", "dist_info", "init_distributed", "gather_by_index", "all_mean"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """This process's place in the run (from the initialised process group, else from the
    environment torchrun sets, else a single process)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise.
    NCCL when this process will use a GPU, gloo on the CPU."""
    info = dist_info()
    if not info.distributed or dist.is_initialized():
        return info
    use_cuda = torch.cuda.is_available() and not str(device).startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist_info()


def gather_by_index(values: Tensor, index: Tensor, total: int) -> Tensor:
    """Assemble rows computed on every rank into one (total, ...) tensor in dataset order.

    ``values`` (n, ...) are this rank's rows for dataset indices ``index`` (n,); every rank
    holds the same n (the shards are padded). Padding duplicates name an index twice and carry
    the same prediction, so writing them twice is harmless.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        out = values.new_empty((total, *values.shape[1:]))
        out[index.to(values.device)] = values
        return out
    world = dist.get_world_size()
    # NCCL moves CUDA tensors only; gloo CPU tensors
    device = values.device if values.is_cuda or dist.get_backend() != "nccl" else torch.device("cuda")
    # Called from predict() under inference_mode; gloo (torch < 2.5) fills the receive buffers
    # from its own thread, outside that mode, which inference tensors forbid: use normal ones.
    with torch.inference_mode(False):
        v, i = values.to(device).clone().contiguous(), index.to(device).clone().contiguous()
        vs, is_ = [torch.empty_like(v) for _ in range(world)], [torch.empty_like(i) for _ in range(world)]
        dist.all_gather(vs, v)
        dist.all_gather(is_, i)
        out = v.new_empty((total, *v.shape[1:]))
        out[torch.cat(is_)] = torch.cat(vs)
    return out.to(values.device)


def all_mean(value: float, device: torch.device) -> float:
    """The mean of a scalar over the ranks (the epoch's training loss)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()
