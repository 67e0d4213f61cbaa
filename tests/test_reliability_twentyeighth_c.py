"""``genzoo sample -n 10000 --out s.png`` drew a grid of 8 columns in a picture of fixed size: a grey line one pixel
wide (twenty-fifth hostile pass, files M3). The grid is now about square, and the picture large enough to give
each sample its own pixels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from genzoo import figures


@pytest.mark.parametrize("n, columns", [(400, 20), (1000, 32)])
def test_a_picture_of_many_samples_gives_each_its_pixels(tmp_path: Path, n: int, columns: int) -> None:
    path = tmp_path / "s.png"
    figures.save_samples(torch.rand(n, 1, 28, 28), path, f"vae: {n} samples")
    width, height = Image.open(path).size
    assert width >= columns * 28 and height >= -(-n // columns) * 28, (width, height)
    assert width <= columns * 30 * 1.2, width  # about one pixel of the picture per pixel of the samples


def test_a_picture_of_the_default_64_samples_keeps_its_size(tmp_path: Path) -> None:
    """Five inches at 100 dots per inch, less the margins bbox_inches="tight" cuts: about 400 pixels square."""
    path = tmp_path / "s.png"
    figures.save_samples(torch.rand(64, 1, 28, 28), path, "vae: 64 samples")
    width, height = Image.open(path).size
    assert 8 * 30 < width <= 500 and 8 * 30 < height <= 530, (width, height)
