"""The beta-VAE: the classic MNIST MLP VAE with a weight on the KL term.

At beta = 1 it is Kingma & Welling's VAE (784-400-latent, as genzoo's built-in ``vae``);
beta > 1 presses the posterior towards the prior, trading reconstruction for a smoother,
more disentangled latent space (Higgins et al. 2017).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from genzoo import Posterior, require_positive_int
from genzoo_beta_vae.gaussian_vae import BETA_HELP, GaussianVAE, GaussianVAEConfig


@dataclass
class BetaVAEConfig(GaussianVAEConfig):
    """The built-in VAE's defaults (latent 40, hidden 400, Adam 1e-3), with beta 4."""

    hidden: int = field(default=400, metadata={"help": "Width of the encoder's and decoder's hidden layer."})
    beta: float = field(default=4.0, metadata={"help": BETA_HELP})

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive_int("hidden", self.hidden)


class BetaVAE(GaussianVAE):
    """An MLP encoder pixels-hidden-(mu, logvar) and decoder latent-hidden-pixels (logits)."""

    Config = BetaVAEConfig
    config: BetaVAEConfig

    def __init__(self, config: BetaVAEConfig, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        pixels = math.prod(sample_shape)
        self.encoder = nn.Sequential(nn.Linear(pixels, config.hidden), nn.ReLU())
        self.mu_head = nn.Linear(config.hidden, config.latent)
        self.logvar_head = nn.Linear(config.hidden, config.latent)
        self.decoder = nn.Sequential(
            nn.Linear(config.latent, config.hidden), nn.ReLU(), nn.Linear(config.hidden, pixels)
        )

    def posterior(self, x: torch.Tensor) -> Posterior:
        h = self.encoder(x.flatten(1))
        return Posterior(mu=self.mu_head(h), logvar=self.logvar_head(h))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
