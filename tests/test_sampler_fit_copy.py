"""Ninth hostile pass F12: a sampler's fit that edits its batches in place (``x.sub_(0.5)`` where
``x - 0.5`` was meant) changed the training images themselves, since the training split's
batches are views of it: after a ``--fid-curve`` point the model trained on them (train -ELBO
-4220, exit 0), and in a compare the next model would. A fit now sees copies."""

from __future__ import annotations

from typing import Any

import torch

import genzoo
from genzoo import Sampler
from genzoo.data import TensorSplit
from genzoo.sampler import guarded


class CenteringFit(Sampler):
    """Normalises in place what it is given: every batch, and the split's images tensor read directly."""

    needs_fit = True

    def fit(self, train: Any) -> None:
        self.seen = [batch.clone() for batch in train.batches(7)]
        for batch in train.batches(7):
            batch.sub_(0.5)
        train.images.mul_(0)
        train.take(3).images.add_(1)

    def sample(self, n: int) -> torch.Tensor:
        return torch.rand(n, *self.model.sample_shape)


def test_a_fit_that_edits_its_batches_in_place_leaves_the_training_split_alone() -> None:
    model = genzoo.get_model("vae", latent=2)
    images = torch.rand(20, 1, 28, 28)
    split = TensorSplit(images.clone())
    sampler = guarded(CenteringFit(CenteringFit.Config(), model), "centering", "test-plugin", "test-dist")
    sampler.fit(split)
    torch.testing.assert_close(split.images, images, rtol=0, atol=0)  # what training reads next: untouched
    torch.testing.assert_close(torch.cat(sampler.inner.seen), images, rtol=0, atol=0)  # the fit saw the images
