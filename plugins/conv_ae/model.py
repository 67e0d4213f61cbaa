"""The convolutional autoencoder of Ghosh et al. 2020, "From Variational to Deterministic Autoencoders"
(ICLR 2020), appendix: the networks of their MNIST experiments.

Encoder: four 4x4 stride-2 convolutions of 128, 256, 512 and 1024 channels, each with batch norm and ReLU,
then a linear layer to the 16-dimensional code. Decoder: a linear layer to 8x8x1024, transposed convolutions
of 512 and 256 channels with batch norm and ReLU, and a last transposed convolution to one channel
(``genzoo_plugins.conv``). MNIST is zero-padded to 32x32 on the way in, as the authors padded it, and the
decoder's output is cropped to the centre 28x28, so losses, pictures and FID see MNIST's own images.
Everything else (loss, evaluation, sampling from a mixture fitted to the training codes, the paper's
"ex-post density estimation") is the built-in ``ae``'s. The authors trained on squared error, batch 100,
100 epochs; genzoo's default loss stays the AE's summed BCE (``--loss mse`` is theirs).
"""

from __future__ import annotations

from genzoo_plugins.ae.config import AutoencoderConfig
from genzoo_plugins.ae.model import AE
from genzoo_plugins.conv import ghosh_decoder, ghosh_encoder
from genzoo_plugins.conv_ae.config import ConvAEConfig
from torch import nn


class ConvAE(AE):
    """The built-in autoencoder with Ghosh et al.'s convolutional encoder and decoder."""

    Config = ConvAEConfig

    def networks(self, config: AutoencoderConfig, sample_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
        assert isinstance(config, ConvAEConfig)
        trunk, features = ghosh_encoder(sample_shape, config.width)
        trunk.append(nn.Linear(features, config.latent))
        return trunk, ghosh_decoder(sample_shape, config.width, config.latent)
