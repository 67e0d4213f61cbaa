"""Synthetic images for the conformance kit: no dataset download, same pictures everywhere."""

from __future__ import annotations

import math

import torch


def synthetic_images(n: int, shape: tuple[int, ...] = (1, 28, 28), seed: int = 0) -> torch.Tensor:
    """``n`` images in [0, 1] of ``shape``: a few soft strokes on black, like handwriting.

    Images of shape ``(C, H, W)`` get strokes (the same in every channel); any other
    shape gets uniform noise. Deterministic in ``seed``, independent of torch's global RNG.
    """
    generator = torch.Generator().manual_seed(seed)
    if len(shape) != 3:
        return torch.rand(n, *shape, generator=generator)
    channels, height, width = shape
    ys = torch.linspace(0, 1, height).view(1, height, 1)
    xs = torch.linspace(0, 1, width).view(1, 1, width)
    images = torch.zeros(n, height, width)
    for _ in range(3):  # three strokes per image
        start = torch.rand(n, 2, generator=generator) * 0.6 + 0.2
        angle = torch.rand(n, generator=generator) * 2 * math.pi
        length = torch.rand(n, generator=generator) * 0.4 + 0.2
        end = (start + length[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)).clamp(0.05, 0.95)
        # Distance of every pixel to the segment start-end.
        d = end - start
        py = ys - start[:, 0, None, None]
        px = xs - start[:, 1, None, None]
        along = py * d[:, 0, None, None] + px * d[:, 1, None, None]
        t = (along / (d.pow(2).sum(1)[:, None, None] + 1e-8)).clamp(0, 1)
        dist2 = (py - t * d[:, 0, None, None]).pow(2) + (px - t * d[:, 1, None, None]).pow(2)
        images = torch.maximum(images, torch.exp(-dist2 / (2 * 0.04**2)))
    return images.unsqueeze(1).expand(n, channels, height, width).contiguous()
