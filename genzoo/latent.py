"""A reusable variational autoencoder: diagonal-Gaussian encoder, N(0, I) prior, decoder likelihood.

Subclasses supply the networks, :meth:`VariationalAutoencoder.posterior` and
:meth:`VariationalAutoencoder.decode_logits`; this class supplies everything else:
the reparameterised sample, decoding, encoding, reconstruction, sampling from the
prior, the per-image objective and ELBO, and the importance weights ``genzoo eval``
turns into an IWAE estimate of -log p(x). The built-in ``vae`` is one with MLPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import torch

from genzoo.errors import GenzooError
from genzoo.model import Model, ModelConfig, Stats

LOG_2PI = math.log(2 * math.pi)


class Posterior(NamedTuple):
    """The encoder's diagonal Gaussian q(z | x); named fields keep mu and logvar from swapping."""

    mu: torch.Tensor
    logvar: torch.Tensor

    def kl_to_standard_normal(self) -> torch.Tensor:
        """KL(q || N(0, I)) in closed form, per row: shape ``(batch,)``."""
        return -0.5 * (1 + self.logvar - self.mu.pow(2) - self.logvar.exp()).sum(dim=1)


@dataclass
class VariationalAutoencoderConfig(ModelConfig):
    """The options every :class:`VariationalAutoencoder` has: its decoder's loss."""

    reconstruction_loss: str = field(default="bce-sum", metadata={
        "loss": "reconstruction", "help": "Registered reconstruction loss of the decoder."})
    loss_option: ClassVar[str] = "reconstruction_loss"


class VariationalAutoencoder(Model):
    """Kingma & Welling's VAE, trained on reconstruction + KL; subclasses provide the networks.

    The ELBO and the importance weights need a reconstruction loss that is the
    decoder's negative log-likelihood (``Loss.negative_log_likelihood``, as
    ``bce-sum``); with another (``--loss mse``) the model still trains, but
    :meth:`negative_elbo` and :meth:`log_importance_weights` refuse, and the report
    says why.
    """

    Config: ClassVar[type[ModelConfig]] = VariationalAutoencoderConfig
    can_reconstruct = can_sample = can_encode = has_elbo = has_likelihood = True
    gaussian_prior = True
    loss_names: ClassVar[tuple[str, ...]] = ("nelbo",)
    config: VariationalAutoencoderConfig

    def posterior(self, x: torch.Tensor) -> Posterior:
        """q(z | x) for images of shape ``(batch, *sample_shape)``."""
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of p(x | z), flat: shape ``(batch, pixels)``."""
        raise NotImplementedError

    @staticmethod
    def reparameterize(q: Posterior) -> torch.Tensor:
        """z = mu + eps * sigma with eps ~ N(0, I): a sample of q that gradients flow through."""
        std = torch.exp(0.5 * q.logvar)
        return q.mu + torch.randn_like(std) * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli means in [0, 1], shaped as images."""
        return torch.sigmoid(self.decode_logits(z)).view(-1, *self.sample_shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x).mu

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.checked_codes(x))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.decode(torch.randn(n, self.config.latent, device=self.device))

    def loss(self, x: torch.Tensor) -> Stats:
        """Per-image reconstruction + KL with one sampled z (``nelbo``), and its two parts."""
        return self._elbo_parts(x)

    def _elbo_parts(self, x: torch.Tensor) -> Stats:
        q = self.posterior(x)
        bce = self.losses["reconstruction_loss"](self.decode_logits(self.reparameterize(q)), x)
        kl = q.kl_to_standard_normal()
        return {"nelbo": bce + kl, "bce": bce, "kl": kl}

    def lacking_capabilities(self) -> dict[str, str]:
        """No ELBO and no likelihood with a reconstruction loss that is not the decoder's negative log-likelihood."""
        loss = self.losses["reconstruction_loss"]
        if loss.negative_log_likelihood:
            return {}
        why = f"its reconstruction loss {loss.name!r} is not the decoder's negative log-likelihood"
        return {"elbo": f"{type(self).__name__} has no ELBO: {why}",
                "likelihood": f"{type(self).__name__} has no likelihood: {why}"}

    def _check_likelihood(self, capability: str) -> None:
        lacking = self.lacking_capabilities().get(capability)
        if lacking is not None:
            raise GenzooError(lacking)

    def negative_elbo(self, x: torch.Tensor) -> Stats:
        """Per-image negative ELBO with one sampled z, and its reconstruction and KL parts."""
        self._check_likelihood("elbo")
        return self._elbo_parts(x)

    def log_importance_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log p(x|z) + log p(z) - log q(z|x) for ``k`` draws per image, shape ``(batch, k)``."""
        self._check_likelihood("likelihood")
        q = self.posterior(x)
        std = torch.exp(0.5 * q.logvar)
        eps = torch.randn(k, *q.mu.shape, device=q.mu.device, dtype=q.mu.dtype)  # k, B, D
        z = q.mu + eps * std
        logits = self.decode_logits(z.reshape(-1, q.mu.shape[1]))
        targets = x.flatten(1).repeat(k, 1)
        log_px_z = -self.losses["reconstruction_loss"](logits, targets).view(k, -1)
        log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
        log_qz = -0.5 * (eps.pow(2) + LOG_2PI + q.logvar).sum(-1)
        return (log_px_z + log_pz - log_qz).T
