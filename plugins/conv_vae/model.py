"""The convolutional VAE of Ghosh et al. 2020, "From Variational to Deterministic Autoencoders" (ICLR 2020),
appendix: the encoder and decoder of their MNIST experiments, as ``conv-ae`` has them (``genzoo_plugins.conv``),
with two linear heads, mean and log-variance, in place of the autoencoder's one.

As in the authors' code, log sigma is ``5 * tanh`` of its head, so the log-variance stays in [-10, 10].
Everything but the networks comes from :class:`genzoo.VariationalAutoencoder` (ELBO with a Bernoulli
decoder, importance weights, N(0, I) prior). The authors trained their VAE on squared error plus a
weighted KL; genzoo keeps the Bernoulli ELBO, so its -ELBO and IWAE numbers are likelihood bounds.
"""

from __future__ import annotations

import torch
from genzoo_plugins.conv import ghosh_decoder, ghosh_encoder
from genzoo_plugins.conv_vae.config import ConvVAEConfig

from genzoo import Posterior, VariationalAutoencoder

#: The authors' bound on |log sigma|: log sigma = 5 tanh(h).
LOG_SIGMA_BOUND = 5.0


class ConvVAE(VariationalAutoencoder):
    """Kingma & Welling's VAE with Ghosh et al.'s convolutional encoder and decoder."""

    Config = ConvVAEConfig
    config: ConvVAEConfig

    def __init__(self, config: ConvVAEConfig, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.encoder, features = ghosh_encoder(sample_shape, config.width)
        self.mu_head = torch.nn.Linear(features, config.latent)
        self.log_sigma_head = torch.nn.Linear(features, config.latent)
        self.decoder = ghosh_decoder(sample_shape, config.width, config.latent)

    def posterior(self, x: torch.Tensor) -> Posterior:
        h = self.encoder(x.flatten(1))
        log_sigma = LOG_SIGMA_BOUND * torch.tanh(self.log_sigma_head(h))
        return Posterior(mu=self.mu_head(h), logvar=2 * log_sigma)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.decoder(z)
        return logits
