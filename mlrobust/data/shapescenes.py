"""ShapeScenes: the embedded multi-label image benchmark.

No dataset can be downloaded when the book runs, so the default data is procedural. A
*scene* is a background drawn from one of six contexts, some clutter, one to six labelled
objects and, sometimes, objects from classes outside the label set (distractors). Every
object has a shape, a texture, a colour, a size, a rotation and a position; the 24 labelled
classes are (shape, texture) pairs, so telling them apart needs both cues, and both fade
for small objects at low resolution, as in real images.

What makes it a test bed rather than a toy:

* label correlation: a context favours six classes and four class pairs co-occur
  (``COMPANIONS``), so co-occurrence graphs and label GNNs have something to find;
* object radius from 10 % to 30 % of the image side (:data:`SCENE_RADIUS_RANGE`), painter's-order occlusion, clutter
  strokes and blobs, pixel noise, colour and shape jitter;
* confusable classes: each shape comes in two textures with the same preferred hue, and
  pairs of shapes (disk/hexagon, square/diamond, ...) share a hue;
* single-object images (about a quarter) for single-label pools, distractor objects from six
  out-of-set classes, and an ``ood_fraction`` of images that hold only distractors;
* per-object attributes (colour, pattern tone, size, texture), so an attribute task exists;
* the full ground truth is kept: labels, attributes and every object's parameters.

Scenes are sampled once, vectorised, from a seed (:func:`sample_scenes`), in blocks of
1024 with their own derived seeds, so the first k scenes are the same for any dataset size.
Pixels are rendered on demand, for any index set, at any resolution from 32 to 448 px, on the
CPU or the GPU (:func:`render_scenes`). Image ``i`` is the same whatever batch it is rendered
in; geometry is resolution independent, so the same scene can be rendered at 32 and 448 px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from .._validate import check_fraction, make_generator
from ..seeding import derive_seed

__all__ = [
    "CLASSES",
    "DISTRACTOR_CLASSES",
    "CONTEXTS",
    "COMPANIONS",
    "ATTRIBUTES",
    "ObjectClass",
    "Context",
    "SceneTable",
    "ShapeScenes",
    "sample_scenes",
    "render_scenes",
    "scene_labels",
    "scene_attributes",
    "scene_class_radius",
    "SCENE_RADIUS_RANGE",
    "context_only_logits",
]

# --------------------------------------------------------------------------------------
# The benchmark's fixed definition (never random: the dataset seed only changes sampling)
# --------------------------------------------------------------------------------------

SHAPES = (
    "disk", "ring", "square", "triangle", "hexagon", "star", "cross", "crescent",
    "ellipse", "semicircle", "diamond", "arrow",
    # shapes used only by distractor (out-of-set) classes
    "heart", "tee", "pentagon",
)
TEXTURES = ("solid", "stripes", "checker", "dots", "waves")
_TEXTURE_ADJ = {"solid": "solid", "stripes": "striped", "checker": "checkered",
                "dots": "dotted", "waves": "wavy"}

# Shapes that look alike share a preferred hue, so colour narrows a class down to four
# candidates (two shapes x two textures) and never decides it alone.
_SHAPE_HUE = {
    "disk": 0.01, "hexagon": 0.01, "square": 0.60, "diamond": 0.60,
    "star": 0.13, "cross": 0.13, "ring": 0.80, "crescent": 0.80,
    "triangle": 0.33, "arrow": 0.33, "ellipse": 0.50, "semicircle": 0.50,
    "heart": 0.92, "tee": 0.07, "pentagon": 0.01,
}


@dataclass(frozen=True)
class ObjectClass:
    """One object class: a shape drawn with a texture, with a preferred hue."""

    shape: str
    texture: str

    @property
    def name(self) -> str:
        return f"{_TEXTURE_ADJ[self.texture]} {self.shape}"

    @property
    def hue(self) -> float:
        return _SHAPE_HUE[self.shape]


_PAIRS = (
    ("disk", "solid"), ("disk", "dots"), ("ring", "solid"), ("ring", "stripes"),
    ("square", "solid"), ("square", "checker"), ("triangle", "solid"),
    ("triangle", "stripes"), ("hexagon", "dots"), ("hexagon", "checker"),
    ("star", "solid"), ("star", "dots"), ("cross", "solid"), ("cross", "checker"),
    ("crescent", "solid"), ("crescent", "stripes"), ("ellipse", "stripes"),
    ("ellipse", "dots"), ("semicircle", "solid"), ("semicircle", "checker"),
    ("diamond", "stripes"), ("diamond", "checker"), ("arrow", "solid"), ("arrow", "dots"),
)
CLASSES: tuple[ObjectClass, ...] = tuple(ObjectClass(s, t) for s, t in _PAIRS)
DISTRACTOR_CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("heart", "solid"), ObjectClass("heart", "stripes"),
    ObjectClass("tee", "solid"), ObjectClass("tee", "checker"),
    ObjectClass("pentagon", "dots"), ObjectClass("pentagon", "waves"),
)
_ALL_CLASSES = CLASSES + DISTRACTOR_CLASSES


@dataclass(frozen=True)
class Context:
    """A scene context: a background palette and the classes it favours (most first)."""

    name: str
    hue: float
    saturation: float
    value: float
    favoured: tuple[int, ...]


CONTEXTS: tuple[Context, ...] = (
    Context("meadow", 0.28, 0.35, 0.62, (0, 6, 11, 16, 18, 22)),
    Context("harbour", 0.58, 0.30, 0.55, (2, 3, 7, 20, 23, 1)),
    Context("kitchen", 0.10, 0.18, 0.78, (4, 5, 8, 9, 17, 19)),
    Context("workshop", 0.62, 0.05, 0.50, (12, 13, 21, 4, 22, 9)),
    Context("night", 0.66, 0.45, 0.18, (10, 11, 14, 15, 2, 17)),
    Context("desert", 0.09, 0.40, 0.70, (6, 7, 18, 19, 0, 20)),
)
# P(class | context) = (1 - _OFF_CONTEXT) * favoured weights + _OFF_CONTEXT * uniform.
_FAVOURED_WEIGHTS = (0.30, 0.22, 0.16, 0.13, 0.10, 0.09)
_OFF_CONTEXT = 0.2
# (a, b, p): when class a is in a scene, class b joins it with probability p.
COMPANIONS: tuple[tuple[int, int, float], ...] = ((10, 14, 0.5), (22, 4, 0.5), (3, 20, 0.5), (8, 5, 0.5))
# P(number of labelled objects = 1..6); mean 2.85, as COCO's 2.9 labels per image.
_N_OBJECTS_P = (0.22, 0.25, 0.20, 0.15, 0.10, 0.08)
# P(0, 1, 2 distractor objects)
_N_DISTRACTORS_P = (0.60, 0.30, 0.10)
_MAX_OBJECTS = 6
_MAX_DISTRACTORS = 2
_SLOTS = _MAX_OBJECTS + _MAX_DISTRACTORS
_CLUTTER = 10
#: Object radius as a fraction of the image side, log-uniform. The smallest object is 3 px
#: across at 32 px: below that (the range once started at 5 %) an object is a pixel or two
#: and the network learns the scene's context instead (chapter 1's regime table).
SCENE_RADIUS_RANGE = (0.10, 0.30)
# small < 0.20 <= medium < 0.26 <= large: about a third of the largest labelled objects each
_SIZE_EDGES = (0.20, 0.26)

_HUE_NAMES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
_HUE_EDGES = (0.05, 0.11, 0.19, 0.45, 0.55, 0.70, 0.85, 0.95)  # upper edges; red wraps
ATTRIBUTES: tuple[str, ...] = (
    tuple(f"colour:{h}" for h in _HUE_NAMES)
    + ("pattern:dark", "pattern:light")
    + ("size:small", "size:medium", "size:large")
    + tuple(f"texture:{t}" for t in TEXTURES[:4])
)


# --------------------------------------------------------------------------------------
# Scene sampling
# --------------------------------------------------------------------------------------


@dataclass
class SceneTable:
    """Every parameter of N scenes. Object slots are in drawing order; empty slots have
    ``obj_class == -1``. Classes ``>= len(CLASSES)`` are distractors."""

    uid: Tensor  # (N,) int64, seeds the pixel noise
    context: Tensor  # (N,) int64
    obj_class: Tensor  # (N, S) int64
    obj_center: Tensor  # (N, S, 2) in [0, 1]
    obj_radius: Tensor  # (N, S) fraction of the image side
    obj_angle: Tensor  # (N, S) radians
    obj_aspect: Tensor  # (N, S)
    obj_hsv: Tensor  # (N, S, 3)
    obj_light_pattern: Tensor  # (N, S) bool: pattern colour light (True) or dark
    obj_phase: Tensor  # (N, S, 2) texture phase
    obj_shade: Tensor  # (N, S, 2) linear shading gradient
    bg_hsv: Tensor  # (N, 2, 3) the two ends of the background gradient
    bg_direction: Tensor  # (N,) radians
    bg_waves: Tensor  # (N, 3, 4) frequency, angle, phase, amplitude of 3 waves
    clutter_kind: Tensor  # (N, K) 0 absent, 1 stroke, 2 blob
    clutter_geom: Tensor  # (N, K, 5) x0, y0, x1, y1, width
    clutter_rgb: Tensor  # (N, K, 3)
    noise_sigma: Tensor  # (N,)
    gain: Tensor  # (N, 2) contrast, brightness

    def __len__(self) -> int:
        return self.uid.shape[0]

    def select(self, index: Tensor) -> "SceneTable":
        return SceneTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device: torch.device | str) -> "SceneTable":
        return SceneTable(**{f.name: getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)})


def _check_int(value: object, name: str, low: int | None = None, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bounds}, got {value}")


def _uniform(g: torch.Generator, *shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
    return torch.rand(*shape, generator=g) * (high - low) + low


def _class_distribution() -> Tensor:
    """(contexts, classes) matrix of P(class | context)."""
    p = torch.full((len(CONTEXTS), len(CLASSES)), _OFF_CONTEXT / len(CLASSES))
    for k, ctx in enumerate(CONTEXTS):
        for c, w in zip(ctx.favoured, _FAVOURED_WEIGHTS):
            p[k, c] += (1 - _OFF_CONTEXT) * w
    return p


def _sample_objects(g: torch.Generator, n: int, context: Tensor, ood: Tensor) -> Tensor:
    """Classes of the object slots, (n, S), -1 for empty slots, before ordering."""
    probs = _class_distribution()[context]  # (n, C)
    cls = torch.multinomial(probs, _MAX_OBJECTS, replacement=True, generator=g)
    n_obj = torch.multinomial(torch.tensor(_N_OBJECTS_P), n, replacement=True, generator=g) + 1
    slot = torch.arange(_MAX_OBJECTS)
    cls = torch.where(slot < n_obj[:, None], cls, -1)
    # companions take a free slot (or replace the last object when the scene is full)
    for a, b, p in COMPANIONS:
        has_a = (cls == a).any(1) & ~(cls == b).any(1)
        join = has_a & (torch.rand(n, generator=g) < p)
        free = torch.where(cls < 0, slot, _MAX_OBJECTS).min(1).values.clamp(max=_MAX_OBJECTS - 1)
        # never overwrite the class that called the companion
        free = torch.where(cls.gather(1, free[:, None])[:, 0] == a, (free - 1).clamp(min=0), free)
        cls[join, free[join]] = b
    n_dis = torch.multinomial(torch.tensor(_N_DISTRACTORS_P), n, replacement=True, generator=g)
    dis = torch.randint(len(DISTRACTOR_CLASSES), (n, _MAX_DISTRACTORS), generator=g) + len(CLASSES)
    dis = torch.where(torch.arange(_MAX_DISTRACTORS) < n_dis[:, None], dis, -1)
    # out-of-distribution images: only distractors (one to three of them)
    if ood.any():
        n_ood = torch.randint(1, 4, (n,), generator=g)
        ood_cls = torch.randint(len(DISTRACTOR_CLASSES), (n, _MAX_OBJECTS), generator=g) + len(CLASSES)
        ood_cls = torch.where(slot < n_ood[:, None], ood_cls, -1)
        cls = torch.where(ood[:, None], ood_cls, cls)
    return torch.cat([cls, dis], 1)


def _hue_of(cls: Tensor, g: torch.Generator) -> Tensor:
    """Object hue: near the class's preferred hue, uniform for a quarter of objects."""
    pref = torch.tensor([c.hue for c in _ALL_CLASSES])[cls.clamp(min=0)]
    hue = pref + 0.06 * torch.randn(cls.shape, generator=g)
    wild = torch.rand(cls.shape, generator=g) < 0.25
    return torch.where(wild, torch.rand(cls.shape, generator=g), hue) % 1.0


_BLOCK = 1024


def sample_scenes(n: int, seed: int | torch.Generator, ood_fraction: float = 0.0,
                  radius_range: tuple[float, float] = SCENE_RADIUS_RANGE) -> SceneTable:
    """Sample the parameters of ``n`` scenes (vectorised, on the CPU); object radii are
    log-uniform in ``radius_range`` (fractions of the image side).

    With an int ``seed``, scenes are drawn in blocks of 1024, block b from the derived seed
    (seed, b): the first k scenes are then the same for every n >= k. A ``torch.Generator``
    draws all n scenes from its stream in one go instead.
    """
    _check_int(n, "n", low=0)
    check_fraction(ood_fraction, "ood_fraction")
    if isinstance(seed, torch.Generator):
        return _sample_block(max(n, 1), seed, ood_fraction, radius_range).select(torch.arange(n))
    _check_int(seed, "seed")
    blocks = [_sample_block(_BLOCK, torch.Generator().manual_seed(derive_seed(seed, b)), ood_fraction,
                            radius_range)
              for b in range(max(1, -(-n // _BLOCK)))]
    return _concat(blocks).select(torch.arange(n))


def _concat(tables: list[SceneTable]) -> SceneTable:
    if len(tables) == 1:
        return tables[0]
    return SceneTable(**{f.name: torch.cat([getattr(t, f.name) for t in tables]) for f in fields(SceneTable)})


def _sample_block(n: int, g: torch.Generator, ood_fraction: float,
                  radius_range: tuple[float, float]) -> SceneTable:
    """``n`` scenes from the generator ``g``."""
    context = torch.randint(len(CONTEXTS), (n,), generator=g)
    ood = torch.rand(n, generator=g) < ood_fraction
    cls = _sample_objects(g, n, context, ood)
    S = _SLOTS
    lo, hi = radius_range
    radius = torch.exp(_uniform(g, n, S, low=math.log(lo), high=math.log(hi)))
    # painter's order: mostly large objects behind small ones, with some exceptions
    order_key = torch.where(cls >= 0, radius * torch.exp(0.35 * torch.randn(n, S, generator=g)), -1.0)
    order = order_key.argsort(1, descending=True)
    cls, radius = cls.gather(1, order), radius.gather(1, order)
    center = radius[..., None] * 0.6 + _uniform(g, n, S, 2) * (1 - 1.2 * radius[..., None])
    hsv = torch.stack([_hue_of(cls, g), _uniform(g, n, S, low=0.55, high=1.0),
                       _uniform(g, n, S, low=0.55, high=1.0)], -1)
    bg_base = torch.tensor([[c.hue, c.saturation, c.value] for c in CONTEXTS])[context]
    jitter = torch.randn(n, 2, 3, generator=g) * torch.tensor([0.03, 0.08, 0.12])
    bg_hsv = (bg_base[:, None, :] + jitter).clamp(0.0, 1.0)
    bg_hsv[..., 0] = bg_hsv[..., 0] % 1.0
    waves = torch.stack([_uniform(g, n, 3, low=2.0, high=9.0), _uniform(g, n, 3, high=math.pi),
                         _uniform(g, n, 3, high=2 * math.pi), _uniform(g, n, 3, low=0.0, high=0.07)], -1)
    clutter_level = torch.rand(n, 1, generator=g)
    kind = torch.where(torch.rand(n, _CLUTTER, generator=g) < clutter_level,
                       torch.randint(1, 3, (n, _CLUTTER), generator=g), 0)
    start = torch.rand(n, _CLUTTER, 2, generator=g)
    stroke = torch.randn(n, _CLUTTER, 2, generator=g) * 0.15
    width = _uniform(g, n, _CLUTTER, 1, low=0.004, high=0.02)
    geom = torch.cat([start, (start + stroke).clamp(0, 1), width], -1)
    clutter_rgb = _hsv_to_rgb(torch.stack([torch.rand(n, _CLUTTER, generator=g),
                                           _uniform(g, n, _CLUTTER, high=0.5),
                                           _uniform(g, n, _CLUTTER, low=0.2, high=0.9)], -1))
    return SceneTable(
        uid=torch.randint(0, 2**31 - 1, (n,), generator=g),
        context=context,
        obj_class=cls,
        obj_center=center,
        obj_radius=torch.where(cls >= 0, radius, 0.0),
        obj_angle=_uniform(g, n, S, high=2 * math.pi),
        obj_aspect=torch.exp(_uniform(g, n, S, low=-0.22, high=0.22)),
        obj_hsv=hsv,
        obj_light_pattern=torch.rand(n, S, generator=g) < 0.5,
        obj_phase=torch.rand(n, S, 2, generator=g),
        obj_shade=torch.randn(n, S, 2, generator=g) * 0.12,
        bg_hsv=bg_hsv,
        bg_direction=_uniform(g, n, high=2 * math.pi),
        bg_waves=waves,
        clutter_kind=kind,
        clutter_geom=geom,
        clutter_rgb=clutter_rgb,
        noise_sigma=_uniform(g, n, low=0.01, high=0.05),
        gain=torch.stack([_uniform(g, n, low=0.8, high=1.2), _uniform(g, n, low=-0.08, high=0.08)], -1),
    )


def scene_labels(scenes: SceneTable) -> Tensor:
    """(N, C) int8 ground truth in {-1, 1}: a class is present iff one of its objects is."""
    cls = scenes.obj_class
    onehot = torch.zeros(len(scenes), len(CLASSES) + 1, dtype=torch.bool)
    labelled = torch.where((cls >= 0) & (cls < len(CLASSES)), cls, len(CLASSES))
    onehot.scatter_(1, labelled, True)
    return onehot[:, : len(CLASSES)].to(torch.int8) * 2 - 1


def scene_attributes(scenes: SceneTable) -> Tensor:
    """(N, A) int8 attributes in {-1, 1} of each image's largest labelled object
    (all -1 for images without one), in the order of :data:`ATTRIBUTES`."""
    cls = scenes.obj_class
    labelled = (cls >= 0) & (cls < len(CLASSES))
    main = torch.where(labelled, scenes.obj_radius, -1.0).argmax(1, keepdim=True)
    has = labelled.any(1)
    hue = scenes.obj_hsv[..., 0].gather(1, main)[:, 0]
    hue_bin = torch.bucketize(hue, torch.tensor(_HUE_EDGES), right=True) % len(_HUE_NAMES)
    radius = scenes.obj_radius.gather(1, main)[:, 0]
    size_bin = torch.bucketize(radius, torch.tensor(_SIZE_EDGES), right=True)
    texture = torch.tensor([TEXTURES.index(c.texture) for c in _ALL_CLASSES])[cls.gather(1, main)[:, 0].clamp(min=0)]
    light = scenes.obj_light_pattern.gather(1, main)[:, 0]
    patterned = texture > 0
    n = len(scenes)
    a = torch.zeros(n, len(ATTRIBUTES), dtype=torch.bool)
    rows = torch.arange(n)
    a[rows, hue_bin] = True
    a[rows, 8] = patterned & ~light
    a[rows, 9] = patterned & light
    a[rows, 10 + size_bin] = True
    a[rows, 13 + texture.clamp(max=3)] = True
    a[~has] = False
    return a.to(torch.int8) * 2 - 1


def scene_class_radius(scenes: SceneTable) -> Tensor:
    """(N, C) radius of the largest object of each labelled class in each scene (fraction of
    the image side; 0 where the class is absent) - for analyses by object size."""
    cls = scenes.obj_class
    labelled = (cls >= 0) & (cls < len(CLASSES))
    out = torch.zeros(len(scenes), len(CLASSES) + 1)
    index = torch.where(labelled, cls, len(CLASSES))  # unlabelled slots go to a spare column
    out.scatter_reduce_(1, index, torch.where(labelled, scenes.obj_radius, 0.0), reduce="amax")
    return out[:, : len(CLASSES)]


def context_only_logits(train: "ShapeScenes", test: "ShapeScenes") -> Tensor:
    """Logits (N_test, C) of a predictor that sees only each test scene's context: the log-odds
    of P(class | context) estimated from the training labels. Its mAP is what label
    correlation alone is worth; a model must beat it to show it recognises objects."""
    pos = (train.labels == 1).to(torch.float64)
    counts = torch.zeros(len(CONTEXTS), pos.shape[1], dtype=torch.float64).index_add_(0, train.scenes.context, pos)
    images = torch.bincount(train.scenes.context, minlength=len(CONTEXTS)).to(torch.float64)
    p = (counts + 0.5) / (images[:, None] + 1.0)  # Jeffreys prior: no 0 or 1 for unseen pairs
    return torch.logit(p[test.scenes.context]).to(torch.float32)


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def _hsv_to_rgb(hsv: Tensor) -> Tensor:
    """Vectorised HSV -> RGB on the last dimension, all in [0, 1]."""
    h, s, v = hsv.unbind(-1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], -1)
    return v[..., None] - v[..., None] * s[..., None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def _box(u: Tensor, v: Tensor, bx: float, by: float) -> Tensor:
    qx, qy = u.abs() - bx, v.abs() - by
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.maximum(qx, qy).clamp(max=0)


def _polygon(u: Tensor, v: Tensor, sides: int, apothem: float) -> Tensor:
    """Regular polygon by its apothem (a polygonal distance, exact inside, close outside)."""
    a = torch.atan2(v, u)
    sector = 2 * math.pi / sides
    local = (a + math.pi / 2) % sector - sector / 2  # one flat side faces down
    return torch.sqrt(u * u + v * v) * torch.cos(local) - apothem


def _star(u: Tensor, v: Tensor, points: int, r_out: float, r_in: float) -> Tensor:
    a = torch.atan2(u, v)  # a point faces up
    sector = 2 * math.pi / points
    local = (a % sector) - sector / 2
    rho = torch.sqrt(u * u + v * v)
    x, y = rho * torch.cos(local), rho * torch.sin(local).abs()
    # distance to the edge from the outer tip (r_out, 0) to the inner notch
    px, py = r_in * math.cos(sector / 2), r_in * math.sin(sector / 2)
    ex, ey = px - r_out, py
    t = (((x - r_out) * ex + y * ey) / (ex * ex + ey * ey)).clamp(0, 1)
    dx, dy = x - r_out - t * ex, y - t * ey
    d = torch.sqrt(dx * dx + dy * dy)
    inside = (x - r_out) * ey - y * ex < 0  # left of the edge when walking tip -> notch
    return torch.where(inside, -d, d)


def _sdf(shape: str, u: Tensor, v: Tensor) -> Tensor:
    """Signed distance in object units (radius ~1) to each shape; negative inside."""
    r = torch.sqrt(u * u + v * v)
    if shape == "disk":
        return r - 0.95
    if shape == "ring":
        return (r - 0.72).abs() - 0.26
    if shape == "square":
        return _box(u, v, 0.78, 0.78)
    if shape == "triangle":
        return _polygon(u, v + 0.2, 3, 0.5)
    if shape == "hexagon":
        return _polygon(u, v, 6, 0.84)
    if shape == "pentagon":
        return _polygon(u, v, 5, 0.8)
    if shape == "star":
        return _star(u, v, 5, 1.0, 0.42)
    if shape == "cross":
        return torch.minimum(_box(u, v, 0.95, 0.3), _box(u, v, 0.3, 0.95))
    if shape == "crescent":
        return torch.maximum(r - 0.95, 0.8 - torch.sqrt((u - 0.45) ** 2 + (v - 0.2) ** 2))
    if shape == "ellipse":
        k = torch.sqrt((u / 1.0) ** 2 + (v / 0.55) ** 2)
        return (k - 1.0) * 0.55
    if shape == "semicircle":
        vv = v + 0.45
        return torch.maximum(torch.sqrt(u * u + vv * vv) - 1.0, -vv)
    if shape == "diamond":
        return _polygon(u / 1.0, v / 0.62, 4, 0.72) * 0.62
    if shape == "arrow":
        head = _polygon(u, v - 0.35, 3, 0.32)
        shaft = _box(u, v + 0.35, 0.2, 0.55)
        return torch.minimum(head, shaft)
    if shape == "heart":
        # two disks and a downward triangle
        lobes = torch.minimum(torch.sqrt((u - 0.38) ** 2 + (v - 0.3) ** 2),
                              torch.sqrt((u + 0.38) ** 2 + (v - 0.3) ** 2)) - 0.45
        return torch.minimum(lobes, _polygon(u, -(v - 0.05), 3, 0.42))
    if shape == "tee":
        return torch.minimum(_box(u, v - 0.6, 0.9, 0.25), _box(u, v + 0.1, 0.25, 0.8))
    raise KeyError(shape)


def _soft(s: Tensor, w: Tensor) -> Tensor:
    """Pattern value in [0, 1] from a periodic signal ``s`` in [-1, 1] whose phase moves by
    ``w`` radians per pixel: sharp when well resolved, fading to grey when aliased."""
    fade = torch.exp(-((w / 2.2) ** 2))
    return 0.5 + fade * ((0.5 + s / (2 * w.clamp(min=1e-3))).clamp(0, 1) - 0.5)


def _texture(texture: str, u: Tensor, v: Tensor, phase: Tensor, pix: Tensor) -> Tensor:
    """Pattern weight in [0, 1] (0 = base colour, 1 = pattern colour); ``pix`` is the pixel
    size in object units, used to fade patterns too fine for the resolution."""
    if texture == "solid":
        return torch.zeros_like(u)
    px, py = phase[:, 0, None, None] * 2 * math.pi, phase[:, 1, None, None] * 2 * math.pi
    if texture == "stripes":
        f = 2 * math.pi * 1.4
        return _soft(torch.sin(f * u + px), f * pix)
    if texture == "checker":
        f = 2 * math.pi * 0.8
        return _soft(torch.sin(f * u + px) * torch.sin(f * v + py), f * pix)
    if texture == "waves":
        f = 2 * math.pi * 1.2
        return _soft(torch.sin(f * u + 1.5 * torch.sin(f * 0.8 * v + py) + px), f * pix)
    if texture == "dots":
        spacing, radius = 0.55, 0.17
        du = ((u / spacing + phase[:, 0, None, None]) % 1.0 - 0.5) * spacing
        dv = ((v / spacing + phase[:, 1, None, None]) % 1.0 - 0.5) * spacing
        d = torch.sqrt(du * du + dv * dv) - radius
        sharp = (0.5 - d / pix).clamp(0, 1)
        mean = math.pi * radius**2 / spacing**2
        fade = torch.exp(-((pix / (radius * 1.2)) ** 2))
        return mean + fade * (sharp - mean)
    raise KeyError(texture)


def _hash_noise(uid: Tensor, h: int, w: int) -> Tensor:
    """Deterministic per-pixel noise (B, 3, H, W), zero mean and unit variance, from integer
    hashing: the same on every device and for any batch composition."""
    dev = uid.device
    y = torch.arange(h, device=dev, dtype=torch.int64)[:, None]
    x = torch.arange(w, device=dev, dtype=torch.int64)[None, :]
    c = torch.arange(3, device=dev, dtype=torch.int64)[:, None, None]
    m = 0x7FFFFFFF  # stay below 2**31 so every product fits in int64
    k = (uid[:, None, None, None] * 7919 + ((y * w + x) * 3 + c)[None]) & m
    for mul in (0x2C1B3C6D, 0x297A2D39, 0x1B873593):
        k = ((k ^ (k >> 15)) * mul) & m
    return (k.to(torch.float32) / m - 0.5) * math.sqrt(12.0)


def _pixel_grid(size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    c = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    return c[None, :].expand(size, size), c[:, None].expand(size, size)  # x, y


def _background(s: SceneTable, gx: Tensor, gy: Tensor) -> Tensor:
    b = len(s)
    d = s.bg_direction
    t = ((gx[None] - 0.5) * torch.cos(d)[:, None, None] + (gy[None] - 0.5) * torch.sin(d)[:, None, None]) + 0.5
    t = t.clamp(0, 1)
    c0, c1 = _hsv_to_rgb(s.bg_hsv[:, 0]), _hsv_to_rgb(s.bg_hsv[:, 1])
    img = c0[:, :, None, None] * (1 - t[:, None]) + c1[:, :, None, None] * t[:, None]
    f, a, ph, amp = s.bg_waves.unbind(-1)  # (B, 3) each
    proj = gx[None, None] * torch.cos(a)[..., None, None] + gy[None, None] * torch.sin(a)[..., None, None]
    waves = (amp[..., None, None] * torch.sin(2 * math.pi * f[..., None, None] * proj + ph[..., None, None])).sum(1)
    img = img + waves[:, None]
    # clutter: strokes (capsules) and blobs
    x0, y0, x1, y1, wd = s.clutter_geom.unbind(-1)  # (B, K)
    px, py = gx[None, None] - x0[..., None, None], gy[None, None] - y0[..., None, None]
    ex, ey = (x1 - x0)[..., None, None], (y1 - y0)[..., None, None]
    stroke = s.clutter_kind[..., None, None] == 1
    tt = ((px * ex + py * ey) / (ex * ex + ey * ey).clamp(min=1e-8)).clamp(0, 1)
    tt = torch.where(stroke, tt, torch.zeros_like(tt))
    dist = torch.sqrt((px - tt * ex) ** 2 + (py - tt * ey) ** 2)
    half = torch.where(stroke, wd[..., None, None] * 0.5, wd[..., None, None] * 1.6)
    pix = 1.0 / gx.shape[-1]
    cover = (0.5 - (dist - half) / pix).clamp(0, 1) * (s.clutter_kind[..., None, None] > 0)
    for k in range(cover.shape[1]):  # strokes overlap in order
        alpha = cover[:, k, None]
        img = img * (1 - alpha) + s.clutter_rgb[:, k, :, None, None] * alpha
    return img


_SHAPE_OF = torch.tensor([SHAPES.index(c.shape) for c in _ALL_CLASSES])
_TEXTURE_OF = torch.tensor([TEXTURES.index(c.texture) for c in _ALL_CLASSES])


@dataclass
class _SlotGroups:
    """Which object slots to draw, grouped by shape and by texture. Computed on the CPU table
    so the device never has to report sizes back (no host-device sync while rendering)."""

    bi: Tensor  # (M,) scene of each present object
    si: Tensor  # (M,) its slot
    by_shape: list[tuple[str, Tensor]]  # shape name -> positions in (bi, si)
    by_texture: list[tuple[str, Tensor]]

    @classmethod
    def of(cls, table: SceneTable) -> "_SlotGroups":
        bi, si = (table.obj_class >= 0).nonzero(as_tuple=True)
        c = table.obj_class[bi, si]
        shape, texture = _SHAPE_OF[c], _TEXTURE_OF[c]
        by_shape = [(name, (shape == k).nonzero()[:, 0]) for k, name in enumerate(SHAPES)]
        by_texture = [(name, (texture == k).nonzero()[:, 0]) for k, name in enumerate(TEXTURES) if k > 0]
        return cls(bi, si, [g for g in by_shape if len(g[1])], [g for g in by_texture if len(g[1])])

    def to(self, device: torch.device) -> "_SlotGroups":
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return _SlotGroups(move(self.bi), move(self.si), [(n, move(i)) for n, i in self.by_shape],
                           [(n, move(i)) for n, i in self.by_texture])


def _objects(s: SceneTable, groups: _SlotGroups, img: Tensor, gx: Tensor, gy: Tensor) -> Tensor:
    b, n_slots = s.obj_class.shape
    size = gx.shape[-1]
    pix = 1.0 / size
    cover = img.new_zeros(b, n_slots, size, size)
    pattern = img.new_zeros(b, n_slots, size, size)
    shade = img.new_zeros(b, n_slots, size, size)
    # object-frame coordinates of every present slot; each shape's distance function and
    # each texture then runs once over all the objects that use it
    bi, si = groups.bi, groups.si
    r = s.obj_radius[bi, si][:, None, None]
    ang = s.obj_angle[bi, si][:, None, None]
    asp = s.obj_aspect[bi, si][:, None, None]
    dx = (gx[None] - s.obj_center[bi, si, 0][:, None, None]) / r
    dy = (gy[None] - s.obj_center[bi, si, 1][:, None, None]) / r
    ca, sa = torch.cos(ang), torch.sin(ang)
    u = (ca * dx + sa * dy) / asp
    v = (-sa * dx + ca * dy) * asp
    pix_obj = (pix / r).expand_as(u)
    dist = torch.empty_like(u)
    for name, idx in groups.by_shape:
        dist[idx] = _sdf(name, u[idx], v[idx])
    tex = torch.zeros_like(u)
    phase = s.obj_phase[bi, si]
    for name, idx in groups.by_texture:
        tex[idx] = _texture(name, u[idx], v[idx], phase[idx], pix_obj[idx])
    cover[bi, si] = (0.5 - dist * r / (pix * torch.minimum(asp, 1 / asp))).clamp(0, 1)
    pattern[bi, si] = tex
    g = s.obj_shade[bi, si]
    shade[bi, si] = 1 + g[:, 0, None, None] * u + g[:, 1, None, None] * v
    base = _hsv_to_rgb(s.obj_hsv)  # (B, S, 3)
    h, sat, val = s.obj_hsv.unbind(-1)
    dark = _hsv_to_rgb(torch.stack([h, sat, val * 0.3], -1))
    light = _hsv_to_rgb(torch.stack([h, sat * 0.15, torch.full_like(val, 0.95)], -1))
    second = torch.where(s.obj_light_pattern[..., None], light, dark)
    for k in range(n_slots):  # painter's algorithm in the table's drawing order
        t = pattern[:, k, None]
        colour = base[:, k, :, None, None] * (1 - t) + second[:, k, :, None, None] * t
        colour = colour * shade[:, k, None]
        alpha = cover[:, k, None]
        img = img * (1 - alpha) + colour * alpha
    return img


def render_scenes(scenes: SceneTable, image_size: int, device: torch.device | str | None = None,
                  chunk: int | None = None) -> Tensor:
    """Render scenes to a uint8 tensor (N, 3, H, W) with H = W = ``image_size``.

    Rendering is deterministic: the same scene gives the same pixels in any batch. It runs
    on ``device`` (default: the CPU) in chunks that bound the memory of the intermediate
    (chunk, slots, H, W) tensors: about 64 MB on the CPU, 1 GB on a GPU.
    """
    _check_int(image_size, "image_size (pixels)", 32, 448)
    device = torch.device(device) if device is not None else torch.device("cpu")
    table = scenes.to("cpu")
    n = len(table)
    out = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8, device=device)
    if chunk is None:
        budget = 64e6 if device.type == "cpu" else 1e9
        chunk = max(1, int(budget / (4 * (_SLOTS + _CLUTTER) * image_size**2)))
    gx, gy = _pixel_grid(image_size, device)
    for start in range(0, n, chunk):
        part = table.select(torch.arange(start, min(n, start + chunk)))
        groups = _SlotGroups.of(part).to(device)
        s = part.to(device)
        img = _background(s, gx, gy)
        img = _objects(s, groups, img, gx, gy)
        contrast, bright = s.gain[:, 0, None, None, None], s.gain[:, 1, None, None, None]
        img = (img - 0.5) * contrast + 0.5 + bright
        img = img + s.noise_sigma[:, None, None, None] * _hash_noise(s.uid, image_size, image_size)
        out[start : start + len(s)] = (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return out


# --------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------

_SPLITS = ("train", "val", "test", "unlabeled", "pretrain")
_CACHE_LIMIT = 2**30  # "auto" caches a dataset whose images fit in 1 GiB


class ShapeScenes(torch.utils.data.Dataset):
    """The embedded benchmark as a dataset of ``n`` scenes.

    Args:
        n: number of images.
        image_size: side of the rendered square images, 32 to 448 pixels.
        seed: the dataset seed; each split draws from its own stream derived from it, so the
            splits of one seed never share a scene.
        split: "train", "val", "test", "unlabeled" or "pretrain" (a disjoint set for
            pretraining backbones, the benchmark's stand-in for ImageNet).
        ood_fraction: share of images that hold only distractor objects (label vector
            all -1), for out-of-distribution unlabeled data.
        cache: keep the rendered images: True, False, or None ("auto": cache when they fit
            in 1 GiB). The cache is rendered on the first device that asks for a batch and
            kept there.
        radius_range: the objects' radii (fractions of the image side), log-uniform.

    ``labels`` (N, C) int8 in {-1, 1} and ``attributes`` are available without rendering.
    Items are ``(image uint8 (3, H, W), index)``; :meth:`load_batch` renders a batch on any
    device, which is how the engine feeds a GPU without a DataLoader.
    """

    name = "shapescenes"
    kind = "images"
    in_memory = True  # load_batch renders (or slices the cache) on any device

    def __init__(self, n: int, image_size: int = 64, seed: int = 0, split: str = "train",
                 ood_fraction: float = 0.0, cache: bool | None = None,
                 radius_range: tuple[float, float] = SCENE_RADIUS_RANGE) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
        _check_int(n, "n", low=0)
        _check_int(seed, "seed")
        _check_int(image_size, "image_size (pixels)", 32, 448)
        self.n, self.image_size, self.seed, self.split = n, image_size, seed, split
        self.scenes = sample_scenes(n, seed=derive_seed(seed, _SPLITS.index(split), 0x5CE7E5),
                                    ood_fraction=ood_fraction, radius_range=radius_range)
        self.labels = scene_labels(self.scenes)
        self.attributes = scene_attributes(self.scenes)
        self.classes = [c.name for c in CLASSES]
        self.attribute_names = list(ATTRIBUTES)
        self.cache = cache if cache is not None else 3 * n * image_size**2 <= _CACHE_LIMIT
        self._cache: Tensor | None = None

    def __len__(self) -> int:
        return self.n

    def images(self, device: torch.device | str = "cpu") -> Tensor:
        """All images as one uint8 tensor on ``device`` (from the cache when there is one)."""
        device = torch.device(device)
        if not self.cache:
            return render_scenes(self.scenes, self.image_size, device=device)
        if self._cache is None:
            self._cache = render_scenes(self.scenes, self.image_size, device=device)
        elif self._cache.device != device:  # the cache moves once, not every batch
            self._cache = self._cache.to(device)
        return self._cache

    def load_batch(self, index: Tensor, device: torch.device | str = "cpu") -> Tensor:
        """uint8 images (B, 3, H, W) of the scenes ``index``, on ``device``."""
        if self.cache:
            images = self.images(device)
            return images[index.to(images.device, non_blocking=True)]
        return render_scenes(self.scenes.select(index.cpu()), self.image_size, device=device)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.load_batch(torch.tensor([i]))[0], i
