"""The VAE's test likelihood: negative ELBO and the importance-weighted (IWAE) NLL bound.

For K posterior samples z_k ~ q(z|x), the IWAE bound (Burda et al. 2016) is

    log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),

which equals the ELBO in expectation at K = 1 and tightens as K grows, so
``iwae_nll <= negative ELBO`` (up to sampling noise at small K).

Both come from the model through the Model interface: ``negative_elbo`` for models
with ``has_elbo`` and ``log_importance_weights`` for models with ``has_likelihood``
(:class:`genzoo.VariationalAutoencoder` supplies both). A model that has the
capability but not as configured (a VAE trained on ``mse``) raises ``GenzooError``,
and the report gives its message as the reason for "n/a"; so does a mean that is not
finite (a plugin's log of 0), which eval.json could not hold.
"""

from __future__ import annotations

import math

import torch

from genzoo.data import Split
from genzoo.errors import GenzooError, blamed
from genzoo.evaluation.phases import Bar
from genzoo.model import Model
from genzoo.seeding import seeded

#: Decoded rows per chunk: bounds memory to about 60 MB of logits on MNIST.
ROWS_PER_CHUNK = 20_000


def iwae_unsupported(model: Model) -> str | None:
    """Why ``model`` gets no IWAE estimate, or None when it claims the capability."""
    return None if model.has_likelihood else "the model offers no likelihood"


@torch.no_grad()
def negative_elbo(model: Model, test: Split, batch_size: int = 1000, seed: int = 0,
                  bar: Bar | None = None) -> dict[str, float] | None:
    """Mean per-image negative ELBO and its BCE and KL parts (nats), one seeded z per image."""
    if not model.has_elbo:
        return None
    model.eval()
    sums: dict[str, torch.Tensor] = {}  # on the device, in float64: read once, after the last batch
    images = 0
    with seeded(model.device, seed):
        for x in test.batches(batch_size):
            with blamed(f"{type(model).__name__}.negative_elbo"):
                parts = model.negative_elbo(x)
            for key, value in parts.items():
                sums[key] = sums[key] + value.double().sum() if key in sums else value.double().sum()
            images += x.shape[0]
            if bar is not None:
                bar.advance(x.shape[0])
    means = {key: float(total) / images for key, total in sums.items()}
    broken = next(((key, value) for key, value in means.items() if not math.isfinite(value)), None)
    if broken is not None:  # never written: eval.json's readers refuse a non-finite number as damage
        raise GenzooError(f"{type(model).__name__}.negative_elbo gave a non-finite mean {broken[0]!r} "
                          f"({broken[1]}) over the test split")
    return {**means, "images": images}


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
    total = torch.zeros((), dtype=torch.float64, device=model.device)  # read once, after the last batch
    images = 0
    with seeded(model.device, seed):
        for x in test.batches(batch_size):
            chunk = max(1, ROWS_PER_CHUNK // x.shape[0])
            parts = []
            for start in range(0, k, chunk):
                want = min(chunk, k - start)
                with blamed(f"{type(model).__name__}.log_importance_weights"):
                    part = model.log_importance_weights(x, want)
                shape = tuple(part.shape) if isinstance(part, torch.Tensor) else type(part).__name__
                if shape != (x.shape[0], want):  # (k, batch) or (batch, 1) would give a number labelled k
                    raise GenzooError(f"{type(model).__name__}.log_importance_weights gave {shape} for {x.shape[0]} "
                                      f"images and {want} samples, not (images, samples) = {(x.shape[0], want)}")
                parts.append(part)
            log_w = torch.cat(parts, dim=1)
            log_px = torch.logsumexp(log_w.double(), dim=1) - math.log(k)
            total -= log_px.sum()
            images += x.shape[0]
            if bar is not None:
                bar.advance(x.shape[0])
    nll = float(total) / images
    if not math.isfinite(nll):  # never written: eval.json's readers refuse a non-finite number as damage
        raise GenzooError(f"{type(model).__name__}.log_importance_weights gave a non-finite IWAE NLL ({nll}) "
                          "over the test split")
    return nll
