"""The ELBO machinery the beta-VAE and the convolutional VAE share.

Both are VAEs with a diagonal-Gaussian posterior, an N(0, I) prior and a Bernoulli
decoder; they differ only in their networks. Keeping the objective in one place means
the two cannot drift apart, and both expose what genzoo's IWAE estimator looks for:
``posterior``, ``decode_logits`` and the registered ``reconstruction_loss`` and ``kl``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import torch

from genzoo import GenzooError, Model, ModelConfig, registry

BETA_HELP = "Weight of the KL term in the training loss (1: the classic VAE)."


@dataclass
class GaussianVAEConfig(ModelConfig):
    """Options every Gaussian VAE of this plugin has: the KL weight and the decoder's loss."""

    beta: float = field(default=1.0, metadata={"help": BETA_HELP})
    reconstruction_loss: str = field(
        default="bce-sum", metadata={"help": "Registered reconstruction loss of the decoder."}
    )
    loss_option: ClassVar[str] = "reconstruction_loss"

    def __post_init__(self) -> None:
        super().__post_init__()
        beta = self.beta
        is_number = isinstance(beta, (int, float)) and not isinstance(beta, bool)
        if not (is_number and math.isfinite(beta) and beta > 0):
            raise GenzooError(f"beta must be a positive finite number, got {beta!r}")


class Posterior(NamedTuple):
    """The encoder's diagonal Gaussian q(z | x); named fields keep mu and logvar from swapping."""

    mu: torch.Tensor
    logvar: torch.Tensor


class GaussianVAE(Model):
    """A VAE trained on BCE + beta * KL; subclasses provide ``posterior`` and ``decode_logits``.

    ``beta`` weighs the KL term of the training objective only: ``negative_elbo`` is
    always the true (beta = 1) bound, so its numbers compare with any other VAE's.
    """

    can_reconstruct = can_sample = can_encode = has_elbo = True
    #: The training objective first, then the bound that evaluation reports.
    loss_names = ("loss", "nelbo")
    config: GaussianVAEConfig

    def __init__(self, config: GaussianVAEConfig, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        reg = registry()
        self.reconstruction_loss = reg.loss(config.reconstruction_loss, kind="reconstruction")
        self.kl = reg.loss("kl-normal", kind="divergence")

    def posterior(self, x: torch.Tensor) -> Posterior:
        """q(z | x) for images of shape ``(batch, *sample_shape)``."""
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x | z), flat: shape ``(batch, pixels)``."""
        raise NotImplementedError

    @staticmethod
    def reparameterize(q: Posterior) -> torch.Tensor:
        """z = mu + eps * sigma with eps ~ N(0, I): a sample of q that gradients flow through."""
        std = torch.exp(0.5 * q.logvar)
        return q.mu + torch.randn_like(std) * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli means in [0, 1], shaped as images."""
        return torch.sigmoid(self.decode_logits(z)).view(-1, *self.sample_shape)

    def negative_elbo(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image true negative ELBO (beta = 1) with one sampled z, and its BCE and KL parts."""
        q = self.posterior(x)
        bce = self.reconstruction_loss(self.decode_logits(self.reparameterize(q)), x)
        kl = self.kl(q.mu, q.logvar)
        return {"nelbo": bce + kl, "bce": bce, "kl": kl}

    def objective(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image training loss BCE + beta * KL beside the parts of :meth:`negative_elbo`."""
        parts = self.negative_elbo(x)
        return {"loss": parts["bce"] + self.config.beta * parts["kl"], **parts}

    def training_step(
        self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.Tensor]:
        opt = optimizers["adam"]
        opt.zero_grad(set_to_none=True)
        parts = self.objective(x)
        parts["loss"].sum().backward()
        opt.step()
        n = x.shape[0]
        return {key: value.detach().sum() / n for key, value in parts.items()}

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {key: value.sum() for key, value in self.objective(x).items()}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x).mu

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.decode(torch.randn(n, self.config.latent, device=self.device))
