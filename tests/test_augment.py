"""Batch augmentation: determinism, per-sample randomness, exact flips and identity crops."""

from __future__ import annotations

import pytest
import torch

from mlrobust.data.augment import POLICIES, Policy, apply_params, augment, draw_params
from mlrobust.data import Preprocess
from mlrobust.engine.batches import epoch_augmentation


def _images(b: int = 8, s: int = 16) -> torch.Tensor:
    return torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_same_seed_same_batch(policy: str) -> None:
    x = _images()
    a = augment(x, policy, torch.Generator().manual_seed(3))
    b = augment(x, policy, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1


def test_strong_randomness_is_per_sample() -> None:
    x = _images(1).expand(16, -1, -1, -1)  # the same image 16 times
    y = augment(x, "strong", torch.Generator().manual_seed(1))
    distinct = {tuple(v.flatten()[:64].tolist()) for v in y}
    assert len(distinct) == 16


def test_flip_policy_is_exact_flip_or_identity() -> None:
    x = _images(32)
    p = draw_params(32, "flip", torch.Generator().manual_seed(0))
    y = apply_params(x, p)
    assert not p.policy.crops and 0 < p.flip.sum() < 32
    assert torch.equal(y[p.flip], x[p.flip].flip(3))
    assert torch.equal(y[~p.flip], x[~p.flip])


def test_identity_crop_reproduces_the_image() -> None:
    """A crop of the whole image through grid_sample is the image (align_corners=False)."""
    x = _images(4)
    p = draw_params(4, Policy(flip=False, min_area=0.999999), torch.Generator().manual_seed(0))
    assert p.policy.crops
    torch.testing.assert_close(apply_params(x, p), x, atol=1e-4, rtol=0)


def test_crop_stays_inside_the_image() -> None:
    p = draw_params(1000, "strong", torch.Generator().manual_seed(0))
    sx, tx = p.theta[:, 0, 0], p.theta[:, 0, 2]
    sy, ty = p.theta[:, 1, 1], p.theta[:, 1, 2]
    assert ((tx.abs() + sx) <= 1 + 1e-6).all() and ((ty.abs() + sy) <= 1 + 1e-6).all()
    area = sx * sy
    assert area.min() >= 0.35 - 1e-4 and area.max() <= 1 + 1e-6
    assert 0.4 < p.erase[:, 0].mean() < 0.6  # random erasing with p = 0.5


def test_erased_region_is_constant() -> None:
    x = _images(2, 32)
    policy = Policy(flip=False, erase_p=1.0, erase_area=(0.2, 0.2))
    p = draw_params(2, policy, torch.Generator().manual_seed(0))
    y = apply_params(x, p)
    for i in range(2):
        _, x0, y0, x1, y1 = p.erase[i].tolist()
        c0, c1, r0, r1 = int(x0 * 32 + 0.5), int(x1 * 32 - 0.5), int(y0 * 32 + 0.5), int(y1 * 32 - 0.5)
        patch = y[i, :, r0:r1, c0:c1]
        assert patch.numel() > 0 and torch.allclose(patch, patch.flatten()[0])


def test_epoch_augmentation_is_sliced_from_one_draw() -> None:
    params = epoch_augmentation([4, 4, 3], "weak", seed=0, epoch=2, device=torch.device("cpu"))
    again = epoch_augmentation([4, 4, 3], "weak", seed=0, epoch=2, device=torch.device("cpu"))
    other = epoch_augmentation([4, 4, 3], "weak", seed=0, epoch=3, device=torch.device("cpu"))
    assert [len(p.flip) for p in params] == [4, 4, 3]
    assert all(torch.equal(a.theta, b.theta) for a, b in zip(params, again))
    assert not torch.equal(params[0].theta, other[0].theta)
    assert epoch_augmentation([4], "none", 0, 0, torch.device("cpu")) == [None]


def test_preprocess_normalises_after_augmenting() -> None:
    images = (torch.rand(2, 3, 8, 8) * 255).to(torch.uint8)
    pre = Preprocess(torch.device("cpu"))
    plain = pre(images)
    expected = (images.float() / 255 - pre.mean) / pre.std
    torch.testing.assert_close(plain, expected)
    p = draw_params(2, Policy(flip=True), torch.Generator().manual_seed(0))
    p.flip[:] = True
    torch.testing.assert_close(pre(images, p), expected.flip(3))


def test_each_rank_draws_its_own_augmentation() -> None:
    cpu = torch.device("cpu")
    single = epoch_augmentation([8], "strong", seed=0, epoch=1, device=cpu)[0]
    rank0 = epoch_augmentation([8], "strong", seed=0, epoch=1, device=cpu, rank=0)[0]
    rank1 = epoch_augmentation([8], "strong", seed=0, epoch=1, device=cpu, rank=1)[0]
    assert torch.equal(single.theta, rank0.theta)  # one process = rank 0
    assert not torch.equal(rank0.theta, rank1.theta)
