"""ObjectScenes: the embedded benchmark's ImageNet.

The papers fine-tune networks pretrained on ImageNet: one dominant object per image, many
classes, a million images. A network trained from scratch on a few thousand multi-label
scenes learns mostly the scene context instead of the objects, which is not the papers'
regime. ObjectScenes is the stand-in: ShapeScenes images holding **one** object (one of the
24 labelled classes or the 6 distractor classes, so 30 classes), large and near the centre,
on the same backgrounds and clutter, from the disjoint ``"pretrain"`` stream of scenes. A
backbone pretrained on it (:mod:`mlrobust.pretrained`) knows what objects look like before
it ever sees a multi-label scene, as an ImageNet backbone does before COCO.

Labels are one-hot over :data:`PRETRAIN_CLASSES` in {-1, 1} (a single-label task, trained
with the softmax cross-entropy).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validate import check_fraction
from ..seeding import derive_seed
from .shapescenes import CLASSES, DISTRACTOR_CLASSES, SceneTable, ShapeScenes, scene_attributes

__all__ = ["PRETRAIN_CLASSES", "RADIUS_RANGE", "object_centric", "ObjectScenes"]

#: The 30 classes of the pretraining task: the 24 labelled classes, then the 6 distractors.
PRETRAIN_CLASSES: tuple[str, ...] = tuple(c.name for c in CLASSES + DISTRACTOR_CLASSES)
#: Object radius (fraction of the image side), uniform: larger than in the multi-label scenes
#: (:data:`~mlrobust.data.shapescenes.SCENE_RADIUS_RANGE`), as ImageNet objects are larger
#: than COCO's.
RADIUS_RANGE = (0.10, 0.38)
#: The radii of the scenes the single objects are cut from. Only the choice of the kept
#: (rearmost) object depends on them — its radius is redrawn — and they stay at the range the
#: shipped backbone was pretrained with, so ``make pretrain`` still rebuilds its file.
SOURCE_RADIUS_RANGE = (0.05, 0.30)
_GEOMETRY_STREAM = 0x0B7EC7  # the radius and centre of the kept object


def object_centric(scenes: SceneTable, seed: int,
                   radius_range: tuple[float, float] = RADIUS_RANGE) -> tuple[SceneTable, Tensor]:
    """Keep one object per scene (its first, i.e. rearmost, object of any class), give it a
    radius drawn uniformly from ``radius_range`` and a centre near the middle; returns the
    new scenes and each one's class index (N,) into :data:`PRETRAIN_CLASSES`."""
    lo, hi = radius_range
    check_fraction(lo, "radius_range[0]", low=0.01, high=0.5)
    check_fraction(hi, "radius_range[1]", low=lo, high=0.5)
    cls = scenes.obj_class
    n, slots = cls.shape
    slot = torch.where(cls >= 0, torch.arange(slots).expand(n, slots), slots).min(1).values
    if (slot == slots).any():
        raise ValueError("object_centric: a scene has no object at all")  # never for sample_scenes
    keep = torch.zeros_like(cls, dtype=torch.bool)
    keep[torch.arange(n), slot] = True
    g = torch.Generator().manual_seed(derive_seed(seed, _GEOMETRY_STREAM))
    radius = lo + (hi - lo) * torch.rand(n, generator=g)
    # the centre moves at most 40 % of the free space away from the middle: nothing is cut off
    centre = 0.5 + (torch.rand(n, 2, generator=g) - 0.5) * (1 - 2 * radius[:, None]) * 0.8
    out = SceneTable(**{**scenes.__dict__})
    out.obj_class = torch.where(keep, cls, -1)
    out.obj_radius = torch.where(keep, radius[:, None], 0.0)
    out.obj_center = torch.where(keep[..., None], centre[:, None, :], scenes.obj_center)
    return out, cls.gather(1, slot[:, None])[:, 0]


class ObjectScenes(ShapeScenes):
    """``n`` single-object images of the ``"pretrain"`` split (see the module docstring).

    ``labels`` (N, 30) int8: 1 for the object's class, -1 elsewhere; ``targets`` (N,) the
    class index; ``classes`` the 30 names. Rendering, caching and ``load_batch`` are
    ShapeScenes'."""

    name = "objectscenes"

    def __init__(self, n: int, image_size: int = 32, seed: int = 0,
                 radius_range: tuple[float, float] = RADIUS_RANGE, cache: bool | None = None) -> None:
        super().__init__(n, image_size=image_size, seed=seed, split="pretrain", cache=cache,
                         radius_range=SOURCE_RADIUS_RANGE)
        self.scenes, self.targets = object_centric(self.scenes, seed, radius_range)
        onehot = torch.full((n, len(PRETRAIN_CLASSES)), -1, dtype=torch.int8)
        onehot[torch.arange(n), self.targets] = 1
        self.labels = onehot
        self.attributes = scene_attributes(self.scenes)
        self.classes = list(PRETRAIN_CLASSES)
        self.radius_range = radius_range
