"""The objective the beta-VAE and the convolutional VAE share: BCE + beta * KL.

Both are :class:`genzoo.VariationalAutoencoder` subclasses (diagonal-Gaussian posterior,
N(0, I) prior, Bernoulli decoder), as genzoo's built-in ``vae`` is; they differ only
in their networks. genzoo supplies the sampling, the ELBO and the importance weights
its IWAE estimator uses; this class adds the KL weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from genzoo import GenzooError, VariationalAutoencoder, VariationalAutoencoderConfig

BETA_HELP = "Weight of the KL term in the training loss (1: the classic VAE)."


@dataclass
class GaussianVAEConfig(VariationalAutoencoderConfig):
    """Options every Gaussian VAE of this plugin has: the KL weight (and genzoo's decoder loss)."""

    beta: float = field(default=1.0, metadata={"help": BETA_HELP})

    def __post_init__(self) -> None:
        super().__post_init__()
        beta = self.beta
        is_number = isinstance(beta, (int, float)) and not isinstance(beta, bool)
        if not (is_number and math.isfinite(beta) and beta > 0):
            raise GenzooError(f"beta must be a positive finite number, got {beta!r}")


class GaussianVAE(VariationalAutoencoder):
    """A VAE trained on BCE + beta * KL; subclasses provide ``posterior`` and ``decode_logits``.

    ``beta`` weighs the KL term of the training objective only: ``negative_elbo`` is
    always the true (beta = 1) bound, so its numbers compare with any other VAE's.
    """

    #: The training objective first, then the bound that evaluation reports.
    loss_names = ("loss", "nelbo")
    #: Summed over the batch, as the built-in VAE (and the article it follows) does.
    objective_reduction = "sum"
    config: GaussianVAEConfig

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image training loss BCE + beta * KL beside the ELBO's parts."""
        parts = super().loss(x)
        return {"loss": parts["bce"] + self.config.beta * parts["kl"], **parts}
