"""Helpers shared by the evaluation, FID and compare tests: tiny trainings and counters."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from genzoo.data import TensorSplit
from genzoo.evaluation import mnist_classifier
from genzoo.plugin_registry import registry
from genzoo.trainer import training_step

SHAPE = (1, 28, 28)


def trained(name: str, images: torch.Tensor, steps: int, seed: int = 0, **options: Any):
    """Model ``name`` after ``steps`` optimisation steps of 100 images (then its after_training)."""
    torch.manual_seed(seed)
    model = registry().build_model(name, SHAPE, **options)
    optimizers = model.configure_optimizers()
    model.train()
    for step in range(steps):
        start = (step * 100) % (len(images) - 100)
        training_step(model, images[start:start + 100], optimizers)
    model.after_training(TensorSplit(images[:1000]))
    return model.eval()


class ExtractionCounter:
    """Counts the images that reach the ``mnist`` feature extractor."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.images = 0
        original = mnist_classifier.MNISTFeatureExtractor.forward

        def counting(extractor: Any, x: torch.Tensor) -> Any:
            self.images += x.shape[0]
            return original(extractor, x)

        monkeypatch.setattr(mnist_classifier.MNISTFeatureExtractor, "forward", counting)

    def take(self) -> int:
        """Images counted since the last call."""
        n, self.images = self.images, 0
        return n


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One torch thread: on this shared 2-core machine two threads can be 30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
