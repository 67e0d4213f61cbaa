"""The classic MNIST MLP VAE: 784-400-(mu, logvar)-400-784 with a Bernoulli decoder.

Three bugs of the source article are deliberately absent, each with a regression test:
eps is drawn from N(0, I) (``randn_like``, not the uniform ``rand_like``); the encoder's
heads travel as named fields, so mean and log-variance cannot swap roles on the way to
the loss; and evaluation runs on the test split (the trainer's job). Everything but the
networks comes from :class:`genzoo.VariationalAutoencoder`.
"""

from __future__ import annotations

import math

import torch
from genzoo_plugins.mlp import mlp
from genzoo_plugins.vae.config import VAEConfig

from genzoo import Posterior, VariationalAutoencoder


class VAE(VariationalAutoencoder):
    """Kingma & Welling's VAE with an MLP encoder and decoder."""

    Config = VAEConfig
    #: The article sums the loss over the batch (``loss.sum().backward()``).
    objective_reduction = "sum"

    def __init__(self, config: VAEConfig, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        pixels = math.prod(sample_shape)
        self.encoder = mlp([pixels, config.hidden])
        self.encoder.append(torch.nn.ReLU())
        self.mu_head = torch.nn.Linear(config.hidden, config.latent)
        self.logvar_head = torch.nn.Linear(config.hidden, config.latent)
        self.decoder = mlp([config.latent, config.hidden, pixels])

    def posterior(self, x: torch.Tensor) -> Posterior:
        h = self.encoder(x.flatten(1))
        return Posterior(mu=self.mu_head(h), logvar=self.logvar_head(h))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.decoder(z)
        return logits
