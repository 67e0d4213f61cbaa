"""The plain autoencoder: the VAE's MLP without the stochastic layer.

784-400-latent-400-784, trained with the summed Bernoulli cross-entropy. It has no
prior, so its default sampler is the built-in ``gmm``: a full-covariance Gaussian mixture
(``prior_components``, 10 by default) fitted to the codes of the training set, whose draws
it decodes. Any other sampler that decodes codes (``normal``) works too.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from genzoo_plugins.ae.config import AEConfig, AutoencoderConfig
from genzoo_plugins.losses import BCESum
from genzoo_plugins.mlp import mlp
from torch import nn

from genzoo import GenzooError, Model, ModelConfig


class AE(Model):
    """A deterministic autoencoder, sampled through a Gaussian mixture fitted to its codes (``gmm``)."""

    Config: ClassVar[type[AutoencoderConfig]] = AEConfig
    config: AutoencoderConfig
    can_reconstruct = can_encode = True
    default_sampler = "gmm"
    #: Runs before samplers were plugins kept the fitted mixture in the model as ``prior.*`` buffers.
    retired_state = ("prior.",)
    #: The article sums the loss over the batch (``loss.sum().backward()``).
    objective_reduction = "sum"
    #: Reported beside the objective whatever it is: BCE (nats/image), per-pixel MSE.
    bce = BCESum()

    def __init__(self, config: AutoencoderConfig, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.encoder, self.decoder = self.networks(config, sample_shape)

    def networks(self, config: AutoencoderConfig, sample_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
        """The encoder (flat pixels to codes) and decoder (codes to flat logits): all conv-ae replaces."""
        assert isinstance(config, AEConfig)
        pixels = math.prod(sample_shape)
        return mlp([pixels, config.hidden, config.latent]), mlp([config.latent, config.hidden, pixels])

    @classmethod
    def check_training_split(cls, config: ModelConfig, images: int, batch_size: int) -> None:
        """Its default sampler's mixture is fitted to one code per training image: at most that many components."""
        super().check_training_split(config, images, batch_size)
        assert isinstance(config, AutoencoderConfig)
        if config.prior_components > images:
            raise GenzooError(
                f"the autoencoder's default sampler (gmm) would fit more mixture components "
                f"({config.prior_components}) than training images ({images}), after training; "
                f"use --prior-components {images} or fewer, or train on more images"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        codes: torch.Tensor = self.encoder(x.flatten(1))
        return codes

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z)).view(-1, *self.sample_shape)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.checked_codes(x))

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

    def sampler_options(self, sampler: str) -> dict[str, Any]:
        """``prior_components`` is the run's default for the ``gmm`` sampler's ``components``."""
        return {"components": self.config.prior_components} if sampler == "gmm" else {}
