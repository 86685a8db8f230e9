"""Backbones: any timm model by name, plus small CNNs for the CPU quick scale.

A backbone maps images (B, 3, H, W) to a feature map (B, D, h, w) and exposes
``num_features = D``. Heads (``mlrobust.models.heads``) turn feature maps into logits, so
methods that need class-specific maps (WELDON, saliency regularisation) and methods that
need pooled features (GNN, label propagation) share one backbone.

Weights are never downloaded: a backbone starts from random initialisation unless
``weights`` names a local file (safetensors or a PyTorch state dict, read with
``weights_only=True``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from ..registry import Registry

__all__ = ["SmallCNN", "BACKBONES", "register_backbone", "create_backbone", "load_backbone_weights",
           "TimmBackbone"]

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")
#: ``@register_backbone("name")`` adds a factory ``f(in_chans=3) -> module`` (a name timm also knows is shadowed)
register_backbone = BACKBONES.register


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """A plain VGG-style CNN: a stride-1 stem, then stages of (stride-2 conv, conv).

    It exists for the book's quick scale: from random initialisation it learns the embedded
    benchmark at 32 px in seconds on two CPU cores, and it keeps a spatial map (stride 8,
    4 x 4 at 32 px) so class-map heads work at that scale too.
    """

    def __init__(self, widths: tuple[int, ...] = (24, 48, 96, 192), in_chans: int = 3) -> None:
        super().__init__()
        layers = [_conv_bn_relu(in_chans, widths[0], 1)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [_conv_bn_relu(c_in, c_out, 2), _conv_bn_relu(c_out, c_out, 1)]
        self.body = nn.Sequential(*layers)
        self.num_features = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    def stage_starts(self) -> list[str]:
        """Where each stage after the stem begins (``model.freeze_at``)."""
        return [f"body.{i}" for i in range(1, len(self.body), 2)]

    def split_frozen(self) -> tuple[nn.Sequential, nn.Sequential]:
        """(the leading layers with no trainable parameter, the layers after them): two views
        of ``body`` sharing its modules, so that the frozen part's output can be computed
        once (``train.cache_frozen``)."""
        k = next((i for i, layer in enumerate(self.body) if any(p.requires_grad for p in layer.parameters())),
                 len(self.body))
        return self.body[:k], self.body[k:]


@register_backbone("cnn_s")
def cnn_s(in_chans: int = 3) -> nn.Module:
    """~0.7 M parameters; the quick-scale default."""
    return SmallCNN((24, 48, 96, 192), in_chans)


@register_backbone("cnn_m")
def cnn_m(in_chans: int = 3) -> nn.Module:
    """~1.2 M parameters, wider; for quick-scale runs at 48-64 px."""
    return SmallCNN((32, 64, 128, 256), in_chans)


class TimmBackbone(nn.Module):
    """A timm model without its classifier and pooling: ``forward`` returns its feature map
    (B, D, h, w). Transformers' token sequences (B, N, D) are folded back into their patch
    grid (prefix tokens such as [CLS] dropped) and channels-last maps (Swin) are permuted,
    so every head sees the same layout."""

    def __init__(self, name: str, in_chans: int = 3, **kwargs: object) -> None:
        import timm

        super().__init__()
        self.name = name
        self.model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="",
                                       in_chans=in_chans, **kwargs)
        self.num_features = self.model.num_features
        self.output_fmt = str(getattr(self.model, "output_fmt", "NCHW"))
        self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 0))

    def stage_starts(self) -> list[str]:
        """Where each feature level after the first begins, as timm's ``feature_info`` names
        them (for ResNets: ``layer1``..``layer4``, the first level being the stem), for
        ``model.freeze_at``."""
        info = getattr(self.model, "feature_info", None)
        if not info:
            raise ValueError(f"timm model {self.name!r} has no feature_info, so model.freeze_at cannot "
                             "find its stages; use freeze_at=0")
        return [f"model.{level['module']}" for level in info[1:]]

    def forward(self, x: Tensor) -> Tensor:
        f = self.model.forward_features(x)
        if f.dim() == 4:
            return f.permute(0, 3, 1, 2) if self.output_fmt == "NHWC" else f
        if f.dim() == 3:
            tokens = f[:, self.num_prefix_tokens:]
            side = math.isqrt(tokens.shape[1])
            if side * side != tokens.shape[1]:
                raise ValueError(f"backbone {self.name!r} returned {tokens.shape[1]} patch tokens, "
                                 "not a square grid: use a model with a square patch grid")
            return tokens.transpose(1, 2).reshape(f.shape[0], f.shape[2], side, side)
        raise ValueError(f"backbone {self.name!r} returned features of shape {tuple(f.shape)}; "
                         "expected (B, D, h, w), (B, h, w, D) or (B, N, D)")


def _timm_backbone(name: str, in_chans: int, **kwargs: object) -> TimmBackbone:
    import timm  # imported on first use: it takes seconds, and the quick scale never needs it

    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8]
        hint = f"; timm models with a similar name: {close}" if close else ""
        raise ValueError(f"unknown backbone {name!r}: not one of {sorted(BACKBONES)} nor a timm model{hint}")
    return TimmBackbone(name, in_chans=in_chans, **kwargs)


def create_backbone(name: str, *, weights: str | Path | None = None, in_chans: int = 3,
                    **kwargs: object) -> nn.Module:
    """Build a backbone by name: one of :data:`BACKBONES` or any timm model name.

    ``weights``: a local file (``.safetensors``, or a state dict saved by ``torch.save``) to
    initialise it from; the classifier weights in it are ignored.
    """
    if name in BACKBONES:
        model = BACKBONES[name](in_chans=in_chans, **kwargs)
    else:
        model = _timm_backbone(name, in_chans, **kwargs)
    if weights is not None:
        load_backbone_weights(model, weights)
    return model


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any read failure gets the file's name
        raise ValueError(f"could not read backbone weights from {path}: {err}") from err
    for key in ("state_dict", "model", "state_dict_ema"):  # common checkpoint wrappers
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


_CLASSIFIER_PREFIXES = ("fc.", "head.", "classifier.", "last_linear.")


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of the classifier a source checkpoint may carry (ignored on load)."""
    if isinstance(model, TimmBackbone):
        names = model.model.pretrained_cfg.get("classifier") or ()
        names = (names,) if isinstance(names, str) else tuple(names)
        return tuple(f"model.{p}" for p in (*(f"{n}." for n in names), *_CLASSIFIER_PREFIXES))
    return _CLASSIFIER_PREFIXES


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state dict into a backbone, ignoring the source model's classifier.

    Keys may carry timm's names (``conv1.weight``) or ours (``model.conv1.weight``). Every
    backbone parameter must be present with the right shape, and the file may hold nothing
    else but a classifier; an error lists what is missing, unexpected or mis-shaped.
    """
    path = Path(path)
    state = _read_state_dict(path)
    own = model.state_dict()
    if isinstance(model, TimmBackbone):
        state = {k if k.startswith("model.") else f"model.{k}": v for k, v in state.items()}
    classifier = _classifier_prefixes(model)
    matched = {k: v for k, v in state.items() if k in own}
    # BatchNorm's step counters only matter with momentum=None; many exports leave them out
    missing = sorted(k for k in set(own) - set(matched) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in set(state) - set(own) if not k.startswith(classifier))
    wrong_shape = sorted(k for k, v in matched.items() if v.shape != own[k].shape)
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, e.g. {missing[:5]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[:5]}")
        if wrong_shape:
            parts.append("shape mismatch for " + ", ".join(
                f"{k}: file {tuple(matched[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong_shape[:5]))
        raise ValueError(f"weights in {path} do not fit this backbone: " + "; ".join(parts))
    model.load_state_dict(matched, strict=False)  # every other key was checked above
