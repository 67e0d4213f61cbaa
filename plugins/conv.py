"""The convolutional stacks the built-in conv models are made of: 4x4 kernels, each stride-2 step halving or
doubling the grid.

Networks take and give flat images, as the MLP models' do, so a conv model inherits everything but its
networks from its MLP counterpart: an image is padded (centred, with zeros) to a grid the strides divide
evenly on the way in, and a decoder's output is cropped back to the image's centre on the way out.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from genzoo import GenzooError


def grid(sample_shape: tuple[int, ...], halvings: int) -> tuple[int, int]:
    """The smallest (height, width) at least the image's that ``halvings`` stride-2 steps divide evenly."""
    if len(sample_shape) != 3:
        raise GenzooError(f"convolutional models need images of shape (channels, height, width), "
                          f"got {tuple(sample_shape)}")
    step = 2 ** halvings
    height, width = (-(-size // step) * step for size in sample_shape[1:])
    return height, width


class ToGrid(nn.Module):
    """Flat pixels to images zero-padded, centred, to ``size``; ``signed`` maps [0, 1] to [-1, 1] after padding."""

    def __init__(self, sample_shape: tuple[int, ...], size: tuple[int, int], signed: bool = False) -> None:
        super().__init__()
        self.sample_shape = tuple(sample_shape)
        top, left = ((target - have) // 2 for target, have in zip(size, sample_shape[1:]))
        bottom, right = (target - have - before for target, have, before in zip(size, sample_shape[1:], (top, left)))
        self.padding = (left, right, top, bottom)
        self.signed = signed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = F.pad(x.reshape(-1, *self.sample_shape), self.padding)
        return images * 2 - 1 if self.signed else images


class FromGrid(nn.Module):
    """A decoder's output maps cropped to the image's centre, flat: the logits losses and pictures expect."""

    def __init__(self, sample_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.height, self.width = sample_shape[1:]

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        top, left = (maps.shape[2] - self.height) // 2, (maps.shape[3] - self.width) // 2
        return maps[:, :, top:top + self.height, left:left + self.width].flatten(1)


def down(c_in: int, c_out: int, activation: Callable[[], nn.Module] = nn.ReLU,
         batch_norm: bool = True) -> list[nn.Module]:
    """A 4x4 stride-2 convolution (half the grid), (optional) batch norm, ``activation``."""
    return [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), *([nn.BatchNorm2d(c_out)] if batch_norm else []),
            activation()]


def up(c_in: int, c_out: int, activation: Callable[[], nn.Module] = nn.ReLU,
       batch_norm: bool = True) -> list[nn.Module]:
    """A 4x4 stride-2 transposed convolution (twice the grid), (optional) batch norm, ``activation``."""
    return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1),
            *([nn.BatchNorm2d(c_out)] if batch_norm else []), activation()]


def ghosh_encoder(sample_shape: tuple[int, ...], width: int) -> tuple[nn.Sequential, int]:
    """Ghosh et al. 2020's MNIST encoder up to its last linear layer, and the features it ends with.

    Four 4x4 stride-2 convolutions of ``width`` x 1, 2, 4, 8 channels (128 to 1024 in the paper), each with
    batch norm and ReLU. The image is zero-padded to a multiple of 16 (MNIST to 32x32, as the authors
    padded it) and fed in [-1, 1], as their code does.
    """
    size = grid(sample_shape, 4)
    channels = [sample_shape[0], width, 2 * width, 4 * width, 8 * width]
    layers: list[nn.Module] = [ToGrid(sample_shape, size, signed=True)]
    for c_in, c_out in zip(channels, channels[1:]):
        layers += down(c_in, c_out)
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), 8 * width * (size[0] // 16) * (size[1] // 16)


def ghosh_decoder(sample_shape: tuple[int, ...], width: int, latent: int) -> nn.Sequential:
    """Ghosh et al. 2020's MNIST decoder, codes to flat logits.

    A linear layer to an 8x8 grid (a quarter of the padded image) of ``8 * width`` channels (1024), transposed
    convolutions of ``4 * width`` and ``2 * width`` channels (512, 256) with batch norm and ReLU, each doubling
    the grid, and a last stride-1 transposed convolution to the image's channels; its output's centre is the
    image (28x28 of MNIST's 32x32 grid).
    """
    height, wide = (size // 4 for size in grid(sample_shape, 4))
    return nn.Sequential(
        nn.Linear(latent, 8 * width * height * wide), nn.Unflatten(1, (8 * width, height, wide)),
        *up(8 * width, 4 * width), *up(4 * width, 2 * width),
        nn.ConvTranspose2d(2 * width, sample_shape[0], 4, stride=1, padding=1),
        FromGrid(sample_shape),
    )


def infogan_generator(sample_shape: tuple[int, ...], width: int, latent: int) -> nn.Sequential:
    """The InfoGAN-style MNIST generator of Lucic et al. 2018, codes to flat logits.

    fc ``16 * width`` (1024), fc to a grid a quarter of the image's (7x7) of ``2 * width`` channels (128), each
    with batch norm and ReLU; a transposed convolution of ``width`` channels (64) with batch norm and ReLU;
    a transposed convolution to the image's channels (the model applies the sigmoid).
    """
    height, wide = (size // 4 for size in grid(sample_shape, 2))
    return nn.Sequential(
        nn.Linear(latent, 16 * width), nn.BatchNorm1d(16 * width), nn.ReLU(),
        nn.Linear(16 * width, 2 * width * height * wide), nn.BatchNorm1d(2 * width * height * wide), nn.ReLU(),
        nn.Unflatten(1, (2 * width, height, wide)),
        *up(2 * width, width),
        nn.ConvTranspose2d(width, sample_shape[0], 4, stride=2, padding=1),
        FromGrid(sample_shape),
    )


def infogan_discriminator(sample_shape: tuple[int, ...], width: int) -> nn.Sequential:
    """The InfoGAN-style MNIST discriminator of Lucic et al. 2018, flat images to one logit each.

    A 4x4 stride-2 convolution of ``width`` channels (64) and LeakyReLU(0.2); one of ``2 * width`` (128)
    with batch norm and LeakyReLU; fc ``16 * width`` (1024) with batch norm and LeakyReLU; fc 1.
    """
    size = grid(sample_shape, 2)
    leaky = partial(nn.LeakyReLU, 0.2)
    features = 2 * width * (size[0] // 4) * (size[1] // 4)
    return nn.Sequential(
        ToGrid(sample_shape, size),
        *down(sample_shape[0], width, leaky, batch_norm=False), *down(width, 2 * width, leaky),
        nn.Flatten(),
        nn.Linear(features, 16 * width), nn.BatchNorm1d(16 * width), leaky(),
        nn.Linear(16 * width, 1),
    )
