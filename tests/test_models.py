"""The built-in models and losses: training moves, the VAE's maths, the article's bugs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genzoo.plugins import registry
from genzoo_plugins.ae.gmm import GaussianMixture
from genzoo_plugins.vae.model import VAE, Posterior

SHAPE = (1, 28, 28)


def build(name: str, **options):
    torch.manual_seed(0)
    return registry().build_model(name, SHAPE, **options)


def train_steps(model, images: torch.Tensor, steps: int, batch: int = 100) -> list[dict[str, float]]:
    optimizers = model.configure_optimizers()
    history = []
    for step in range(steps):
        x = images[(step * batch) % len(images):][:batch]
        history.append({k: float(v) for k, v in model.training_step(x, optimizers).items()})
    return history


@pytest.mark.parametrize("name,key", [("ae", "loss"), ("vae", "nelbo"), ("gan", "loss_d")])
def test_each_model_trains_and_its_loss_falls(mnist, name, key):
    model = build(name)
    history = train_steps(model, mnist["train"].images[:3000], steps=30)
    first = sum(h[key] for h in history[:5]) / 5
    last = sum(h[key] for h in history[-5:]) / 5
    assert all(math.isfinite(v) for h in history for v in h.values())
    assert last < 0.8 * first, (name, first, last)


def test_vae_loss_equals_a_hand_computation(mnist):
    model = build("vae")
    x = mnist["test"].images[:16]
    torch.manual_seed(7)
    parts = model.negative_elbo(x)

    torch.manual_seed(7)
    flat = x.view(16, -1)
    h = torch.relu(flat @ model.encoder[0].weight.T + model.encoder[0].bias)
    mu = h @ model.mu_head.weight.T + model.mu_head.bias
    logvar = h @ model.logvar_head.weight.T + model.logvar_head.bias
    z = mu + torch.randn(16, 40) * torch.exp(logvar / 2)
    hidden = torch.relu(z @ model.decoder[0].weight.T + model.decoder[0].bias)
    p = torch.sigmoid(hidden @ model.decoder[2].weight.T + model.decoder[2].bias)
    bce = -(flat * torch.log(p) + (1 - flat) * torch.log(1 - p)).sum(1)
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1)

    torch.testing.assert_close(parts["bce"], bce, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(parts["kl"], kl, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(parts["nelbo"], bce + kl, rtol=1e-4, atol=1e-3)


def test_eps_is_standard_normal_not_uniform():
    """Regression: the article drew eps with rand_like (uniform on [0, 1))."""
    torch.manual_seed(0)
    q = Posterior(mu=torch.zeros(20000, 40), logvar=torch.zeros(20000, 40))
    eps = VAE.reparameterize(q)
    assert abs(float(eps.mean())) < 0.01
    assert abs(float(eps.std()) - 1) < 0.01
    assert float((eps < 0).float().mean()) == pytest.approx(0.5, abs=0.01)


def test_mean_and_log_variance_reach_the_loss_in_their_roles():
    """Regression: the article's loop passed the mean head as log-variance and back."""
    model = build("vae")
    with torch.no_grad():
        for head, value in ((model.mu_head, 2.0), (model.logvar_head, -3.0)):
            head.weight.zero_()
            head.bias.fill_(value)
    x = torch.rand(4, *SHAPE)
    q = model.posterior(x)
    assert torch.all(q.mu == 2.0) and torch.all(q.logvar == -3.0)
    kl_right = 0.5 * (2.0**2 + math.exp(-3.0) - 1 - (-3.0)) * 40
    kl_swapped = 0.5 * ((-3.0) ** 2 + math.exp(2.0) - 1 - 2.0) * 40
    kl = model.negative_elbo(x)["kl"]
    torch.testing.assert_close(kl, torch.full((4,), kl_right))
    assert not torch.allclose(kl, torch.full((4,), kl_swapped))
    # The sampled codes spread with sigma = exp(-3/2) around mu = 2, not the other way.
    z = VAE.reparameterize(Posterior(q.mu.repeat(500, 1), q.logvar.repeat(500, 1))).detach()
    assert float(z.mean()) == pytest.approx(2.0, abs=0.01)
    assert float(z.std()) == pytest.approx(math.exp(-1.5), rel=0.05)


def test_losses_match_their_formulas():
    reg = registry()
    logits = torch.randn(3, 784)
    x = torch.rand(3, 784)
    p = torch.sigmoid(logits)
    torch.testing.assert_close(reg.loss("bce-sum")(logits, x), -(x * p.log() + (1 - x) * (1 - p).log()).sum(1))
    torch.testing.assert_close(reg.loss("mse")(logits, x), (p - x).pow(2).sum(1))
    zero = torch.zeros(3, 5)
    torch.testing.assert_close(reg.loss("kl-normal")(zero, zero), torch.zeros(3))
    d = torch.tensor([[0.3], [-1.2]])
    gan = reg.loss("non-saturating")
    torch.testing.assert_close(gan(d, True), -F.logsigmoid(d).squeeze(1))
    torch.testing.assert_close(gan(d, False), -F.logsigmoid(-d).squeeze(1))


def test_gaussian_mixture_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-6.0, 0.0], [6.0, 0.0], [0.0, 8.0]])
    x = torch.cat([c + 0.5 * torch.randn(2000, 2, generator=g) for c in centres])
    gmm = GaussianMixture(3, 2).fit(x, generator=torch.Generator().manual_seed(1))
    found = sorted(gmm.means.tolist())
    for got, want in zip(found, sorted(centres.tolist())):
        assert got == pytest.approx(want, abs=0.1)
    torch.manual_seed(0)
    samples = gmm.sample(3000)
    nearest = torch.cdist(samples, centres).argmin(1)
    assert torch.bincount(nearest, minlength=3).min() > 800


def test_autoencoder_samples_from_the_mixture_fitted_to_its_codes(mnist):
    model = build("ae", latent=8)
    train_steps(model, mnist["train"].images[:2000], steps=20)
    model.after_training(mnist["train"].take(2000))
    assert bool(model.prior.fitted)
    codes = model.encode(mnist["train"].images[:2000]).detach()
    torch.testing.assert_close(model.prior.means.mean(0), codes.mean(0), atol=0.5, rtol=0.2)
    samples = model.sample(16)
    assert samples.shape == (16, *SHAPE) and 0 <= float(samples.min()) and float(samples.max()) <= 1


def test_capabilities_say_what_each_model_can_do():
    reg = registry()
    assert reg.model("vae").capabilities() == {"reconstruct": True, "sample": True, "encode": True, "elbo": True}
    assert reg.model("ae").capabilities() == {"reconstruct": True, "sample": True, "encode": True, "elbo": False}
    assert reg.model("gan").capabilities() == {"reconstruct": False, "sample": True, "encode": False, "elbo": False}
