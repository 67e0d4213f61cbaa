"""What this plugin promises beyond genzoo's conformance kit: beta weighs only the KL
term of the training loss, evaluation's bound ignores beta, and bad options fail early."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch
from genzoo_beta_vae import BetaVAEConfig, ConvVAEConfig

import genzoo
from genzoo import GenzooError
from genzoo.testing import training_step

MNIST_SHAPE = (1, 28, 28)
MODELS = ["beta-vae", "beta-conv-vae"]


def build(name: str, shape: tuple[int, ...] = MNIST_SHAPE, **options: Any) -> genzoo.Model:
    """A small model in float64, so that differences of ~500-nat losses stay exact."""
    torch.manual_seed(0)  # the same weights whatever beta is
    return genzoo.registry().build_model(name, shape, latent=8, **options).double()


def batch() -> torch.Tensor:
    return torch.rand(16, *MNIST_SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def step(model: genzoo.Model, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
    """One step as genzoo's trainer takes it; the batch's mean of each per-image value."""
    torch.manual_seed(2)  # the same eps for every model
    return {key: value.mean() for key, value in training_step(model, batch(), optimizers).items()}


@pytest.mark.parametrize("name", MODELS)
def test_beta_scales_only_the_kl_part_of_the_training_loss(name: str) -> None:
    one, four = build(name, beta=1.0), build(name, beta=4.0)
    s1 = step(one, one.configure_optimizers())
    s4 = step(four, four.configure_optimizers())
    for key in ("nelbo", "bce", "kl"):
        torch.testing.assert_close(s4[key], s1[key])
    torch.testing.assert_close(s1["loss"], s1["nelbo"])
    torch.testing.assert_close(s4["loss"] - s1["loss"], 3 * s1["kl"])
    assert s1["kl"] > 0.01  # a vanishing KL would make the check above vacuous


@pytest.mark.parametrize("name", MODELS)
def test_the_step_descends_the_gradient_of_bce_plus_beta_kl(name: str) -> None:
    """The loss reported is the loss minimised: grad(beta=4) - grad(beta=1) = 3 grad(KL)."""
    grads = {}
    for beta in (1.0, 4.0):
        model = build(name, beta=beta)
        step(model, {"adam": torch.optim.SGD(model.parameters(), lr=0.0)})  # lr 0: grads, no move
        grads[beta] = torch.cat([p.grad.flatten() for p in model.parameters()])
    model = build(name)
    q = model.posterior(batch())
    q.kl_to_standard_normal().sum().backward()
    grad_kl = torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros_like(p).flatten()
                         for p in model.parameters()])
    assert grad_kl.abs().max() > 1e-3
    torch.testing.assert_close(grads[4.0] - grads[1.0], 3 * grad_kl)


@pytest.mark.parametrize("name", MODELS)
def test_negative_elbo_is_the_true_bound_whatever_beta(name: str) -> None:
    one, four = build(name, beta=1.0), build(name, beta=4.0)
    x = batch()
    with torch.no_grad():
        torch.manual_seed(3)
        e1 = one.negative_elbo(x)
        torch.manual_seed(3)
        e4 = four.negative_elbo(x)
        torch.manual_seed(3)
        per_image = four.evaluate(x)
    assert set(e4) == {"nelbo", "bce", "kl"}
    for key in e4:
        assert e4[key].shape == (x.shape[0],)
        torch.testing.assert_close(e4[key], e1[key])
        torch.testing.assert_close(per_image[key], e4[key])
    torch.testing.assert_close(per_image["loss"], e4["bce"] + 4.0 * e4["kl"])


def test_conv_vae_refuses_other_image_shapes() -> None:
    with pytest.raises(GenzooError, match=r"beta-conv-vae needs images of shape \(1, 28, 28\), got \(3, 32, 32\)"):
        build("beta-conv-vae", (3, 32, 32))


def test_beta_vae_fits_any_image_shape() -> None:
    model = build("beta-vae", (3, 32, 32)).float()
    assert model.sample(2).shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("beta-vae", {"beta": 0}, "beta must be a positive finite number, got 0"),
        ("beta-vae", {"beta": math.nan}, "beta must be a positive finite number, got nan"),
        ("beta-vae", {"beta": -1.0}, "beta must be a positive finite number"),
        ("beta-vae", {"beta": True}, "beta must be a positive finite number, got True"),
        ("beta-vae", {"beta": "4"}, "beta must be a positive finite number"),
        ("beta-vae", {"hidden": 0}, "hidden must be a positive integer, got 0"),
        ("beta-vae", {"hidden": True}, "hidden must be a positive integer, got True"),
        ("beta-conv-vae", {"channels": 0}, "channels must be a positive integer, got 0"),
        ("beta-conv-vae", {"channels": 2.5}, "channels must be a positive integer"),
        ("beta-conv-vae", {"beta": math.inf}, "beta must be a positive finite number, got inf"),
    ],
)
def test_bad_options_are_refused_with_a_one_line_error(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(GenzooError, match=message) as caught:
        build(name, **options)
    assert "\n" not in str(caught.value)


def test_defaults_and_a_help_text_for_every_new_option() -> None:
    beta_vae, conv_vae = BetaVAEConfig(), ConvVAEConfig()
    assert (beta_vae.latent, beta_vae.hidden, beta_vae.lr, beta_vae.beta) == (40, 400, 1e-3, 4.0)
    assert (conv_vae.latent, conv_vae.channels, conv_vae.lr, conv_vae.beta) == (40, 32, 1e-3, 1.0)
    for config in (beta_vae, conv_vae):
        for field in dataclasses.fields(config):
            if field.name not in ("latent", "lr"):  # genzoo's own options
                assert field.metadata.get("help"), field.name
