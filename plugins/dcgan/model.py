"""A DCGAN-style GAN: the InfoGAN-style MNIST networks of Lucic et al. 2018, "Are GANs Created Equal?
A Large-Scale Study" (NeurIPS 2018), appendix.

Generator: z (64) -> fc 1024, BN, ReLU -> fc 7x7x128, BN, ReLU -> 4x4 stride-2 transposed convolution of 64
channels, BN, ReLU -> 4x4 stride-2 transposed convolution to one channel, sigmoid. Discriminator: 4x4
stride-2 convolution of 64 channels, LeakyReLU(0.2) -> of 128 channels, BN, LeakyReLU -> fc 1024, BN,
LeakyReLU -> fc 1 (``genzoo_plugins.conv``). The paper's non-saturating loss, Adam 2e-4 with beta1 0.5 and
latent 64 are the built-in ``gan``'s defaults, and so is everything but the networks: one discriminator step
then one generator step per batch, and two fakes for a last batch of one real image (the generator
batch-normalises its own batch). The discriminator batch-normalises the real images it is given, which it
cannot do on one: every training batch must hold at least two (``min_batch_size``).
"""

from __future__ import annotations

from typing import ClassVar

from genzoo_plugins.conv import infogan_discriminator, infogan_generator
from genzoo_plugins.dcgan.config import DCGANConfig
from genzoo_plugins.gan.config import GANConfig
from genzoo_plugins.gan.model import GAN
from torch import nn


class DCGAN(GAN):
    """The built-in GAN with Lucic et al.'s InfoGAN-style convolutional networks."""

    Config = DCGANConfig
    min_batch_size: ClassVar[int] = 2

    def networks(self, config: GANConfig, sample_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
        assert isinstance(config, DCGANConfig)
        return (infogan_generator(sample_shape, config.width, config.latent),
                infogan_discriminator(sample_shape, config.width))
