"""Evaluation sums on the device and reads the host once: the same numbers as per-batch reads, no sync per batch.

Each reduction is compared with the per-batch ``float()`` reduction it replaced (exactly:
both add the same float64 batch sums in the same order), and the host reads are counted
by patching ``torch.Tensor.__float__`` and ``torch.Tensor.item``, the two ways a value
comes back from the device.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torch_fidelity
from evaluation_support import single_thread, trained  # noqa: F401 - fixture
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric
from torch_fidelity.utils import get_featuresdict_from_dataset, get_featuresdict_from_generative_model

from genzoo import trainer
from genzoo.checks import NotPixels, check_pixels
from genzoo.evaluation import fid, frechet
from genzoo.evaluation.likelihood import iwae_nll, negative_elbo
from genzoo.evaluation.reconstruction import reconstruction_metrics
from genzoo.seeding import seeded


@pytest.fixture(scope="module")
def vae(mnist):
    return trained("vae", mnist["train"].images[:600], steps=3)


@pytest.fixture(scope="module")
def test_split(mnist):
    return mnist["test"].take(250)  # 5 batches of 50, the last one whole; and a partial one below


class HostReads:
    """Counts reads of tensors back to the host (``float(t)``, ``t.item()``, ``t.tolist()``) while patched."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for name in ("__float__", "item", "tolist"):
            original = getattr(torch.Tensor, name)

            def counting(tensor: torch.Tensor, *args: Any, _original: Any = original) -> Any:
                self.count += 1
                return _original(tensor, *args)

            monkeypatch.setattr(torch.Tensor, name, counting)


def old_negative_elbo(model, test, batch_size, seed):
    sums: dict[str, float] = {}
    with seeded(model.device, seed), torch.no_grad():
        for x in test.batches(batch_size):
            for key, value in model.negative_elbo(x).items():
                sums[key] = sums.get(key, 0.0) + float(value.double().sum())
    return {key: total / len(test) for key, total in sums.items()}


def old_iwae(model, test, k, batch_size, seed):
    total = 0.0
    with seeded(model.device, seed), torch.no_grad():
        for x in test.batches(batch_size):
            log_w = model.log_importance_weights(x, k)
            total -= float((torch.logsumexp(log_w.double(), dim=1) - math.log(k)).sum())
    return total / len(test)


def old_reconstruction(model, test, batch_size):
    squared = bce = 0.0
    with torch.no_grad():
        for x in test.batches(batch_size):
            means = model.reconstruct(x).reshape(x.shape).double()
            squared += float((means - x.double()).pow(2).sum())
            bce += float(F.binary_cross_entropy(means, x.double(), reduction="sum"))
    return squared / test.images.numel(), bce / len(test)


def test_negative_elbo_equals_the_per_batch_reduction_and_reads_the_host_once_per_key(vae, test_split, monkeypatch):
    expected = old_negative_elbo(vae, test_split, 40, seed=2)
    reads = HostReads(monkeypatch)
    result = negative_elbo(vae, test_split, batch_size=40, seed=2)  # 7 batches
    assert reads.count == len(expected)  # once per key, not once per key and batch
    assert {key: result[key] for key in expected} == expected and result["images"] == len(test_split)


def test_iwae_equals_the_per_batch_reduction_and_reads_the_host_once(vae, test_split, monkeypatch):
    expected = old_iwae(vae, test_split, 5, 50, seed=1)
    reads = HostReads(monkeypatch)
    assert iwae_nll(vae, test_split, 5, batch_size=50, seed=1) == expected
    assert reads.count == 1


def test_reconstruction_equals_the_per_batch_reduction_and_reads_the_host_twice(vae, test_split, monkeypatch):
    mse, bce = old_reconstruction(vae, test_split, 60)
    reads = HostReads(monkeypatch)
    result = reconstruction_metrics(vae, test_split, batch_size=60)
    assert reads.count == 2
    assert (result["mse_per_pixel"], result["bce_nats_per_image"]) == (mse, bce)


def test_test_losses_read_the_host_once_per_key(vae, test_split, monkeypatch):
    reads = HostReads(monkeypatch)
    losses = trainer.test_losses(vae, test_split, 30, seed=0)
    assert reads.count == len(losses)


def old_fid(model, reference, samples, seed):
    """FID as genzoo computed it before: torch-fidelity's own loops, drawing the samples through its wrapper."""
    class Sampler(torch.nn.Module):
        def forward(self, noise):
            return frechet.to_uint8_rgb(check_pixels(model.sample(noise.shape[0]), "model"))

    setup = frechet._setup(reference, "mnist", "mnist", None, None, False)
    net = setup.extractor.build(setup.weights, setup.weights_sha, False)
    batch, layer = setup.extractor.batch_size, setup.extractor.layer
    ref = get_featuresdict_from_dataset(frechet.ImageSet(reference.images), net, batch, False, True, False)[layer]
    wrapper = torch_fidelity.GenerativeModelModuleWrapper(Sampler(), 1, "normal", 0)
    with seeded(model.device, seed):
        drawn = get_featuresdict_from_generative_model(wrapper, net, samples, batch, False, seed, False)[layer]
    return float(fid_statistics_to_metric(frechet.statistics(drawn), frechet.statistics(ref), False)[KEY_METRIC_FID])


def test_fid_draws_the_same_samples_as_torch_fidelitys_loop_and_gives_the_same_number(vae, mnist, tmp_path):
    reference = mnist["test"].take(300)
    expected = old_fid(vae, reference, 2500, seed=4)  # batches of 1000, 1000 and 500
    assert fid(vae, reference, "mnist", samples=2500, seed=4, cache=tmp_path)["fid"] == pytest.approx(expected, rel=1e-6)


class LaterNaN(torch.nn.Module):
    """Wraps a model: its ``calls``-th ``sample`` call returns NaN in one pixel."""

    def __init__(self, model, bad_call: int) -> None:
        super().__init__()
        self.model, self.bad_call, self.calls = model, bad_call, 0

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_modules"]["model"], name)

    def sample(self, n: int) -> torch.Tensor:
        self.calls += 1
        images = self.model.sample(n)
        if self.calls == self.bad_call:
            images[-1, 0, 0, 0] = float("nan")
        return images


def test_fid_checks_the_samples_pixels_twice_not_once_per_batch(vae, mnist, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(frechet, "check_pixels", lambda images, who: calls.append(images.shape) or images)
    fid(vae, mnist["test"].take(300), "mnist", samples=4500, cache=tmp_path)  # 5 batches
    assert calls == [(1000, 1, 28, 28), (5, 2)]  # the first batch, then every batch's extremes at once


@pytest.mark.parametrize("bad_call", [1, 3])
def test_fid_refuses_samples_that_turn_nan_in_any_batch(vae, mnist, tmp_path, bad_call):
    model = LaterNaN(vae, bad_call)
    with pytest.raises(NotPixels, match="NaN or infinite"):
        fid(model, mnist["test"].take(300), "mnist", samples=3500, cache=tmp_path)
