"""A convolutional VAE for 28x28 grey images: the same objective as the beta-VAE, other networks.

Two stride-2 convolutions see local strokes with far fewer weights than the MLP's
784x400 layer; the decoder mirrors them with transposed convolutions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from genzoo import GenzooError, Posterior, require_positive_int
from genzoo_beta_vae.gaussian_vae import GaussianVAE, GaussianVAEConfig

#: The only image shape the two stride-2 stages fit: 28 -> 14 -> 7 and back.
IMAGE_SHAPE = (1, 28, 28)


@dataclass
class ConvVAEConfig(GaussianVAEConfig):
    """Latent 40, Adam 1e-3 and beta 1 (a plain VAE) unless told otherwise."""

    channels: int = field(
        default=32, metadata={"help": "Channels of the first convolution (the second has twice as many)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive_int("channels", self.channels)


class ConvVAE(GaussianVAE):
    """Encoder conv(c)-conv(2c)-(mu, logvar); decoder linear-deconv(c)-deconv(1), all 4x4 stride 2."""

    Config = ConvVAEConfig
    config: ConvVAEConfig

    def __init__(self, config: ConvVAEConfig, sample_shape: tuple[int, ...]) -> None:
        if tuple(sample_shape) != IMAGE_SHAPE:
            raise GenzooError(f"beta-conv-vae needs images of shape (1, 28, 28), got {tuple(sample_shape)}")
        super().__init__(config, sample_shape)
        c = config.channels
        features = 2 * c * 7 * 7
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        self.mu_head = nn.Linear(features, config.latent)
        self.logvar_head = nn.Linear(features, config.latent)
        self.decoder = nn.Sequential(
            nn.Linear(config.latent, features), nn.ReLU(),
            nn.Unflatten(1, (2 * c, 7, 7)),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),
            nn.Flatten(),  # flat logits, as bce-sum and the IWAE estimator expect
        )

    def posterior(self, x: torch.Tensor) -> Posterior:
        h = self.encoder(x.reshape(-1, *IMAGE_SHAPE))
        return Posterior(mu=self.mu_head(h), logvar=self.logvar_head(h))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
