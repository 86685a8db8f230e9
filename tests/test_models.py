"""Tests of mlrobust.models: backbone feature maps (registered CNNs and timm), the heads and
their poolings, the registries, and backbone weight files (round trips and bad files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from mlrobust.models import (
    BACKBONES,
    HEADS,
    POOLINGS,
    ClassMapHead,
    GAPHead,
    MultiLabelNet,
    SmallCNN,
    create_backbone,
    create_head,
    create_model,
    load_backbone_weights,
    register_backbone,
    register_pooling,
)

# --------------------------------------------------------------------------- helpers


def images(b: int, size: int, seed: int = 0, chans: int = 3) -> torch.Tensor:
    return torch.randn(b, chans, size, size, generator=torch.Generator().manual_seed(seed))


def randomise_bn_buffers(model: nn.Module, seed: int) -> None:
    """Give every BatchNorm non-default running statistics, so a loader that skipped the
    buffers (or a file that lacked them) would change the eval-mode output."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.num_batches_tracked.fill_(7)


def source_model(arch: str, seed: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A trained-looking model of ``arch`` and the state dict a user would save from it:
    for resnet18 a plain timm classifier (timm's key names, with ``fc.*``); for cnn_s our
    SmallCNN plus a classifier ``fc.*`` the loader must ignore."""
    torch.manual_seed(seed)
    if arch == "resnet18":
        model = timm.create_model("resnet18", pretrained=False, num_classes=10)
        randomise_bn_buffers(model, seed)
        return model, dict(model.state_dict())
    model = create_backbone(arch)
    randomise_bn_buffers(model, seed)
    state = dict(model.state_dict())
    state["fc.weight"] = torch.randn(10, model.num_features)
    state["fc.bias"] = torch.randn(10)
    return model, state


def source_features(arch: str, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.forward_features(x) if arch == "resnet18" else model(x)


def backbone_out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


class _RunsOnUnpickle:
    """Pickles to a call of ``os.mkdir(path)``: loading it with weights_only=False would
    execute code, which weights_only=True refuses."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.path,)


# --------------------------------------------------------------------------- backbones


@pytest.mark.parametrize(("name", "size", "channels", "side"), [
    ("cnn_s", 32, 192, 4),   # stride 8: a 4 x 4 map at 32 px (SmallCNN docstring)
    ("cnn_s", 64, 192, 8),
    ("cnn_s", 48, 192, 6),
    ("cnn_m", 32, 256, 4),
    ("cnn_m", 64, 256, 8),
    ("resnet18", 64, 512, 2),  # timm, random init: stride 32, 512 channels, no pooling
])
def test_backbone_feature_map_shape(name: str, size: int, channels: int, side: int) -> None:
    model = create_backbone(name)
    out = backbone_out(model, images(2, size))
    assert out.shape == (2, channels, side, side)
    assert model.num_features == out.shape[1]


@pytest.mark.parametrize("name", ["cnn_s", "resnet18"])
def test_backbone_in_chans(name: str) -> None:
    model = create_backbone(name, in_chans=1)
    assert backbone_out(model, images(2, 64, chans=1)).shape[:2] == (2, model.num_features)
    with pytest.raises(RuntimeError):
        model(images(2, 64, chans=3))


def test_timm_backbone_has_no_classifier_and_no_pooling() -> None:
    model = create_backbone("resnet18")
    assert not any(".fc." in f".{k}" for k in model.state_dict()), "the classifier must be removed"
    # the feature map is the timm model's own forward_features output, unpooled
    reference = timm.create_model("resnet18", pretrained=False)
    reference.load_state_dict(model.model.state_dict(), strict=False)
    x = images(2, 64, seed=3)
    torch.testing.assert_close(backbone_out(model, x), source_features("resnet18", reference, x))


def test_unknown_backbone_lists_registered_and_mentions_timm() -> None:
    with pytest.raises(ValueError) as err:
        create_backbone("no_such_backbone_xyz")
    msg = str(err.value)
    assert "no_such_backbone_xyz" in msg and "cnn_s" in msg and "cnn_m" in msg and "timm" in msg
    with pytest.raises(ValueError, match="no_such_backbone_xyz"):
        create_model("no_such_backbone_xyz", 5)


def test_register_backbone_rejects_duplicates_and_adds_new_names() -> None:
    original = BACKBONES["cnn_s"]
    with pytest.raises(ValueError, match="cnn_s"):
        register_backbone("cnn_s")(lambda in_chans=3: SmallCNN((4, 8), in_chans))
    assert BACKBONES["cnn_s"] is original
    # a new name is built by create_backbone/create_model; it shadows a timm name
    try:
        register_backbone("resnet18")(lambda in_chans=3: SmallCNN((4, 8), in_chans))
        model = create_backbone("resnet18")
        assert isinstance(model, SmallCNN) and model.num_features == 8
        net = create_model("resnet18", 3)
        assert net(images(2, 32)).shape == (2, 3)
    finally:
        BACKBONES.pop("resnet18", None)
    assert not isinstance(create_backbone("resnet18"), SmallCNN)


# --------------------------------------------------------------------------- heads


def test_classmap_gap_equals_gap_head() -> None:
    """Average pooling commutes with the linear classifier: pooling the class maps of a 1x1
    convolution gives the logits of a linear layer on pooled features, when W and b agree."""
    torch.manual_seed(0)
    d, c = 7, 5
    gap = GAPHead(d, c).double()
    cmap = ClassMapHead(d, c, pooling="gap").double()
    with torch.no_grad():
        cmap.classifier.weight.copy_(gap.fc.weight[:, :, None, None])
        cmap.classifier.bias.copy_(gap.fc.bias)
    f = torch.randn(3, d, 4, 5, dtype=torch.float64)
    assert cmap.maps(f).shape == (3, c, 4, 5)
    torch.testing.assert_close(cmap(f), gap(f), rtol=1e-12, atol=1e-12)
    # and both are the hand-written formula: W . mean_hw(f) + b
    torch.testing.assert_close(gap(f), f.mean((2, 3)) @ gap.fc.weight.T + gap.fc.bias)


def test_classmap_max_pooling_takes_the_max_of_each_class_map() -> None:
    torch.manual_seed(1)
    d, c = 6, 4
    head = ClassMapHead(d, c, pooling="max").double()
    f = torch.randn(2, d, 3, 5, dtype=torch.float64)
    w, b = head.classifier.weight[:, :, 0, 0], head.classifier.bias
    maps = torch.einsum("bdhw,cd->bchw", f, w) + b[:, None, None]
    expected = torch.stack([torch.stack([maps[i, k].max() for k in range(c)]) for i in range(2)])
    torch.testing.assert_close(head(f), expected)
    # the maximum is not the mean: the pooling choice matters
    assert not torch.allclose(head(f), maps.mean((2, 3)))


def test_classmap_max_hand_worked() -> None:
    head = ClassMapHead(2, 1, pooling="max")
    with torch.no_grad():
        head.classifier.weight.copy_(torch.tensor([[[[1.0]], [[-1.0]]]]))
        head.classifier.bias.fill_(0.5)
    f = torch.zeros(1, 2, 2, 2)
    f[0, 0, 1, 0] = 3.0  # map value 3.5 there
    f[0, 1, 0, 1] = 4.0  # map value -3.5 there
    assert head(f).item() == pytest.approx(3.5)
    gap = ClassMapHead(2, 1, pooling="gap")
    gap.load_state_dict(head.state_dict())
    assert gap(f).item() == pytest.approx(0.5 + (3.0 - 4.0) / 4)


def test_unknown_pooling_and_head_list_valid_names() -> None:
    with pytest.raises(ValueError) as err:
        ClassMapHead(8, 3, pooling="avg")
    assert "avg" in str(err.value) and "'gap'" in str(err.value) and "'max'" in str(err.value)
    with pytest.raises(ValueError) as err:
        create_head("mlp", 8, 3)
    assert "mlp" in str(err.value) and "'classmap'" in str(err.value) and "'gap'" in str(err.value)
    with pytest.raises(ValueError, match="avg"):
        create_model("cnn_s", 3, head="classmap", pooling="avg")


def test_register_pooling_rejects_duplicates_and_passes_arguments() -> None:
    original = POOLINGS["max"]
    with pytest.raises(ValueError, match="max"):
        register_pooling("max")(nn.Identity)
    assert POOLINGS["max"] is original

    class TopK(nn.Module):
        def __init__(self, k: int) -> None:
            super().__init__()
            self.k = k

        def forward(self, maps: torch.Tensor) -> torch.Tensor:
            return maps.flatten(2).topk(self.k, dim=-1).values.mean(-1)

    try:
        register_pooling("test_topk")(TopK)
        head = ClassMapHead(3, 2, pooling="test_topk", k=2)
        f = torch.randn(4, 3, 3, 3)
        maps = head.maps(f).flatten(2).sort(-1, descending=True).values
        torch.testing.assert_close(head(f), maps[..., :2].mean(-1))
    finally:
        POOLINGS.pop("test_topk", None)
    assert "test_topk" not in POOLINGS


@pytest.mark.parametrize(("backbone", "size"), [("cnn_s", 32), ("cnn_m", 64), ("resnet18", 64)])
@pytest.mark.parametrize(("head", "head_args"), [("gap", {}), ("classmap", {"pooling": "max"})])
def test_create_model_logits(backbone: str, size: int, head: str, head_args: dict[str, object]) -> None:
    net = create_model(backbone, 24, head=head, **head_args)
    assert isinstance(net, MultiLabelNet) and isinstance(net.head, HEADS[head])
    x = images(3, size, seed=2)
    logits = net(x)
    assert logits.shape == (3, 24) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    feats = net.features(x)
    assert feats.shape[:2] == (3, net.backbone.num_features)
    torch.testing.assert_close(net.head(feats), logits)
    logits.sum().backward()
    first = next(p for p in net.backbone.parameters() if p.dim() == 4)
    assert first.grad is not None and first.grad.abs().sum() > 0, "gradients must reach the backbone"


# --------------------------------------------------------------------------- weight files


def _save(state: dict[str, torch.Tensor], path: Path, layout: str) -> None:
    if layout == "plain":
        torch.save(state, path)
    elif layout in ("state_dict", "model"):
        # a training checkpoint: wrapped, saved from DataParallel/DDP, with other entries
        torch.save({layout: {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    elif layout == "safetensors":
        save_file({f"module.{k}": v.contiguous() for k, v in state.items()}, str(path))
    else:
        raise AssertionError(layout)


@pytest.mark.parametrize("arch", ["cnn_s", "resnet18"])
@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "safetensors"])
def test_weights_round_trip(arch: str, layout: str, tmp_path: Path) -> None:
    source, state = source_model(arch, seed=11)
    assert any(k.startswith("fc.") for k in state), "the file carries a classifier to ignore"
    path = tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pt")
    _save(state, path, layout)
    x = images(2, 64, seed=5)
    expected = source_features(arch, source, x)

    torch.manual_seed(99)  # a different random initialisation
    fresh = create_backbone(arch)
    assert not torch.allclose(backbone_out(fresh, x), expected)
    load_backbone_weights(fresh, path)
    assert torch.equal(backbone_out(fresh, x), expected)
    assert all(torch.equal(v, state[k.removeprefix("model.")]) for k, v in fresh.state_dict().items())

    torch.manual_seed(98)
    built = create_model(arch, 4, weights=path)
    assert torch.equal(backbone_out(built.backbone, x), expected)


def test_weights_saved_from_our_timm_backbone_load(tmp_path: Path) -> None:
    """Keys may carry our names (``model.conv1.weight``) as well as timm's."""
    torch.manual_seed(3)
    source = create_backbone("resnet18")
    randomise_bn_buffers(source, 3)
    save_file(dict(source.state_dict()), str(tmp_path / "ours.safetensors"))
    torch.manual_seed(4)
    fresh = create_backbone("resnet18", weights=tmp_path / "ours.safetensors")
    x = images(1, 64, seed=6)
    assert torch.equal(backbone_out(fresh, x), backbone_out(source, x))


def test_missing_weights_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "w.safetensors"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_backbone_weights(create_backbone("cnn_s"), path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        create_backbone("cnn_s", weights=path)


@pytest.mark.parametrize("name", ["corrupt.pt", "corrupt.safetensors", "corrupt.bin"])
def test_corrupt_weights_file_names_it(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x00not a weights file\xff" * 20)
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        load_backbone_weights(create_backbone("cnn_s"), path)


def test_truncated_safetensors_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_file(dict(create_backbone("cnn_s").state_dict()), str(path))
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"cut\.safetensors"):
        load_backbone_weights(create_backbone("cnn_s"), path)


def test_non_state_dict_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(ValueError, match=r"list\.pt"):
        load_backbone_weights(create_backbone("cnn_s"), path)


def test_weights_are_read_with_weights_only(tmp_path: Path) -> None:
    """A pickle that runs code on load is refused (torch.load(weights_only=True))."""
    marker = tmp_path / "code_was_run"
    state = dict(create_backbone("cnn_s").state_dict())
    state["payload"] = _RunsOnUnpickle(str(marker))  # type: ignore[assignment]
    path = tmp_path / "evil.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"evil\.pt"):
        load_backbone_weights(create_backbone("cnn_s"), path)
    assert not marker.exists()


@pytest.mark.parametrize(("source", "target", "expect"), [
    ("cnn_m", "cnn_s", r"shape mismatch.*body\.0\.0\.weight.*\(32, 3, 3, 3\).*\(24, 3, 3, 3\)"),
    ("resnet18", "cnn_s", r"missing keys.*body\.0\.0\.weight"),
    ("cnn_s", "resnet18", r"missing keys.*'model\."),
])
def test_weights_of_another_architecture(source: str, target: str, expect: str, tmp_path: Path) -> None:
    path = tmp_path / f"from_{source}.pt"
    torch.save(source_model(source, seed=1)[1], path)
    model = create_backbone(target)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=expect) as err:
        load_backbone_weights(model, path)
    assert f"from_{source}.pt" in str(err.value)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a failed load must change nothing"


@pytest.mark.parametrize("pair", ["resnet34->resnet18", "5-stage SmallCNN->cnn_s"])
def test_weights_of_a_deeper_architecture_are_rejected(pair: str, tmp_path: Path) -> None:
    path = tmp_path / "deeper.pt"
    if pair.startswith("resnet34"):
        torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), path)
        model, extra = create_backbone("resnet18"), "layer1.2"
    else:
        torch.save(SmallCNN((24, 48, 96, 192, 384)).state_dict(), path)
        model, extra = create_backbone("cnn_s"), "body.7"
    with pytest.raises(ValueError, match=extra) as err:
        load_backbone_weights(model, path)
    assert "deeper.pt" in str(err.value)


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "swin_tiny_patch4_window7_224"])
def test_transformer_backbones_give_feature_maps(name: str) -> None:
    """Token sequences (ViT) and channels-last maps (Swin) are turned into (B, D, h, w)."""
    from mlrobust.models import create_model

    model = create_model(name, 5, head="classmap")
    x = torch.randn(2, 3, 224, 224)
    features = model.backbone(x)
    assert features.dim() == 4 and features.shape[1] == model.backbone.num_features
    assert model(x).shape == (2, 5)


def test_state_dicts_without_batchnorm_counters_load(tmp_path) -> None:
    from mlrobust.models import create_backbone, load_backbone_weights

    source = create_backbone("cnn_s")
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "w.pt")
    target = create_backbone("cnn_s")
    load_backbone_weights(target, tmp_path / "w.pt")
    source.eval(), target.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(source(x), target(x))
