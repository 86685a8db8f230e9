"""Figures for the book: image galleries, label matrices, the protocol explorer.

Label matrices use one colour per label state: present (1) dark blue, absent (-1) light
grey, unknown (0) white; a red cross marks an observed label that contradicts the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

__all__ = ["LABEL_COLOURS", "as_jpeg", "show_images", "plot_label_matrix", "label_legend", "protocol_grid",
           "protocol_explorer", "errorbar_by_setting"]

LABEL_COLOURS = {-1: "#d9d9d9", 0: "#ffffff", 1: "#2166ac"}
_CMAP = ListedColormap([LABEL_COLOURS[-1], LABEL_COLOURS[0], LABEL_COLOURS[1]])


def show_images(images: Tensor, titles: Sequence[str] | None = None, ncols: int = 6, size: float = 2.2,
                fontsize: int = 7, dpi: int = 100) -> Figure:
    """A grid of uint8 images (N, 3, H, W) with optional titles (e.g. their labels); each row
    leaves room for the longest title, so titles of several lines never cover the row above."""
    n = images.shape[0]
    nrows = -(-n // ncols)
    lines = max((t.count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    title = (lines + 0.6) * 1.25 * fontsize / 72 if lines else 0.1  # inches: lines of text plus a gap
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + title)),
                             squeeze=False, dpi=dpi)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=fontsize)
    fig.tight_layout()
    return fig


def plot_label_matrix(ax: Axes, y: Tensor, truth: Tensor | None = None, classes: Sequence[str] | None = None,
                      title: str | None = None) -> None:
    """Draw a label matrix (images x classes); with ``truth``, cross out wrong observed labels."""
    data = y.cpu().numpy().astype(int) + 1  # -1, 0, 1 -> 0, 1, 2
    ax.imshow(data, cmap=_CMAP, vmin=0, vmax=2, aspect="auto", interpolation="nearest")
    n, c = data.shape
    ax.set_xticks(np.arange(c) - 0.5, minor=True)
    ax.set_yticks(np.arange(n) - 0.5, minor=True)
    ax.grid(which="minor", color="#bbbbbb", linewidth=0.4)
    ax.tick_params(which="minor", length=0)
    if classes is not None:
        ax.set_xticks(np.arange(c), classes, rotation=90, fontsize=8)
    else:
        ax.set_xlabel("class")
    ax.set_yticks(np.arange(n)[::2], [str(i) for i in range(0, n, 2)], fontsize=8)
    ax.set_ylabel("image")
    if truth is not None:
        wrong = (y != 0) & (y != truth)
        r, k = np.nonzero(wrong.cpu().numpy())
        ax.scatter(k, r, marker="x", color="#d6301d", s=14, linewidths=1.0)
    if title:
        ax.set_title(title, fontsize=10)


def label_legend(fig: Figure, wrong: bool = True, **kwargs: Any) -> None:
    """A figure legend for label matrices."""
    handles = [Patch(facecolor=LABEL_COLOURS[1], label="present (1)"),
               Patch(facecolor=LABEL_COLOURS[-1], label="absent (-1)"),
               Patch(facecolor=LABEL_COLOURS[0], edgecolor="#999999", label="unknown (0)")]
    if wrong:
        handles.append(plt.Line2D([], [], marker="x", color="#d6301d", linestyle="", label="wrong label"))
    fig.legend(handles=handles, loc=kwargs.pop("loc", "lower center"), ncol=len(handles), fontsize=9,
               frameon=False, **kwargs)


ProtocolFn = Callable[[Tensor], Tensor]


def protocol_grid(y: Tensor, protocols: dict[str, ProtocolFn], classes: Sequence[str] | None = None,
                  ncols: int = 2, size: tuple[float, float] = (4.6, 2.5)) -> Figure:
    """One label matrix per protocol (name -> function of the true labels), truth first.
    Two columns by default: the figure is then about as wide as the book's text column,
    so its labels are shown at their size."""
    panels = {"ground truth": lambda t: t, **protocols}
    nrows = -(-len(panels) // ncols)
    legend = 0.5  # inches below the panels
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size[0], nrows * size[1] + legend), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (name, fn) in zip(axes.flat, panels.items()):
        plot_label_matrix(ax, fn(y), truth=y, classes=None, title=name)
    label_legend(fig)
    fig.tight_layout(rect=(0, legend / fig.get_figheight(), 1, 1))
    return fig


def protocol_explorer(y: Tensor, protocols: dict[str, tuple[Any, ...]],
                      classes: Sequence[str] | None = None) -> Any:
    """An ipywidgets explorer: pick a protocol, move its parameter and the seed, see the
    observed label matrix (JupyterLab only; the static book shows :func:`protocol_grid`).

    ``protocols`` maps a name to ``(fn, parameter name or None[, default])`` with
    ``fn(y, seed=..., **{parameter: value})``. Picking a protocol whose parameter means
    something else (``known`` -> ``clean``) puts the slider back at that protocol's default
    (0.5 when none is given): a share of known labels is not a share of clean ones.
    """
    import ipywidgets as widgets
    from IPython.display import display

    specs = {key: _explorer_spec(key, spec) for key, spec in protocols.items()}
    first = next(iter(specs.values()))
    name = widgets.Dropdown(options=list(specs), description="protocol")
    value = widgets.FloatSlider(value=first[2], min=0.0, max=1.0, step=0.05,
                                description=first[1] or "(none)")
    seed = widgets.IntSlider(value=0, min=0, max=20, description="seed")
    out = widgets.Output()
    shown = {"param": first[1]}

    def redraw(*_: Any) -> None:
        fn, param, _default = specs[name.value]
        obs = fn(y, seed=seed.value, **({param: value.value} if param else {}))
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(7, 0.22 * len(y) + 1.6))
            plot_label_matrix(ax, obs, truth=y, classes=classes, title=name.value)
            known = (obs != 0).float().mean().item()
            wrong = ((obs != 0) & (obs != y)).float().sum().item() / max(1, (obs != 0).sum().item())
            ax.set_xlabel(f"known labels {known:.0%}, wrong among known {wrong:.0%}")
            label_legend(fig, loc="upper center", bbox_to_anchor=(0.5, 0.0))
            plt.show()

    def pick(*_: Any) -> None:
        _fn, param, default = specs[name.value]
        value.disabled = param is None
        value.description = param or "(none)"
        if param != shown["param"]:
            shown["param"] = param
            if param is not None and value.value != default:
                value.value = default  # its observer redraws
                return
        redraw()

    name.observe(pick, names="value")
    for w in (value, seed):
        w.observe(redraw, names="value")
    pick()
    box = widgets.VBox([widgets.HBox([name, value, seed]), out])
    display(box)
    return box


def _explorer_spec(key: str, spec: tuple[Any, ...]) -> tuple[Callable[..., Tensor], str | None, float]:
    """``(fn, parameter[, default])`` of :func:`protocol_explorer`, with the default filled in."""
    if not 2 <= len(spec) <= 3 or not callable(spec[0]):
        raise ValueError(f"protocols[{key!r}] must be (fn, parameter name or None[, default]), got {spec!r}")
    default = float(spec[2]) if len(spec) == 3 else 0.5
    if not 0.0 <= default <= 1.0:
        raise ValueError(f"protocols[{key!r}]: the default {default} is outside the slider's range [0, 1]")
    return spec[0], spec[1], default


def errorbar_by_setting(ax: Axes, results: dict[str, Sequence[float]], ylabel: str = "test mAP (%)",
                        colour: str = "#2166ac") -> None:
    """Each setting's runs as dots, their mean as a bar with a ±1 standard deviation whisker."""
    names = list(results)
    for i, name in enumerate(names):
        vals = np.asarray(results[name], dtype=float)
        ax.bar(i, vals.mean(), color=colour, alpha=0.35, width=0.6)
        ax.errorbar(i, vals.mean(), yerr=vals.std(ddof=1) if len(vals) > 1 else 0, color="black", capsize=4)
        ax.scatter(np.full(len(vals), i) + np.linspace(-0.12, 0.12, len(vals)), vals, color=colour, s=14, zorder=3)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)



def as_jpeg(fig: Figure, quality: int = 85) -> Any:
    """Display a figure of photographs as JPEG (noisy pixels make PNGs several times larger)
    and close it."""
    import io

    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="jpeg", pil_kwargs={"quality": quality}, bbox_inches="tight")
    plt.close(fig)
    return Image(data=buf.getvalue(), format="jpeg")
