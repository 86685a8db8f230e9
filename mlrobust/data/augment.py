"""Batch augmentation on the device, with per-sample randomness.

A whole batch is transformed at once (one ``grid_sample`` for the crops, tensor arithmetic
for the rest), on the GPU when the batch is there, so augmentation never waits on CPU
workers. The random parameters of every sample are drawn on a CPU generator (from the run's
seed, the epoch and the process rank), so the same batch gets the same augmentation after a
resume and on any device.

Two pipelines for consistency training (weak and strong views of the same image, as in
FixMatch-style self-training and the saliency-regularisation paper):

* ``"weak"``: horizontal flip and a mild random resized crop (area 70-100 %);
* ``"strong"``: flip, a strong random resized crop (area 35-100 %, aspect 3/4-4/3), colour
  jitter (brightness, contrast, saturation, +-40 %) and random erasing (p = 0.5).

The colour jitter is simpler than torchvision's ``ColorJitter``: the three factors apply in a
fixed order, contrast around the image's mean over all channels (not its grey mean), with a
single clamp to [0, 1] at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from ..registry import Registry

__all__ = ["Policy", "POLICIES", "register_policy", "create_policy", "AugmentParams", "draw_params", "apply_params",
           "augment"]


@dataclass(frozen=True)
class Policy:
    """Which augmentations run, and how strong they are."""

    flip: bool = True
    min_area: float = 1.0  # random resized crop: share of the image area kept (1: no crop)
    max_log_ratio: float = 0.0  # log aspect-ratio range of the crop
    jitter: float = 0.0  # colour jitter strength (brightness, contrast, saturation)
    erase_p: float = 0.0  # probability of random erasing
    erase_area: tuple[float, float] = (0.02, 0.25)

    @property
    def crops(self) -> bool:
        return self.min_area < 1.0 or self.max_log_ratio > 0


POLICIES: Registry[Policy] = Registry("augmentation policy")
"""Augmentation policies by name (the config's ``data.augment``; ``"none"`` means no policy)."""
register_policy = POLICIES.register
register_policy("flip", Policy())
register_policy("weak", Policy(min_area=0.7))
register_policy("strong", Policy(min_area=0.35, max_log_ratio=math.log(4 / 3), jitter=0.4, erase_p=0.5))


def create_policy(name: str | Policy) -> Policy:
    """The registered policy ``name`` (a :class:`Policy` passes through); the error lists the
    valid names."""
    return name if isinstance(name, Policy) else POLICIES.lookup(name)


@dataclass
class AugmentParams:
    """Per-sample parameters of a batch (CPU tensors, moved with the batch)."""

    flip: Tensor  # (B,) bool
    theta: Tensor  # (B, 2, 3) affine crop
    colour: Tensor  # (B, 3) brightness, contrast, saturation factors
    erase: Tensor  # (B, 5) apply, x0, y0, x1, y1 in [0, 1]
    # the policy they were drawn from: it says which stages run at all, so applying them never
    # asks the device whether, say, ``theta`` is the identity, and a flip-only batch is exact
    policy: Policy = POLICIES["strong"]

    def _map(self, fn) -> "AugmentParams":
        return replace(self, **{f.name: fn(getattr(self, f.name)) for f in fields(self) if f.name != "policy"})

    def to(self, device: torch.device | str) -> "AugmentParams":
        return self._map(lambda t: t.to(device, non_blocking=True))

    def slice(self, start: int, stop: int) -> "AugmentParams":
        return self._map(lambda t: t[start:stop])


def draw_params(batch_size: int, policy: Policy | str, generator: torch.Generator) -> AugmentParams:
    """Draw the random parameters of ``batch_size`` samples (on the CPU)."""
    pol = create_policy(policy)
    g, b = generator, batch_size
    u = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    flip = (u(b) < 0.5) if pol.flip else torch.zeros(b, dtype=torch.bool)
    area = pol.min_area + (1 - pol.min_area) * u(b)
    log_ratio = (2 * u(b) - 1) * pol.max_log_ratio
    sx = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)  # crop half-widths, in [-1, 1] units
    sy = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    tx, ty = (2 * u(b) - 1) * (1 - sx), (2 * u(b) - 1) * (1 - sy)  # keep the crop inside the image
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
    colour = 1 + (2 * u(b, 3) - 1) * pol.jitter
    apply = u(b) < pol.erase_p
    lo, hi = pol.erase_area
    e_area = lo + (hi - lo) * u(b)
    e_ratio = torch.exp((2 * u(b) - 1) * math.log(3))
    ew, eh = (e_area * e_ratio).sqrt().clamp(max=1), (e_area / e_ratio).sqrt().clamp(max=1)
    ex, ey = u(b) * (1 - ew), u(b) * (1 - eh)
    erase = torch.stack([apply.float(), ex, ey, ex + ew, ey + eh], 1)
    return AugmentParams(flip, theta, colour, erase, pol)


def apply_params(images: Tensor, p: AugmentParams) -> Tensor:
    """Augment float images (B, 3, H, W) in [0, 1] with the parameters ``p`` (on their device).
    Stages the policy switches off are skipped, so they cost nothing and change no bit."""
    pol = p.policy
    p = p.to(images.device)
    x = torch.where(p.flip.view(-1, 1, 1, 1), images.flip(3), images) if pol.flip else images
    if pol.crops:
        grid = F.affine_grid(p.theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if pol.jitter > 0:
        x = _colour_jitter(x, p.colour.to(x.dtype))
    if pol.erase_p > 0:
        x = _erase(x, p.erase.to(x.dtype))
    return x


def _colour_jitter(x: Tensor, colour: Tensor) -> Tensor:
    brightness, contrast, saturation = (colour[:, i].view(-1, 1, 1, 1) for i in range(3))
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    return ((x - grey) * saturation + grey).clamp(0, 1)


def _erase(x: Tensor, e: Tensor) -> Tensor:
    """Replace each sample's rectangle (where its ``apply`` flag is set) by the image mean."""
    h, w = x.shape[-2:]
    ys = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) / h
    xs = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) / w
    inside = ((xs[None, None, :] >= e[:, 1, None, None]) & (xs[None, None, :] < e[:, 3, None, None])
              & (ys[None, :, None] >= e[:, 2, None, None]) & (ys[None, :, None] < e[:, 4, None, None])
              & (e[:, 0, None, None] > 0))
    return torch.where(inside[:, None], x.mean(dim=(1, 2, 3), keepdim=True), x)


def augment(images: Tensor, policy: Policy | str, generator: torch.Generator) -> Tensor:
    """Draw parameters and augment a batch of float images in [0, 1] (uint8 are scaled)."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images
    return apply_params(x, draw_params(len(x), policy, generator))
