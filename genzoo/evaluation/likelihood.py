"""The VAE's test likelihood: negative ELBO and the importance-weighted (IWAE) NLL bound.

For K posterior samples z_k ~ q(z|x), the IWAE bound (Burda et al. 2016) is

    log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),

which equals the ELBO in expectation at K = 1 and tightens as K grows, so
``iwae_nll <= negative ELBO`` (up to sampling noise at small K).

Importance sampling needs more than the ``negative_elbo`` the Model interface asks
for. A model qualifies when it has a diagonal-Gaussian ``posterior(x) -> (mu, logvar)``,
``decode_logits(z)``, a ``reconstruction_loss`` named ``bce-sum`` (so exp(-loss) is the
Bernoulli likelihood the ELBO uses) and a ``kl`` named ``kl-normal`` (prior N(0, I)).
The built-in VAE does; for other models the estimate is "n/a" with the reason.
"""

from __future__ import annotations

import math

import torch

from genzoo.data import Split
from genzoo.evaluation.phases import Bar
from genzoo.model import Model
from genzoo.seeding import seeded

LOG_2PI = math.log(2 * math.pi)
#: Decoded rows per chunk: bounds memory to about 60 MB of logits on MNIST.
ROWS_PER_CHUNK = 20_000


def iwae_unsupported(model: Model) -> str | None:
    """Why ``model`` gets no IWAE estimate, or None when it qualifies."""
    if not model.has_elbo:
        return "the model has no ELBO"
    missing = [name for name in ("posterior", "decode_logits") if not callable(getattr(model, name, None))]
    if missing:
        return f"the model exposes no {' or '.join(missing)} for importance sampling"
    if getattr(getattr(model, "reconstruction_loss", None), "name", None) != "bce-sum":
        return "its reconstruction loss is not the Bernoulli likelihood (bce-sum)"
    if getattr(getattr(model, "kl", None), "name", None) != "kl-normal":
        return "its prior is not N(0, I) (kl-normal)"
    return None


@torch.no_grad()
def negative_elbo(model: Model, test: Split, batch_size: int = 1000, seed: int = 0,
                  bar: Bar | None = None) -> dict[str, float] | None:
    """Mean per-image negative ELBO and its BCE and KL parts (nats), one seeded z per image."""
    if not model.has_elbo:
        return None
    model.eval()
    sums: dict[str, float] = {}
    images = 0
    with seeded(model.device, seed):
        for x in test.batches(batch_size):
            for key, value in model.negative_elbo(x).items():
                sums[key] = sums.get(key, 0.0) + float(value.double().sum())
            images += x.shape[0]
            if bar is not None:
                bar.advance(x.shape[0])
    return {**{key: total / images for key, total in sums.items()}, "images": images}


def log_importance_weights(model: Model, x: torch.Tensor, k: int) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) for ``k`` draws per image, shape ``(batch, k)``."""
    mu, logvar = model.posterior(x)
    std = torch.exp(0.5 * logvar)
    eps = torch.randn(k, *mu.shape, device=mu.device)  # k, B, D
    z = mu + eps * std
    logits = model.decode_logits(z.reshape(-1, mu.shape[1]))
    targets = x.flatten(1).repeat(k, 1)
    log_px_z = -model.reconstruction_loss(logits, targets).view(k, -1)
    log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
    log_qz = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)
    return (log_px_z + log_pz - log_qz).T


@torch.no_grad()
def iwae_nll(model: Model, test: Split, k: int, batch_size: int = 100, seed: int = 0,
             bar: Bar | None = None) -> float:
    """Mean per-image IWAE estimate of -log p(x) in nats with ``k`` importance samples."""
    reason = iwae_unsupported(model)
    if reason is not None:
        raise ValueError(f"no IWAE estimate for {type(model).__name__}: {reason}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    model.eval()
    total = 0.0
    images = 0
    with seeded(model.device, seed):
        for x in test.batches(batch_size):
            chunk = max(1, ROWS_PER_CHUNK // x.shape[0])
            log_w = torch.cat([log_importance_weights(model, x, min(chunk, k - start))
                               for start in range(0, k, chunk)], dim=1)
            log_px = torch.logsumexp(log_w.double(), dim=1) - math.log(k)
            total -= float(log_px.sum())
            images += x.shape[0]
            if bar is not None:
                bar.advance(x.shape[0])
    return total / images
