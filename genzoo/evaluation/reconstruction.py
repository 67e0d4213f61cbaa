"""Reconstruction error on the test split, decoding the encoder's mean.

Only ``model.reconstruct`` is used (it returns Bernoulli means), so any model with
``can_reconstruct`` is measured the same way. A model that cannot reconstruct gets
``None`` from :func:`reconstruction_metrics`: genzoo reports "n/a", never 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genzoo.checks import NotPixels
from genzoo.data import Split
from genzoo.errors import blamed
from genzoo.evaluation.phases import Bar
from genzoo.model import Model
from genzoo.sampler import model_images


@torch.no_grad()
def reconstruction_metrics(model: Model, test: Split, batch_size: int = 1000,
                           bar: Bar | None = None) -> dict[str, float] | None:
    """Per-pixel MSE and BCE in nats/image of ``reconstruct(x)`` against ``x``; None if n/a.

    BCE is computed from the decoded means (PyTorch clamps each log term at -100, so a
    saturated float32 sigmoid cannot give infinity); on a trained model it agrees with
    the logit-based BCE to well under 0.1 nats/image. Means that are not pixels in [0, 1]
    (NaN, or outside it: BCE is not defined there) are :class:`NotPixels`.
    """
    if not model.can_reconstruct:
        return None
    model.eval()
    # Summed on the device in float64 and read once after the last batch: no host sync per batch.
    squared = bce = torch.zeros((), dtype=torch.float64, device=model.device)
    low = torch.zeros((), dtype=torch.float64, device=model.device)
    high = torch.ones((), dtype=torch.float64, device=model.device)
    finite = torch.ones((), dtype=torch.bool, device=model.device)
    pixels = images = 0
    for x in test.batches(batch_size):
        # A subclass, or complex values (whose imaginary part .double() would drop), are NotPixels too.
        # The model gets its own copy: one that edits its input in place is scored against the test images.
        with blamed(f"{type(model).__name__}.reconstruct"):
            reconstructed = model.reconstruct(x.clone())
        means = model_images(reconstructed, type(model).__name__, "reconstruct", "reconstructions")
        means = means.reshape(x.shape).double()
        target = x.double()
        squared = squared + (means - target).pow(2).sum()
        finite = finite & torch.isfinite(means).all()
        low, high = torch.minimum(low, means.amin()), torch.maximum(high, means.amax())
        # Clamped for BCE alone (which refuses, or on a GPU asserts on, values outside [0, 1]); checked below.
        bce = bce + F.binary_cross_entropy(means.nan_to_num(0.5).clamp(0, 1), target, reduction="sum")
        pixels += x.numel()
        images += x.shape[0]
        if bar is not None:
            bar.advance(x.shape[0])
    if not bool(finite & (low >= 0) & (high <= 1)):  # one sync, after the last batch
        found = "NaN or infinite values" if not bool(finite) else f"values from {low.item():.3g} to {high.item():.3g}"
        raise NotPixels(type(model).__name__, found, "reconstruct", "reconstructions")
    return {"mse_per_pixel": float(squared) / pixels, "bce_nats_per_image": float(bce) / images, "images": images}
