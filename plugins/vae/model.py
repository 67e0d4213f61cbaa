"""The classic MNIST MLP VAE: 784-400-(mu, logvar)-400-784 with a Bernoulli decoder.

Three bugs of the source article are deliberately absent, each with a regression test:
eps is drawn from N(0, I) (``randn_like``, not the uniform ``rand_like``); the encoder's
heads travel as named fields, so mean and log-variance cannot swap roles on the way to
the loss; and evaluation runs on the test split (the trainer's job).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from genzoo import Model
from genzoo.plugins import registry
from genzoo_plugins.mlp import mlp
from genzoo_plugins.vae.config import VAEConfig


class Posterior(NamedTuple):
    """The encoder's diagonal Gaussian q(z | x)."""

    mu: torch.Tensor
    logvar: torch.Tensor


class VAE(Model):
    """Kingma & Welling's VAE with an MLP encoder and decoder."""

    Config = VAEConfig
    can_reconstruct = can_sample = can_encode = has_elbo = True
    loss_names = ("nelbo",)

    def __init__(self, config: VAEConfig, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        pixels = math.prod(sample_shape)
        self.encoder = mlp([pixels, config.hidden])
        self.encoder.append(torch.nn.ReLU())
        self.mu_head = torch.nn.Linear(config.hidden, config.latent)
        self.logvar_head = torch.nn.Linear(config.hidden, config.latent)
        self.decoder = mlp([config.latent, config.hidden, pixels])
        reg = registry()
        self.reconstruction_loss = reg.loss(config.reconstruction_loss, kind="reconstruction")
        self.kl = reg.loss("kl-normal", kind="divergence")

    def posterior(self, x: torch.Tensor) -> Posterior:
        h = self.encoder(x.flatten(1))
        return Posterior(mu=self.mu_head(h), logvar=self.logvar_head(h))

    @staticmethod
    def reparameterize(q: Posterior) -> torch.Tensor:
        """z = mu + eps * sigma with eps ~ N(0, I)."""
        std = torch.exp(0.5 * q.logvar)
        return q.mu + torch.randn_like(std) * std

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z)).view(-1, *self.sample_shape)

    def negative_elbo(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image negative ELBO with one sampled z, and its reconstruction and KL parts."""
        q = self.posterior(x)
        logits = self.decode_logits(self.reparameterize(q))
        bce = self.reconstruction_loss(logits, x)
        kl = self.kl(q.mu, q.logvar)
        return {"nelbo": bce + kl, "bce": bce, "kl": kl}

    def training_step(self, x, optimizers):
        opt = optimizers["adam"]
        opt.zero_grad(set_to_none=True)
        parts = self.negative_elbo(x)
        parts["nelbo"].sum().backward()
        opt.step()
        n = x.shape[0]
        return {key: value.detach().sum() / n for key, value in parts.items()}

    @torch.no_grad()
    def evaluate(self, x):
        return {key: value.sum() for key, value in self.negative_elbo(x).items()}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x).mu

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        z = torch.randn(n, self.config.latent, device=self.device)
        return self.decode(z)
