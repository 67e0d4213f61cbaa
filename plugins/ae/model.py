"""The plain autoencoder: the VAE's MLP without the stochastic layer.

784-400-latent-400-784, trained with the summed Bernoulli cross-entropy. It has no
prior, so to sample it fits a 10-component full-covariance Gaussian mixture to the
codes of the training set once training ends, and decodes draws from that mixture.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from genzoo_plugins.ae.config import AEConfig, AutoencoderConfig
from genzoo_plugins.ae.gmm import GaussianMixture
from genzoo_plugins.losses import BCESum
from genzoo_plugins.mlp import mlp
from torch import nn

from genzoo import GenzooError, Model, ModelConfig, Split

PRIOR_SEED = 0


class AE(Model):
    """A deterministic autoencoder that samples through a fitted Gaussian mixture."""

    Config: ClassVar[type[AutoencoderConfig]] = AEConfig
    can_reconstruct = can_sample = can_encode = True
    #: The article sums the loss over the batch (``loss.sum().backward()``).
    objective_reduction = "sum"
    #: Reported beside the objective whatever it is: BCE (nats/image), per-pixel MSE.
    bce = BCESum()

    def __init__(self, config: AutoencoderConfig, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.encoder, self.decoder = self.networks(config, sample_shape)
        self.prior = GaussianMixture(config.prior_components, config.latent)

    def networks(self, config: AutoencoderConfig, sample_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
        """The encoder (flat pixels to codes) and decoder (codes to flat logits): all conv-ae replaces."""
        assert isinstance(config, AEConfig)
        pixels = math.prod(sample_shape)
        return mlp([pixels, config.hidden, config.latent]), mlp([config.latent, config.hidden, pixels])

    @classmethod
    def check_training_split(cls, config: ModelConfig, images: int, batch_size: int) -> None:
        """The sampling prior is fitted to one code per training image: at most that many components."""
        super().check_training_split(config, images, batch_size)
        assert isinstance(config, AutoencoderConfig)
        if config.prior_components > images:
            raise GenzooError(
                f"the autoencoder's sampling prior would fit more mixture components "
                f"({config.prior_components}) than training images ({images}), after training; "
                f"use --prior-components {images} or fewer, or train on more images"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        codes: torch.Tensor = self.encoder(x.flatten(1))
        return codes

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z)).view(-1, *self.sample_shape)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": self.losses["reconstruction_loss"](self.decoder(self.encode(x)), x)}

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training objective, plus BCE and per-pixel MSE whatever it is."""
        logits = self.decoder(self.encode(x))
        return {
            "loss": self.losses["reconstruction_loss"](logits, x),
            "bce": self.bce(logits, x),
            "mse": (torch.sigmoid(logits) - x.flatten(1)).pow(2).mean(dim=1),
        }

    @torch.no_grad()
    def after_training(self, train: Split) -> None:
        """Fit the sampling prior to the codes of the whole training split."""
        was_training = self.training
        self.eval()
        codes = torch.cat([self.encode(x) for x in train.batches(1000)])
        self.prior.fit(codes, generator=torch.Generator().manual_seed(PRIOR_SEED))
        self.train(was_training)

    def sampling_description(self, short: bool = False) -> str:
        components = self.prior.means.shape[0]
        if short:
            return f"from a {components}-component GMM fitted to codes"
        return f"decodes draws from a {components}-component Gaussian mixture fitted to its training codes"

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.decode(self.prior.sample(n))
