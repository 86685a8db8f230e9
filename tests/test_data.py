"""Tests of mlrobust.data: the embedded benchmark ShapeScenes (determinism, label and
attribute semantics against the scene table, the statistics a multi-label test bed needs,
rendering) and the dataset registry."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlrobust.data import (
    ATTRIBUTES,
    CLASSES,
    CONTEXTS,
    DATASETS,
    DISTRACTOR_CLASSES,
    DataSplits,
    LabelledDataset,
    ShapeScenes,
    TensorImages,
    create_dataset,
    register_dataset,
    render_scenes,
    sample_scenes,
)
from mlrobust.data import shapescenes
from mlrobust.data.shapescenes import COMPANIONS, SceneTable, scene_attributes, scene_labels

C = len(CLASSES)
SPLITS = ("train", "val", "test", "unlabeled")
SIGMAS = 5.0
PROPERTY = settings(deadline=None, max_examples=25)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def big() -> ShapeScenes:
    """5000 scenes for statistics; nothing is rendered."""
    return ShapeScenes(5000, image_size=32, seed=0)


@pytest.fixture(scope="module")
def small() -> ShapeScenes:
    return ShapeScenes(12, image_size=32, seed=1, split="val")


@pytest.fixture(scope="module")
def small_images(small: ShapeScenes) -> torch.Tensor:
    return small.images()


def reference_labels(scenes: SceneTable) -> torch.Tensor:
    """Labels written out object by object: +1 iff an object of a labelled class is there."""
    y = torch.full((len(scenes), C), -1, dtype=torch.int8)
    for i, row in enumerate(scenes.obj_class.tolist()):
        for c in row:
            if 0 <= c < C:
                y[i, c] = 1
    return y


def largest_labelled(scenes: SceneTable) -> list[int | None]:
    """Slot of each scene's largest labelled object (None if it has none)."""
    out: list[int | None] = []
    for cls, rad in zip(scenes.obj_class.tolist(), scenes.obj_radius.tolist()):
        slots = [k for k, c in enumerate(cls) if 0 <= c < C]
        out.append(max(slots, key=lambda k: rad[k]) if slots else None)
    return out


def attr(name: str) -> int:
    return ATTRIBUTES.index(name)


def group(prefix: str) -> list[int]:
    return [k for k, a in enumerate(ATTRIBUTES) if a.startswith(prefix)]


def assert_binomial(count: float, trials: int, p: float, what: str) -> None:
    sd = math.sqrt(trials * p * (1 - p))
    assert abs(count - trials * p) <= SIGMAS * sd + 1e-9, (
        f"{what}: {count} of {trials}, expected {trials * p:.1f} +- {SIGMAS * sd:.1f}")


def tables_equal(a: SceneTable, b: SceneTable) -> bool:
    return all(torch.equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(SceneTable))


# --------------------------------------------------------------------------- the definition


def test_class_definitions() -> None:
    assert len(CLASSES) == 24
    names = [c.name for c in CLASSES]
    assert len(set(names)) == 24
    # classes are (shape, texture) pairs: every shape comes in two textures, so neither cue
    # alone names the class
    shapes = [c.shape for c in CLASSES]
    assert all(shapes.count(s) == 2 for s in shapes)
    assert len({c.texture for c in CLASSES}) >= 3
    # distractors are truly out of the label set: no labelled shape is a distractor shape
    assert len(DISTRACTOR_CLASSES) >= 1
    assert not {c.shape for c in DISTRACTOR_CLASSES} & set(shapes)
    assert not {c.name for c in DISTRACTOR_CLASSES} & set(names)
    for ctx in CONTEXTS:
        assert len(set(ctx.favoured)) == len(ctx.favoured) and all(0 <= c < C for c in ctx.favoured)
    for a, b, p in COMPANIONS:
        assert 0 <= a < C and 0 <= b < C and a != b and 0 < p <= 1
    assert len(ATTRIBUTES) == 17 and len(set(ATTRIBUTES)) == 17


# --------------------------------------------------------------------------- determinism


def test_same_arguments_same_dataset() -> None:
    a = ShapeScenes(40, image_size=32, seed=7, split="test")
    b = ShapeScenes(40, image_size=32, seed=7, split="test")
    assert tables_equal(a.scenes, b.scenes)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.attributes, b.attributes)
    idx = torch.tensor([0, 13, 39])
    assert torch.equal(a.load_batch(idx), b.load_batch(idx))


def test_seeds_and_splits_give_different_scenes() -> None:
    """Every (seed, split) is its own stream: no scene (uid) shared between any two of them,
    in particular train, val and test of one seed, or one seed's val and the next's train."""
    uids: dict[tuple[int, str], set[int]] = {}
    labels = []
    for seed in range(4):
        for split in SPLITS:
            ds = ShapeScenes(30, image_size=32, seed=seed, split=split)
            uids[seed, split] = set(ds.scenes.uid.tolist())
            labels.append(ds.labels)
    keys = list(uids)
    for i, k in enumerate(keys):
        for k2 in keys[i + 1:]:
            assert not uids[k] & uids[k2], f"{k} and {k2} share scenes"
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            assert not torch.equal(labels[i], labels[j])


def test_image_does_not_depend_on_the_batch(small: ShapeScenes, small_images: torch.Tensor) -> None:
    idx = torch.tensor([7, 2, 11, 2])
    assert torch.equal(render_scenes(small.scenes.select(idx), 32), small_images[idx])
    assert torch.equal(render_scenes(small.scenes.select(idx), 32, chunk=1), small_images[idx])
    assert torch.equal(render_scenes(small.scenes, 32, chunk=5), small_images)
    assert torch.equal(small.load_batch(idx), small_images[idx])
    for i in (0, 5, 11):
        image, index = small[i]
        assert index == i and torch.equal(image, small_images[i])


def test_cache_gives_the_same_images(small: ShapeScenes, small_images: torch.Tensor) -> None:
    cached = ShapeScenes(12, image_size=32, seed=1, split="val", cache=True)
    first = cached.images()
    assert torch.equal(first, small_images)
    assert cached.images() is first, "a cached dataset renders once"
    idx = torch.tensor([3, 1])
    assert torch.equal(cached.load_batch(idx), small_images[idx])
    assert torch.equal(cached[4][0], small_images[4])


def test_resolution_changes_pixels_not_scenes() -> None:
    lo = ShapeScenes(6, image_size=32, seed=5)
    hi = ShapeScenes(6, image_size=64, seed=5)
    assert tables_equal(lo.scenes, hi.scenes)
    assert torch.equal(lo.labels, hi.labels) and torch.equal(lo.attributes, hi.attributes)
    # geometry is resolution independent: the 64 px image, halved, is close to the 32 px one
    # (up to pixel noise and fine texture), and much closer than any other scene's image
    a, b = F.avg_pool2d(hi.images().float(), 2), lo.images().float()
    same = (a - b).abs().mean((1, 2, 3))
    other = (a - b.roll(1, 0)).abs().mean((1, 2, 3))
    assert (same < 16).all(), same
    assert (same < other).all(), (same, other)


def test_getitem_out_of_range(small: ShapeScenes) -> None:
    with pytest.raises(IndexError):
        small[len(small)]


# --------------------------------------------------------------------------- labels


def test_labels_match_the_scene_table(big: ShapeScenes) -> None:
    y = big.labels
    assert y.dtype == torch.int8 and y.shape == (5000, C)
    assert set(y.unique().tolist()) == {-1, 1}
    assert torch.equal(y, reference_labels(big.scenes))
    assert torch.equal(scene_labels(big.scenes), y)
    assert big.classes == [c.name for c in CLASSES]


def test_distractors_occur_and_are_never_labelled(big: ShapeScenes) -> None:
    cls = big.scenes.obj_class
    distractor = cls >= C
    assert (cls < C + len(DISTRACTOR_CLASSES)).all()
    share = distractor.any(1).float().mean().item()
    assert 0.2 < share < 0.7, share
    # turning every labelled object into a distractor leaves no positive label
    as_distractors = dataclasses.replace(big.scenes, obj_class=torch.where(cls >= 0, C, -1))
    assert (scene_labels(as_distractors) == -1).all()
    # and removing the distractors changes no label
    no_distractors = dataclasses.replace(big.scenes, obj_class=torch.where(distractor, -1, cls))
    assert torch.equal(scene_labels(no_distractors), big.labels)


def test_ood_fraction_one_gives_only_distractors() -> None:
    ds = ShapeScenes(300, image_size=32, seed=3, split="unlabeled", ood_fraction=1.0)
    assert (ds.labels == -1).all()
    assert (ds.attributes == -1).all()
    cls = ds.scenes.obj_class
    assert ((cls >= C) | (cls == -1)).all()
    assert ((cls >= C).sum(1) >= 1).all(), "an out-of-distribution image still shows objects"


def test_ood_fraction_share() -> None:
    n, p = 3000, 0.3
    ds = ShapeScenes(n, image_size=32, seed=4, split="unlabeled", ood_fraction=p)
    all_negative = (ds.labels == -1).all(1)
    assert_binomial(all_negative.sum().item(), n, p, "all-negative rows")
    ood_rows = ds.scenes.obj_class[all_negative]
    assert ((ood_rows >= C) | (ood_rows == -1)).all()


def test_label_statistics(big: ShapeScenes) -> None:
    pos = big.labels == 1
    per_image = pos.sum(1).float()
    assert (per_image >= 1).all(), "with ood_fraction=0 every image has a label"
    assert 2.0 <= per_image.mean().item() <= 3.5, per_image.mean()
    single = (per_image == 1).float().mean().item()
    assert 0.15 <= single <= 0.35, single
    freq = pos.float().mean(0)
    assert freq.min().item() > 0.02, freq
    # 1 to 6 labelled objects, each count common
    cls = big.scenes.obj_class
    n_objects = ((cls >= 0) & (cls < C)).sum(1)
    counts = torch.bincount(n_objects, minlength=7)
    assert counts[0] == 0 and n_objects.max() <= 6
    assert (counts[1:7] > 0.05 * len(big)).all(), counts


def test_contexts_favour_their_classes(big: ShapeScenes) -> None:
    pos = big.labels == 1
    for k, ctx in enumerate(CONTEXTS):
        inside = big.scenes.context == k
        assert 0.1 < inside.float().mean().item() < 0.25
        p_in = pos[inside].float().mean(0)
        p_out = pos[~inside].float().mean(0)
        top = ctx.favoured[0]
        assert p_in[top] > 3 * p_out[top], (ctx.name, p_in[top], p_out[top])
        for c in ctx.favoured:
            assert p_in[c] > 1.5 * p_out[c], (ctx.name, c, p_in[c], p_out[c])


def test_companions_co_occur(big: ShapeScenes) -> None:
    pos = (big.labels == 1).float()
    for a, b, p in COMPANIONS:
        pa, pb = pos[:, a].mean(), pos[:, b].mean()
        pab = (pos[:, a] * pos[:, b]).mean()
        assert pab > 2.5 * pa * pb, (a, b, pab, pa * pb)
        assert pab / pa >= p - 0.05, (a, b, pab / pa)


def test_object_geometry(big: ShapeScenes) -> None:
    s = big.scenes
    present = s.obj_class >= 0
    r = s.obj_radius
    assert ((r[present] >= 0.10 - 1e-6) & (r[present] <= 0.30 + 1e-6)).all()
    assert (r[~present] == 0).all()
    # scale from small to large (log-uniform: a quarter below 0.10 * 3**0.25 = 0.132)
    assert (r[present] < 0.14).float().mean() > 0.25
    assert (r[present] >= 0.20).float().mean() > 0.3
    # objects fill the first slots; no present slot after an empty one
    assert not ((~present[:, :-1]) & present[:, 1:]).any()
    # the bulk of each object lies inside the image
    centre = s.obj_center[present]
    rr = r[present][:, None]
    assert ((centre >= 0.6 * rr - 1e-6) & (centre <= 1 - 0.6 * rr + 1e-6)).all()
    # painter's order: mostly large objects behind small ones, with exceptions
    pairs = present[:, :-1] & present[:, 1:]
    decreasing = ((r[:, :-1] >= r[:, 1:]) & pairs).sum() / pairs.sum()
    assert 0.6 < decreasing < 0.95, decreasing


@PROPERTY
@given(n=st.integers(1, 25), seed=st.integers(0, 2**31 - 1), ood=st.sampled_from([0.0, 0.5, 1.0]))
def test_scene_table_invariants(n: int, seed: int, ood: float) -> None:
    s = sample_scenes(n, seed=seed, ood_fraction=ood)
    assert len(s) == n and tables_equal(s, sample_scenes(n, seed=seed, ood_fraction=ood))
    y, a = scene_labels(s), scene_attributes(s)
    assert torch.equal(y, reference_labels(s))
    labelled = ((s.obj_class >= 0) & (s.obj_class < C)).sum(1)
    assert (labelled <= 6).all() and ((s.obj_class >= 0).sum(1) <= 8).all()
    if ood == 0.0:
        assert (labelled >= 1).all()
    if ood == 1.0:
        assert (labelled == 0).all()
    # an image has attributes iff it has a labelled object
    assert torch.equal((a == 1).any(1), (y == 1).any(1))


def test_scene_class_radius(big: ShapeScenes) -> None:
    """Radius of the largest object of each labelled class, 0 where the class is absent."""
    s = big.scenes.select(torch.arange(500))
    radius = shapescenes.scene_class_radius(s)
    expected = torch.zeros(len(s), C)
    for i, (cls, rad) in enumerate(zip(s.obj_class.tolist(), s.obj_radius.tolist())):
        for c, r in zip(cls, rad):
            if 0 <= c < C:
                expected[i, c] = max(expected[i, c].item(), r)
    torch.testing.assert_close(radius, expected)
    assert torch.equal(radius > 0, big.labels[:500] == 1)


# --------------------------------------------------------------------------- attributes


def test_attribute_structure(big: ShapeScenes) -> None:
    a = big.attributes
    assert a.dtype == torch.int8 and a.shape == (5000, 17)
    assert set(a.unique().tolist()) == {-1, 1}
    assert big.attribute_names == list(ATTRIBUTES)
    on = a == 1
    colour, size, texture, pattern = group("colour:"), group("size:"), group("texture:"), group("pattern:")
    assert len(colour) == 8 and len(size) == 3 and len(texture) == 4 and len(pattern) == 2
    assert (on[:, colour].sum(1) == 1).all()
    assert (on[:, size].sum(1) == 1).all()
    assert (on[:, texture].sum(1) == 1).all()
    solid = on[:, attr("texture:solid")]
    assert (on[:, pattern].sum(1) == (~solid).long()).all(), "a pattern tone iff the texture has a pattern"
    # every value of every attribute occurs
    assert on.float().mean(0).min() > 0.01


def test_attributes_describe_the_largest_labelled_object(big: ShapeScenes) -> None:
    s, on = big.scenes, big.attributes == 1
    main = largest_labelled(s)
    cls, rad, light = s.obj_class.tolist(), s.obj_radius.tolist(), s.obj_light_pattern.tolist()
    for i, k in enumerate(main):
        assert k is not None
        texture = CLASSES[cls[i][k]].texture
        assert on[i, attr(f"texture:{texture}")], (i, texture)
        r = rad[i][k]
        size = "small" if r < 0.20 else "medium" if r < 0.26 else "large"
        assert on[i, attr(f"size:{size}")], (i, r)
        if texture != "solid":
            tone = "light" if light[i][k] else "dark"
            assert on[i, attr(f"pattern:{tone}")], (i, tone)


def test_colour_attribute_follows_the_hue(big: ShapeScenes) -> None:
    """Hues well inside a colour name get that name: red ~0, green ~1/3, blue ~0.63."""
    s, on = big.scenes, big.attributes == 1
    main = torch.tensor(largest_labelled(s))
    hue = s.obj_hsv[torch.arange(len(s)), main, 0]
    for name, inside in [("red", (hue < 0.03) | (hue > 0.97)), ("green", (hue > 0.27) & (hue < 0.39)),
                         ("blue", (hue > 0.61) & (hue < 0.67))]:
        assert inside.sum() > 50
        assert on[inside, attr(f"colour:{name}")].all(), name
    # the colour is mostly the class's own: triangles and arrows are preferred green
    green_class = torch.tensor([CLASSES[c].shape in ("triangle", "arrow") for c in range(C)])
    main_cls = s.obj_class[torch.arange(len(s)), main]
    is_green = green_class[main_cls]
    assert on[is_green, attr("colour:green")].float().mean() > 0.6
    assert on[~is_green, attr("colour:green")].float().mean() < 0.2


# --------------------------------------------------------------------------- rendering


def test_render_dtype_and_shape(small: ShapeScenes, small_images: torch.Tensor) -> None:
    assert small_images.dtype == torch.uint8 and small_images.shape == (12, 3, 32, 32)
    two = small.scenes.select(torch.tensor([0, 1]))
    assert render_scenes(two, 48).shape == (2, 3, 48, 48)
    assert render_scenes(small.scenes.select(torch.tensor([0])), 448).shape == (1, 3, 448, 448)
    assert small[0][0].shape == (3, 32, 32)


@pytest.mark.parametrize("size", [0, 16, 31, 449, 1024])
def test_bad_image_size(size: int, small: ShapeScenes) -> None:
    with pytest.raises(ValueError, match=rf"image_size.*{size}"):
        ShapeScenes(4, image_size=size)
    with pytest.raises(ValueError, match=rf"image_size.*{size}"):
        render_scenes(small.scenes, size)


def test_bad_split_n_and_ood_fraction() -> None:
    with pytest.raises(ValueError) as err:
        ShapeScenes(4, split="training")
    assert "split" in str(err.value) and "training" in str(err.value)
    assert all(s in str(err.value) for s in SPLITS)
    with pytest.raises(ValueError, match=r"\bn\b.*-1"):
        ShapeScenes(-1)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="ood_fraction"):
            ShapeScenes(4, ood_fraction=bad)


def test_empty_dataset() -> None:
    ds = ShapeScenes(0, image_size=32)
    assert len(ds) == 0 and ds.labels.shape == (0, C) and ds.attributes.shape == (0, 17)
    assert ds.images().shape == (0, 3, 32, 32)


@pytest.mark.parametrize(("kwargs", "name"), [({"n": 2.5}, "n"), ({"n": 4, "seed": 1.5}, "seed")])
def test_bad_argument_types_are_named(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises((TypeError, ValueError)) as err:
        ShapeScenes(image_size=32, **kwargs)
    msg = str(err.value)
    assert re.search(rf"\b{name}\b", msg) and str(kwargs[name]) in msg, msg


def test_float_image_size_is_refused() -> None:
    with pytest.raises(TypeError, match="image_size"):
        ShapeScenes(2, image_size=32.0)  # type: ignore[arg-type]


def test_sampling_is_prefix_stable_and_splits_are_disjoint() -> None:
    small, large = ShapeScenes(12, image_size=32), ShapeScenes(2100, image_size=32)  # spans 3 blocks
    assert torch.equal(small.labels, large.labels[:12])
    assert torch.equal(small.images(), large.load_batch(torch.arange(12)))
    pre = ShapeScenes(12, image_size=32, split="pretrain")
    assert not torch.equal(pre.scenes.uid, small.scenes.uid)


def test_cache_auto_and_cache_moves_once() -> None:
    assert ShapeScenes(10, image_size=32).cache is True
    assert ShapeScenes(10_000, image_size=448).cache is False  # 6 GB of pixels: rendered on demand
    ds = ShapeScenes(6, image_size=32, cache=True)
    first = ds.load_batch(torch.arange(3))
    assert ds._cache is not None and torch.equal(first, ds.images()[:3])


def test_sample_scenes_accepts_a_generator() -> None:
    a = sample_scenes(5, seed=torch.Generator().manual_seed(3))
    b = sample_scenes(5, seed=torch.Generator().manual_seed(3))
    assert tables_equal(a, b)


def test_pixels_are_not_constant(small_images: torch.Tensor) -> None:
    x = small_images.float()
    assert (x.std(dim=(2, 3)) > 3).all(), "every channel of every image varies"
    flat = x.flatten(1)
    dist = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])
    off_diagonal = dist[~torch.eye(len(x), dtype=torch.bool)]
    assert off_diagonal.min() > 10, "no two scenes render alike"


def test_objects_are_drawn_where_the_table_says() -> None:
    """Render each scene with only its largest labelled object and with no object at all:
    the pixels that change lie within that object's extent and cover a good part of it."""
    size = 64
    s = ShapeScenes(16, image_size=size, seed=9).scenes
    main = torch.tensor(largest_labelled(s))
    rows = torch.arange(len(s))
    keep = torch.zeros_like(s.obj_class, dtype=torch.bool)
    keep[rows, main] = True
    one = dataclasses.replace(s, obj_class=torch.where(keep, s.obj_class, -1))
    none = dataclasses.replace(s, obj_class=torch.full_like(s.obj_class, -1))
    diff = (render_scenes(one, size).int() - render_scenes(none, size).int()).abs().sum(1)
    grid = (torch.arange(size) + 0.5) / size
    for i in range(len(s)):
        r = s.obj_radius[i, main[i]].item()
        cx, cy = s.obj_center[i, main[i]].tolist()
        dist = torch.sqrt((grid[None, :] - cx) ** 2 + (grid[:, None] - cy) ** 2)
        changed = diff[i] > 24
        # aspect up to e^0.22 stretches a unit-radius shape to ~1.25 r, plus a pixel of edge
        assert not (changed & (dist > 1.3 * r + 1.5 / size)).any(), i
        assert changed.sum() >= 0.2 * math.pi * (r * size) ** 2, (i, changed.sum().item())
    # the background alone is not flat either (gradient, waves, clutter, noise)
    assert (render_scenes(none, 32).float().std(dim=(1, 2, 3)) > 2).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_render_matches_cpu(small: ShapeScenes, small_images: torch.Tensor) -> None:
    idx = torch.tensor([1, 4, 9])
    gpu = small.load_batch(idx, device="cuda")
    assert gpu.device.type == "cuda" and gpu.dtype == torch.uint8
    diff = (gpu.cpu().int() - small_images[idx].int()).abs()
    assert diff.float().mean() < 0.5 and (diff <= 2).float().mean() > 0.99
    assert torch.equal(render_scenes(small.scenes.to("cuda"), 32).cpu()[idx], gpu.cpu())


# --------------------------------------------------------------------------- registry


def test_create_dataset_shapescenes() -> None:
    ds = create_dataset("shapescenes", "test", n=10, image_size=32, seed=2)
    assert isinstance(ds, ShapeScenes) and isinstance(ds, LabelledDataset)
    assert len(ds) == 10 and ds.split == "test" and ds.image_size == 32
    assert torch.equal(ds.labels, ShapeScenes(10, image_size=32, seed=2, split="test").labels)
    assert len(ds.classes) == C
    ood = create_dataset("shapescenes", "unlabeled", n=20, ood_fraction=1.0)
    assert (ood.labels == -1).all()


def test_create_dataset_errors() -> None:
    with pytest.raises(ValueError) as err:
        create_dataset("coco2014_missing", "train")
    assert "coco2014_missing" in str(err.value) and "shapescenes" in str(err.value)
    with pytest.raises(ValueError, match="root"):
        create_dataset("shapescenes", "train", n=4, root="/data/coco")
    with pytest.raises(ValueError, match="split"):
        create_dataset("shapescenes", "holdout", n=4)


def test_register_dataset() -> None:
    original = DATASETS["shapescenes"]
    with pytest.raises(ValueError, match="shapescenes"):
        register_dataset("shapescenes")(lambda split, **kw: None)
    assert DATASETS["shapescenes"] is original
    seen: dict[str, object] = {}

    def factory(split: str, **kwargs: object) -> TensorImages:
        seen.update(kwargs, split=split)
        images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
        return TensorImages(images, torch.ones(2, 1, dtype=torch.int8), ["x"])

    try:
        register_dataset("test_tensor_dataset")(factory)
        ds = create_dataset("test_tensor_dataset", "val", n=2, seed=5)
        assert isinstance(ds, TensorImages) and seen == {"split": "val", "n": 2, "seed": 5}
    finally:
        DATASETS.pop("test_tensor_dataset", None)


def test_tensor_images() -> None:
    imgs = torch.arange(4 * 3 * 5 * 5, dtype=torch.int64).remainder(256).to(torch.uint8).view(4, 3, 5, 5)
    y = torch.tensor([[1, -1], [0, 1], [-1, -1], [1, 1]])
    names = ["a", "b"]
    ds = TensorImages(imgs, y, names)
    names.append("c")
    assert ds.classes == ["a", "b"], "the class list is copied"
    assert ds.labels.dtype == torch.int8 and torch.equal(ds.labels, y.to(torch.int8))
    assert len(ds) == 4 and isinstance(ds, LabelledDataset)
    image, i = ds[2]
    assert i == 2 and torch.equal(image, imgs[2])
    assert torch.equal(ds.load_batch(torch.tensor([3, 0])), imgs[[3, 0]])
    splits = DataSplits(train=ds, test=ds)
    assert splits.val is None and splits.classes == ["a", "b"]


@pytest.mark.parametrize(("images", "rows", "pattern"), [
    (torch.zeros(4, 3, 5, 5), 4, r"uint8"),
    (torch.zeros(4, 1, 5, 5, dtype=torch.uint8), 4, r"\(N, 3, H, W\).*\(4, 1, 5, 5\)"),
    (torch.zeros(3, 5, 5, dtype=torch.uint8), 3, r"\(N, 3, H, W\)"),
    (torch.zeros(4, 3, 5, 5, dtype=torch.uint8), 3, r"4 images.*3 label rows"),
])
def test_tensor_images_rejects_bad_input(images: torch.Tensor, rows: int, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        TensorImages(images, torch.ones(rows, 2, dtype=torch.int8), ["a", "b"])


@pytest.mark.parametrize("case", ["value 2", "fractional", "1-D", "classes"])
def test_tensor_images_validates_labels(case: str) -> None:
    imgs = torch.zeros(4, 3, 5, 5, dtype=torch.uint8)
    labels = {"value 2": torch.full((4, 2), 2), "fractional": torch.full((4, 2), 0.7),
              "1-D": torch.ones(4), "classes": torch.ones(4, 5)}[case]
    with pytest.raises(ValueError, match="label|class"):
        TensorImages(imgs, labels, ["a", "b"])


def test_hold_out_is_a_seeded_disjoint_cover() -> None:
    from mlrobust.data import ShapeScenes, hold_out

    base = ShapeScenes(50, image_size=32, seed=1)
    rest, val = hold_out(base, 10, seed=3)
    assert len(rest) == 40 and len(val) == 10
    assert sorted(rest.index.tolist() + val.index.tolist()) == list(range(50))
    assert torch.equal(val.labels, base.labels[val.index])
    assert torch.equal(hold_out(base, 10, seed=3)[1].index, val.index)
    assert not torch.equal(hold_out(base, 10, seed=4)[1].index, val.index)
    for bad in (0, 50, 2.5):
        with pytest.raises(ValueError, match=r"hold_out: n must be an int in \[1, 49\]"):
            hold_out(base, bad, seed=0)
