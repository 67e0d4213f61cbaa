"""Pictures of a run: sample grids, reconstructions beside their inputs, loss curves."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from genzoo.checks import printable
from genzoo.errors import GenzooError
from genzoo.files import atomic_write
from genzoo.matplotlib_import import import_matplotlib, outside_the_current_folder, own_matplotlib_files, stops_held

import_matplotlib()
with own_matplotlib_files(), outside_the_current_folder(), stops_held():  # pyplot too: the folder, its extensions
    import matplotlib
    import matplotlib.pyplot as plt
#: pyplot for genzoo's other modules: imported here, from ``/``, before anything else imports matplotlib.
pyplot = plt
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

#: The seed every picture of a model is drawn under: samples.png and compare.png agree.
PICTURE_SEED = 1234


class PictureFailed(GenzooError):
    """matplotlib could not draw a picture: its caller decides whether that costs the picture or the command."""


@contextmanager
def drawing() -> Iterator[None]:
    """matplotlib's defaults plus genzoo's own settings while a picture is drawn, put back after.

    matplotlib reads ``./matplotlibrc`` (and the user's own rc files): another user's file in a
    shared current folder made every picture a traceback (``text.usetex``) or drew them upside down
    (``image.origin``) (tenth hostile pass, F4). A picture looks the same wherever it is drawn, and
    one matplotlib cannot draw is a :class:`PictureFailed`.
    """
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        # Titles hold outside text (run folders, plugin descriptions): "$" is a character, not math
        # (found by review after the sixth hostile pass: r"$\x$" in a reused run's name crashed the figure).
        matplotlib.rcParams["text.parse_math"] = False
        try:
            yield
        except (GenzooError, OSError):
            raise
        except Exception as exc:
            raise PictureFailed(f"matplotlib could not draw the picture ({type(exc).__name__}: {exc})") from exc


def _save(fig: Any, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write(Path(path), lambda f: f.write(buffer.getvalue()))


def grid_image(images: torch.Tensor, nrow: int = 8) -> np.ndarray:
    """Tile ``(N, C, H, W)`` images in [0, 1] into one ``(H', W', C)`` array for imshow.

    torchvision's ``make_grid``, 2 pixels of white padding, written here: importing
    torchvision imports torch's compiler, over a second of every run's start.
    """
    images = images.detach().float().cpu().clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[0] == 1:  # make_grid returns a lone image unpadded
        return images[0].permute(1, 2, 0).numpy()
    n, channels, height, width = images.shape
    columns, pad = min(nrow, n), 2
    rows = math.ceil(n / columns)
    grid = torch.ones(channels, rows * (height + pad) + pad, columns * (width + pad) + pad)
    for k in range(n):
        top, left = (k // columns) * (height + pad) + pad, (k % columns) * (width + pad) + pad
        grid[:, top:top + height, left:left + width] = images[k]
    return grid.permute(1, 2, 0).numpy()


def show_grid(ax: Any, images: torch.Tensor, title: str, nrow: int = 8) -> None:
    ax.imshow(grid_image(images, nrow), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=10)
    ax.axis("off")


def interleave(originals: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Pairs (original, reconstruction) one after the other, for a side-by-side grid."""
    return torch.stack([originals, reconstructions], dim=1).flatten(0, 1)


#: The width in inches of a picture of samples, at 100 dots per inch: an 8-by-8 grid of 28-pixel images fits.
SAMPLES_INCHES = 5.0


@drawing()
def save_samples(images: torch.Tensor, path: Path, title: str) -> None:
    """A grid about as wide as tall, in a picture large enough to give each image its own pixels.

    At a fixed size and 8 columns, 10,000 samples (``genzoo sample -n 10000``) were a grey line one pixel wide
    (twenty-fifth hostile pass, files M3).
    """
    n, (height, width) = images.shape[0], images.shape[-2:]
    nrow = max(8, math.ceil(math.sqrt(n)))
    across, down = min(nrow, n) * (width + 2) + 2, math.ceil(n / nrow) * (height + 2) + 2  # grid_image's pixels
    inches = max(SAMPLES_INCHES, across / 100 / 0.75)  # the axes fill about 3/4 of the figure's width
    fig, ax = plt.subplots(figsize=(inches, inches * down / across + 0.3))
    show_grid(ax, images, title, nrow)
    _save(fig, path)


@drawing()
def save_reconstructions(originals: torch.Tensor, reconstructions: torch.Tensor, path: Path, title: str) -> None:
    """Each row holds four pairs: a test image, then its reconstruction."""
    fig, ax = plt.subplots(figsize=(5, 5.3))
    show_grid(ax, interleave(originals, reconstructions), title)
    _save(fig, path)


#: The most losses ``loss.png`` draws, one panel each.
MAX_LOSS_PANELS = 8


@drawing()
def save_loss_curves(records: Sequence[dict[str, Any]], names: Sequence[str], path: Path, title: str) -> None:
    """Train and test value of each named loss per epoch: the first :data:`MAX_LOSS_PANELS`, objective first.

    One panel each: a model reporting 4,000 statistics took minutes and a 58 MB picture (fifteenth hostile
    pass, M11); the title says how many are left out (every value is in ``metrics.jsonl``).
    """
    if len(names) > MAX_LOSS_PANELS:
        title = f"{title} (the first {MAX_LOSS_PANELS} of {len(names)} losses; all in metrics.jsonl)"
        names = names[:MAX_LOSS_PANELS]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    epochs = [r["epoch"] for r in records]
    for ax, name in zip(axes[0], names):
        for split, style in (("train", "o-"), ("test", "s--")):
            key = f"{split}_{name}"
            values = [r.get(key) for r in records]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{printable(name)} per image")  # escaped as on the console: no glyph-missing warning
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    _save(fig, path)


@drawing()
def save_fid_curves(curves: dict[str, tuple[Sequence[int], Sequence[float | None]]], path: Path, title: str) -> None:
    """Each model's FID after every epoch, one line each; on a log scale when they span a wide range."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, (epochs, fids) in curves.items():
        ax.plot(epochs, [math.nan if v is None else v for v in fids], "o-", label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("FID (lower is better)")
    finite = [v for _, fids in curves.values() for v in fids if v is not None and math.isfinite(v) and v > 0]
    if finite and max(finite) > 5 * min(finite):  # a log scale only where the FIDs span a wide range
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(title, fontsize=9)
    _save(fig, path)


@dataclass
class LatentPanel:
    """One model's codes in 2-D: ``points`` ``(N, 2)``, ``labels`` ``(N,)`` or None, the two axis names."""

    title: str
    points: np.ndarray
    labels: np.ndarray | None
    axes: Sequence[str]


@drawing()
def save_latent_scatter(panels: Sequence[LatentPanel], path: Path, title: str) -> None:
    """The codes side by side, one panel per model, coloured by label with a legend."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.2), squeeze=False, layout="constrained")
    colours = plt.get_cmap("tab10")
    for ax, panel in zip(axes[0], panels):
        x, y = panel.points[:, 0], panel.points[:, 1]
        if panel.labels is None:
            ax.scatter(x, y, s=3, alpha=0.5, color=colours(0), linewidths=0)
        else:
            for i, label in enumerate(np.unique(panel.labels)):
                chosen = panel.labels == label
                ax.scatter(x[chosen], y[chosen], s=3, alpha=0.6, color=colours(i % 10), linewidths=0,
                           label=str(label))
            ax.legend(title="label", markerscale=4, fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(panel.axes[0])
        ax.set_ylabel(panel.axes[1])
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    _save(fig, path)


@drawing()
def save_grids(panels: Sequence[tuple[str, torch.Tensor, int]], path: Path, title: str) -> None:
    """Image grids side by side, one panel per model: ``(title, images, images per row)``."""
    rows = max(-(-images.shape[0] // nrow) / nrow for _, images, nrow in panels)  # height per unit of width
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 6 * rows + 1), squeeze=False,
                             layout="constrained")
    for ax, (name, images, nrow) in zip(axes[0], panels):
        show_grid(ax, images, name, nrow)
    fig.suptitle(title)
    _save(fig, path)
