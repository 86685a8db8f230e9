"""Freezing the first stages of a pretrained backbone while the rest is fine-tuned.

Early layers of a pretrained CNN compute generic edges and textures; detection and
multi-label work commonly keeps them fixed (Detectron2's ``FREEZE_AT = 2``: the stem and the
first residual stage), which also skips their backward pass. ``freeze_at = k`` fixes the stem
(k >= 1) and the first k - 1 stages after it; their batch norms become
:class:`FrozenBatchNorm2d`, so running statistics stop moving as well as weights.

A backbone says where its stages start with ``stage_starts()``: module names in forward
order (:class:`~mlrobust.models.backbones.SmallCNN` and timm models with ``feature_info``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FrozenBatchNorm2d", "freeze_stages"]


class FrozenBatchNorm2d(nn.Module):
    """A batch norm in inference form: ``γ (x - μ) / sqrt(σ² + ε) + β`` with the statistics and
    the affine transform held as buffers, so nothing trains and no statistic moves. The state
    dict keeps BatchNorm2d's names (less ``num_batches_tracked``), and the forward is the
    same kernel as ``BatchNorm2d`` in eval mode (one fused pass, about twice as fast on a CPU
    as ``x * scale + shift``). torchvision has one too; importing it costs a CPU worker
    seconds."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        if bn.running_mean is None or bn.running_var is None or bn.weight is None or bn.bias is None:
            raise ValueError("only a batch norm with running statistics and an affine transform can be "
                             "frozen (track_running_stats=True, affine=True)")
        for name in ("weight", "bias", "running_mean", "running_var"):
            self.register_buffer(name, getattr(bn, name).detach().clone())
        self.eps = bn.eps

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"


def stage_starts(backbone: nn.Module) -> list[str]:
    """The names of the modules where the backbone's stages after the stem begin."""
    starts = getattr(backbone, "stage_starts", None)
    if starts is None:
        raise ValueError(f"{type(backbone).__name__} does not say where its stages start (no stage_starts()), "
                         "so model.freeze_at cannot be used with it; use freeze_at=0")
    return list(starts())


def freeze_stages(backbone: nn.Module, freeze_at: int) -> nn.Module:
    """Fix the stem (``freeze_at >= 1``) and the first ``freeze_at - 1`` stages of
    ``backbone`` in place: their parameters stop requiring gradients and their batch norms
    become :class:`FrozenBatchNorm2d`. ``freeze_at = 0`` leaves it as it is."""
    if freeze_at == 0:
        return backbone
    starts = stage_starts(backbone)
    if not 0 < freeze_at <= len(starts) + 1:
        raise ValueError(f"model.freeze_at must be in 0..{len(starts) + 1} for {type(backbone).__name__} "
                         f"(stem + {len(starts)} stages), got {freeze_at}")
    named = list(backbone.named_modules())
    # every module before the first unfrozen stage, except the containers that hold that stage
    end = len(named) if freeze_at == len(starts) + 1 else [n for n, _ in named].index(starts[freeze_at - 1])
    boundary = starts[freeze_at - 1] if freeze_at <= len(starts) else None
    for name, module in named[:end]:
        if boundary is not None and (name == "" or boundary.startswith(name + ".")):
            continue
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if type(module) is not nn.BatchNorm2d:
                raise ValueError(f"model.freeze_at cannot freeze {type(module).__name__} at {name!r}: only "
                                 "nn.BatchNorm2d is converted")
            parent, _, child = name.rpartition(".")
            backbone.get_submodule(parent).add_module(child, FrozenBatchNorm2d(module))
    return backbone
