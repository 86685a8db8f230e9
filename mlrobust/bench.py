"""``python -m mlrobust bench``: the project's performance record.

Speed targets live here, never in timed tests. A measurement runs a number of warm-up steps,
then times ``steps`` full training steps (forward, loss, backward, optimiser step) on a
fixed random batch already on the device, so data loading is excluded; the embedded
benchmark's rendering rate is measured on its own.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from . import losses
from .config import TrainConfig
from .data.shapescenes import ShapeScenes
from .engine import build_optimizer, resolve_device
from .engine.batches import Preprocess
from .models import create_model

__all__ = ["BenchResult", "bench_train_step", "bench_render", "format_table"]


@dataclass
class BenchResult:
    what: str
    backbone: str
    image_size: int
    batch_size: int
    device: str
    amp: bool
    channels_last: bool
    images_per_s: float
    step_ms: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train_step(backbone: str = "cnn_s", image_size: int = 32, batch_size: int = 64, device: str = "auto",
                     steps: int = 20, warmup: int = 5, amp: bool = True, channels_last: bool = True,
                     compile: bool = False, loss: str = "bce", num_classes: int = 24) -> BenchResult:
    """Images per second of a full training step with ``loss`` (default the class-normalised BCE)."""
    dev = resolve_device(device)
    use_amp, use_cl = amp and dev.type == "cuda", channels_last and dev.type == "cuda"
    torch.manual_seed(0)
    model = create_model(backbone, num_classes).to(dev)
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if compile else model
    opt = build_optimizer(model, TrainConfig(lr=0.01))
    criterion = losses.get_loss(loss)
    pre = Preprocess(dev, channels_last=use_cl)
    images = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8, device=dev)
    y = (torch.randint(0, 2, (batch_size, num_classes), device=dev) * 2 - 1).to(torch.int8)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else torch.autocast("cpu", enabled=False):
            out = criterion(step_model(pre(images)), y)
        opt.zero_grad(set_to_none=True)
        out.backward()
        opt.step()

    for _ in range(warmup):
        step()
    _sync(dev)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    seconds = (time.perf_counter() - start) / steps
    return BenchResult(f"train step ({loss})", backbone, image_size, batch_size, str(dev), use_amp, use_cl,
                       batch_size / seconds, seconds * 1000)


def bench_render(image_size: int = 32, batch_size: int = 256, device: str = "auto", batches: int = 5) -> BenchResult:
    """Images per second of rendering the embedded benchmark on ``device``."""
    dev = resolve_device(device)
    ds = ShapeScenes(batch_size * (batches + 1), image_size=image_size, seed=0)
    index = torch.arange(len(ds)).split(batch_size)
    ds.load_batch(index[0], dev)  # warm-up
    _sync(dev)
    start = time.perf_counter()
    for idx in index[1:]:
        ds.load_batch(idx, dev)
    _sync(dev)
    seconds = (time.perf_counter() - start) / batches
    return BenchResult("render shapescenes", "-", image_size, batch_size, str(dev), False, False,
                       batch_size / seconds, seconds * 1000)


def format_table(results: list[BenchResult]) -> str:
    """A Markdown table of results."""
    cols = list(asdict(results[0]))
    rows = [[f"{v:.1f}" if isinstance(v, float) else str(v) for v in asdict(r).values()] for r in results]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
