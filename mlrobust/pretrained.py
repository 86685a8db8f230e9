"""The quick scale's pretrained backbone: the package's stand-in for ImageNet weights.

The papers start from an ImageNet-pretrained ResNet. At the quick scale the book starts from
``cnn_s`` pretrained on :class:`~mlrobust.data.objectscenes.ObjectScenes` (30 object classes,
one object per image, a scene stream disjoint from every chapter's data), trained once with
the package's own loop and shipped in the repository as a small ``.safetensors`` file with
its SHA-256. :func:`load_shipped` checks the hash before it loads anything, and
``make pretrain`` (``python -m mlrobust pretrain``) rebuilds the file from
:data:`SHIPPED` — the same settings, the same seeds — and says whether the rebuild is
bit-identical to the shipped file.

Why pretraining on single objects rather than on the multi-label scenes themselves: the
multi-label scenes' labels are predicted well by the background context alone (their
context-only mAP is about 33), so a network trained on few of them learns the context; a
network that first learns to name one large object per image learns the objects.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .atomic import default_file_mode
from .data.objectscenes import RADIUS_RANGE, ObjectScenes
from .engine import Trainer, TrainConfig
from .losses import softmax_ce
from .methods.supervised import SupervisedMethod
from .models import create_model
from .models.backbones import create_backbone
from .options import Options, check

__all__ = ["PretrainConfig", "ShippedWeights", "SHIPPED", "WEIGHTS_DIR", "RANDOM", "pretrain", "save_weights",
           "sha256_of", "shipped_path", "load_shipped", "resolve_weights", "rebuild"]

#: Where the shipped weight files live (package data).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: CPU threads of a pretraining run: a fixed count, because the split of a convolution's work
#: over threads can change the low bits of its result, and a rebuild must match the file.
PRETRAIN_THREADS = 2


@dataclass
class PretrainConfig(Options):
    """How a shipped backbone is made: ObjectScenes of ``n`` images at ``image_size`` px,
    ``epochs`` of SGD with the one-cycle schedule, softmax cross-entropy over 30 classes."""

    backbone: str = "cnn_s"
    image_size: int = 32
    n: int = 30000
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.2
    weight_decay: float = 5e-4
    radius_range: list[float] = field(default_factory=lambda: list(RADIUS_RANGE))
    data_seed: int = 20261201  # the pretraining scenes (their own split, disjoint from any chapter's)
    seed: int = 0  # initialisation, data order, augmentation

    def validate(self) -> None:
        super().validate()
        for name in ("image_size", "n", "epochs", "batch_size"):
            check(getattr(self, name) >= 1, f"pretrain.{name}", getattr(self, name), "a positive integer")
        check(self.lr > 0, "pretrain.lr", self.lr, "a positive number")
        check(self.weight_decay >= 0, "pretrain.weight_decay", self.weight_decay, "a number >= 0")
        check(len(self.radius_range) == 2, "pretrain.radius_range", self.radius_range, "[low, high]")


def pretrain(cfg: PretrainConfig, device: str = "cpu") -> tuple[nn.Module, dict[str, float]]:
    """Train ``cfg.backbone`` on ObjectScenes; returns the backbone (on the CPU, eval mode)
    and a record: training seconds and the top-1 accuracy on 2,000 held-out object images.

    Deterministic: on the CPU the same settings give the same bits on the same platform (it
    runs on :data:`PRETRAIN_THREADS` threads, then restores the caller's count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(PRETRAIN_THREADS)
    try:
        return _pretrain(cfg, device)
    finally:
        torch.set_num_threads(threads)


def _pretrain(cfg: PretrainConfig, device: str) -> tuple[nn.Module, dict[str, float]]:
    data = ObjectScenes(cfg.n, cfg.image_size, seed=cfg.data_seed,
                        radius_range=(cfg.radius_range[0], cfg.radius_range[1]))
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.backbone, len(data.classes), head="gap")
    train = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                        seed=cfg.seed, device=device, progress=False, checkpoint=False)
    start = time.perf_counter()
    trainer = Trainer(model, SupervisedMethod(softmax_ce), data, data.labels, train, augment="flip")
    trainer.fit()
    seconds = time.perf_counter() - start
    held_out = ObjectScenes(2000, cfg.image_size, seed=cfg.data_seed + 1,
                            radius_range=(cfg.radius_range[0], cfg.radius_range[1]))
    logits = trainer.predict(held_out)
    accuracy = 100.0 * float((logits.argmax(1).cpu() == held_out.targets).float().mean())
    backbone = model.backbone.cpu().eval()
    return backbone, {"seconds": seconds, "accuracy": accuracy}


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(backbone: nn.Module, path: str | Path) -> str:
    """Write the backbone's state dict as safetensors (atomically); returns its SHA-256."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.chmod(tmp, default_file_mode())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return sha256_of(path)


@dataclass(frozen=True)
class ShippedWeights:
    """A weight file in :data:`WEIGHTS_DIR`: its name, SHA-256 and the settings that made it,
    with what those settings measured when it was made."""

    file: str
    sha256: str
    config: PretrainConfig
    accuracy: float  # top-1 % on 2,000 held-out ObjectScenes images
    seconds: float  # training time on the machine that made it (2 CPU cores)


#: The shipped backbones, by name. ``cnn_s-objects32``: the quick scale's backbone (2.6 MB),
#: made by ``pretrain(PretrainConfig())`` in 464 s on 2 CPU cores (torch 2.x, x86-64).
SHIPPED: dict[str, ShippedWeights] = {
    "cnn_s-objects32": ShippedWeights(
        file="cnn_s-objects32.safetensors",
        sha256="b589e2bc3422773def5d7d5c959b66bd8f6467327cc9568656306bbb413210d9",
        config=PretrainConfig(), accuracy=93.75, seconds=464.0),
}


def shipped_path(name: str = "cnn_s-objects32") -> Path:
    """The file of a shipped backbone (an error names the known ones)."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped weights named {name!r}; shipped: {sorted(SHIPPED)}")
    return WEIGHTS_DIR / SHIPPED[name].file


def checked_shipped_path(name: str = "cnn_s-objects32") -> Path:
    """The file of the shipped backbone ``name`` after checking its SHA-256 against
    :data:`SHIPPED`. Builds no model, so it draws no random numbers: a run that names its
    weights starts from the same initialisation as one that gives the file's path."""
    path = shipped_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"shipped weights {path} are missing: rebuild them with `make pretrain`")
    found = sha256_of(path)
    if found != SHIPPED[name].sha256:
        raise ValueError(f"{path} has SHA-256 {found}, expected {SHIPPED[name].sha256}: the file is "
                         "corrupt or was changed; restore it from git or rebuild it with `make pretrain`")
    return path


def load_shipped(name: str = "cnn_s-objects32") -> nn.Module:
    """The shipped backbone ``name``, after checking the file's SHA-256 against :data:`SHIPPED`."""
    path = checked_shipped_path(name)
    return create_backbone(SHIPPED[name].config.backbone, weights=path).eval()


#: the ``weights`` setting for a randomly initialised backbone
RANDOM = "random"


def resolve_weights(weights: str | Path | None) -> Path | None:
    """A backbone's ``weights`` setting as a file: the name of a shipped backbone (its file,
    after the hash check of :func:`checked_shipped_path`), a local path, or None or ``"random"``
    (random weights: a chapter's parameter None means "the scale's preset", so a reader who
    wants random weights there says ``"random"``)."""
    if weights is None or str(weights) == RANDOM:
        return None
    if str(weights) in SHIPPED:
        return checked_shipped_path(str(weights))
    return Path(weights)


def rebuild(name: str = "cnn_s-objects32", output: str | Path | None = None,
            device: str = "cpu") -> dict[str, object]:
    """Retrain a shipped backbone from its settings and write it to ``output`` (default: a
    file beside the shipped one, which is never overwritten); the record says whether the
    rebuild is bit-identical to the shipped file."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped weights named {name!r}; shipped: {sorted(SHIPPED)}")
    entry = SHIPPED[name]
    backbone, record = pretrain(entry.config, device)
    out = Path(output) if output is not None else WEIGHTS_DIR / f"{Path(entry.file).stem}.rebuilt.safetensors"
    digest = save_weights(backbone, out)
    return {"file": str(out), "sha256": digest, "identical": digest == entry.sha256, **record}
