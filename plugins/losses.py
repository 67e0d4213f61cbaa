"""The built-in losses: reconstruction (BCE, MSE), KL to N(0, I), the non-saturating GAN loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genzoo import Loss, Posterior, Register, hookimpl


class BCESum(Loss):
    """Bernoulli negative log-likelihood in nats, summed over pixels (from decoder logits)."""

    name = "bce-sum"
    kind = "reconstruction"
    description = "binary cross-entropy summed over pixels (Bernoulli decoder)"
    negative_log_likelihood = True

    def __call__(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits.flatten(1), x.flatten(1), reduction="none")
        return bce.sum(dim=1)


class MSESum(Loss):
    """Squared error of the decoded means, summed over pixels."""

    name = "mse"
    kind = "reconstruction"
    description = "squared error of sigmoid(logits) summed over pixels"

    def __call__(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(logits.flatten(1)) - x.flatten(1)).pow(2).sum(dim=1)


class KLStandardNormal(Loss):
    """KL(N(mu, exp(logvar)) || N(0, I)) in closed form, summed over latent dimensions."""

    name = "kl-normal"
    kind = "divergence"
    description = "KL of a diagonal Gaussian to N(0, I)"

    def __call__(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return Posterior(mu, logvar).kl_to_standard_normal()


class NonSaturatingGAN(Loss):
    """-log D(x) for the label ``real``, -log(1 - D(x)) otherwise (Goodfellow et al. 2014).

    Generators call it on fakes with ``real=True``: the non-saturating form.
    """

    name = "non-saturating"
    kind = "adversarial"
    description = "non-saturating GAN loss on discriminator logits"

    def __call__(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(dim=1)


@hookimpl
def register_losses(register: Register) -> None:
    for loss in (BCESum(), MSESum(), KLStandardNormal(), NonSaturatingGAN()):
        register(loss.name, loss)
