"""The plain autoencoder: the VAE's MLP without the stochastic layer.

784-400-latent-400-784, trained with the summed Bernoulli cross-entropy. It has no
prior, so to sample it fits a 10-component full-covariance Gaussian mixture to the
codes of the training set once training ends, and decodes draws from that mixture.
"""

from __future__ import annotations

import math

import torch

from genzoo import GenzooError, Model, Split
from genzoo.plugins import registry
from genzoo_plugins.ae.config import AEConfig
from genzoo_plugins.ae.gmm import GaussianMixture
from genzoo_plugins.mlp import mlp

PRIOR_SEED = 0


class AE(Model):
    """A deterministic autoencoder that samples through a fitted Gaussian mixture."""

    Config = AEConfig
    can_reconstruct = can_sample = can_encode = True
    loss_names = ("loss",)

    def __init__(self, config: AEConfig, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        pixels = math.prod(sample_shape)
        self.encoder = mlp([pixels, config.hidden, config.latent])
        self.decoder = mlp([config.latent, config.hidden, pixels])
        self.prior = GaussianMixture(config.prior_components, config.latent)
        reg = registry()
        self.reconstruction_loss = reg.loss(config.reconstruction_loss, kind="reconstruction")
        self.bce = reg.loss("bce-sum")

    @classmethod
    def check_training_split(cls, config: AEConfig, images: int, batch_size: int) -> None:
        """The sampling prior is fitted to one code per training image: at most that many components."""
        super().check_training_split(config, images, batch_size)
        if config.prior_components > images:
            raise GenzooError(
                f"the autoencoder's sampling prior would fit more mixture components "
                f"({config.prior_components}) than training images ({images}), after training; "
                f"use --prior-components {images} or fewer, or train on more images"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z)).view(-1, *self.sample_shape)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def training_step(self, x, optimizers):
        opt = optimizers["adam"]
        opt.zero_grad(set_to_none=True)
        loss = self.reconstruction_loss(self.decoder(self.encode(x)), x).sum()
        loss.backward()
        opt.step()
        return {"loss": loss.detach() / x.shape[0]}

    @torch.no_grad()
    def evaluate(self, x):
        """The training objective, plus BCE (nats/image) and per-pixel MSE whatever it is."""
        logits = self.decoder(self.encode(x))
        mse = (torch.sigmoid(logits) - x.flatten(1)).pow(2).mean(dim=1)
        return {
            "loss": self.reconstruction_loss(logits, x).sum(),
            "bce": self.bce(logits, x).sum(),
            "mse": mse.sum(),
        }

    @torch.no_grad()
    def after_training(self, train: Split) -> None:
        """Fit the sampling prior to the codes of the whole training split."""
        was_training = self.training
        self.eval()
        codes = torch.cat([self.encode(x) for x in train.batches(1000)])
        self.prior.fit(codes, generator=torch.Generator().manual_seed(PRIOR_SEED))
        self.train(was_training)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.decode(self.prior.sample(n))
