"""The built-in models and losses: training moves, the VAE's maths, the article's bugs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from genzoo_plugins.samplers.gmm import GaussianMixture
from genzoo_plugins.vae.model import VAE
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal

from genzoo import GenzooError, Posterior
from genzoo.data import TensorSplit
from genzoo.plugin_registry import registry
from genzoo.train_config import TrainConfig
from genzoo.trainer import Trainer, training_step

SHAPE = (1, 28, 28)


def build(name: str, **options):
    torch.manual_seed(0)
    return registry().build_model(name, SHAPE, **options)


def train_steps(model, images: torch.Tensor, steps: int, batch: int = 100) -> list[dict[str, float]]:
    optimizers = model.configure_optimizers()
    history = []
    for step in range(steps):
        x = images[(step * batch) % len(images):][:batch]
        history.append({k: float(v.mean()) for k, v in training_step(model, x, optimizers).items()})
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
    assert model.default_sampler == "gmm"
    sampler = registry().build_sampler("gmm", model, "ae", **model.sampler_options("gmm"))
    sampler.fit(mnist["train"].take(2000))
    assert bool(sampler.mixture.fitted) and sampler.mixture.means.shape == (10, 8)
    codes = model.encode(mnist["train"].images[:2000]).detach()
    torch.testing.assert_close(sampler.mixture.means.mean(0), codes.mean(0), atol=0.5, rtol=0.2)
    samples = sampler.sample(16)
    assert samples.shape == (16, *SHAPE) and 0 <= float(samples.min()) and float(samples.max()) <= 1


def test_capabilities_say_what_each_model_can_do():
    reg = registry()
    assert reg.model("vae").capabilities() == {"reconstruct": True, "sample": True, "encode": True, "elbo": True,
                                                "likelihood": True}
    # The AE has no sampler of its own: it is sampled through the gmm sampler (its default_sampler).
    assert reg.model("ae").capabilities() == {"reconstruct": True, "sample": False, "encode": True, "elbo": False,
                                               "likelihood": False}
    assert reg.model("gan").capabilities() == {"reconstruct": False, "sample": True, "encode": False, "elbo": False,
                                                "likelihood": False}


# -- what a model needs of its training split (Model.check_training_split) --------------------


class BatchNormed(registry().model("vae")):
    """A model that batch-normalises the images it is given, as third-party models may."""

    min_batch_size = 2


@pytest.mark.parametrize("images,batch,smallest", [(21, 10, 1), (1, 1, 1), (5, 1, 1)])
def test_a_model_refuses_a_split_that_leaves_a_batch_below_its_minimum(images, batch, smallest):
    with pytest.raises(GenzooError, match=f"BatchNormed trains on batches of at least 2 images, but {images} "
                                          f"training images in batches of {batch} leave a last batch of {smallest}"):
        BatchNormed.check_training_split(BatchNormed.Config(), images, batch)
    BatchNormed.check_training_split(BatchNormed.Config(), 22, 10)
    BatchNormed.check_training_split(BatchNormed.Config(), 20, 10)
    registry().model("vae").check_training_split(BatchNormed.Config(), images, batch)  # minimum 1


def test_the_ae_refuses_more_prior_components_than_training_images():
    ae = registry().model("ae")
    with pytest.raises(GenzooError, match=r"more mixture components \(600\) than training images \(500\)"):
        ae.check_training_split(ae.Config(prior_components=600), 500, 100)
    ae.check_training_split(ae.Config(prior_components=500), 500, 100)


def test_the_trainer_refuses_such_a_split_so_resume_does_too(tmp_path):
    """resume builds a Trainer before it touches a file: a run that cannot finish is refused there."""
    model = build("ae", latent=2, prior_components=6)
    with pytest.raises(GenzooError, match=r"more mixture components \(6\) than training images \(5\)"):
        Trainer(model, TensorSplit(torch.rand(5, *SHAPE)), TensorSplit(torch.rand(5, *SHAPE)),
                TrainConfig(model="ae", batch_size=5), tmp_path)
    assert not any(tmp_path.iterdir())


def test_the_gan_takes_a_training_step_on_one_image():
    """Its generator batch-normalises: it draws two fakes for one real image."""
    model = build("gan", latent=4)
    optimizers = model.configure_optimizers()
    stats = training_step(model, torch.rand(1, *SHAPE), optimizers)
    assert all(tuple(v.shape) == (1,) and math.isfinite(float(v)) for v in stats.values())
    assert model.min_batch_size == 1


def test_a_mixture_fits_a_single_code():
    mixture = GaussianMixture(1, 3).fit(torch.tensor([[1.0, 2.0, 3.0]]))
    torch.testing.assert_close(mixture.means, torch.tensor([[1.0, 2.0, 3.0]]))
    assert torch.isfinite(mixture.scale_tril).all()


def test_models_are_handed_their_losses_and_look_nothing_up():
    """Each model's config declares its loss fields; Model.build resolves them before the model is made."""
    import genzoo_plugins

    sources = {str(path): path.read_text() for path in Path(genzoo_plugins.__file__).parent.glob("*/model.py")}
    assert len(sources) == 6 and [name for name, text in sources.items() if "registry" in text] == []
    built = []

    class Watched(registry().model("gan")):
        def __init__(self, config, sample_shape):
            built.append(config)
            super().__init__(config, sample_shape)

    model = Watched.build(Watched.Config(latent=4), SHAPE)
    registered = registry().loss("non-saturating")  # each model is handed its own copy of it
    assert built and list(model.losses) == ["adversarial_loss"]
    assert type(model.losses["adversarial_loss"]) is type(registered) and model.losses["adversarial_loss"] is not registered
    built.clear()
    with pytest.raises(GenzooError, match="^loss 'bce-sum' is of kind 'reconstruction', not 'adversarial'$"):
        Watched.build(Watched.Config(adversarial_loss="bce-sum"), SHAPE)
    assert built == []  # refused before the constructor ran
    assert build("vae", latent=4, hidden=8).losses["reconstruction_loss"].name == "bce-sum"
    assert build("ae", latent=4, hidden=8, reconstruction_loss="mse").losses["reconstruction_loss"].name == "mse"
    bare = registry().model("vae")(registry().model("vae").Config(latent=4, hidden=8), SHAPE)  # not built
    with pytest.raises(GenzooError, match="^no loss was handed over for the config field 'reconstruction_loss'"):
        bare.loss(torch.rand(2, *SHAPE))


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 5), latent=st.integers(1, 6), k=st.integers(1, 4), seed=st.integers(0, 2**31 - 1),
       scale=st.floats(0.01, 4.0))
def test_the_vae_base_matches_torch_distributions_for_any_shape(batch, latent, k, seed, scale):
    """Posterior's closed-form KL and VariationalAutoencoder.log_importance_weights, against torch.distributions."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(batch, latent, generator=g, dtype=torch.float64) * scale
    logvar = torch.randn(batch, latent, generator=g, dtype=torch.float64) * scale
    std = (0.5 * logvar).exp()
    expected = torch.distributions.kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(Posterior(mu, logvar).kl_to_standard_normal(), expected)

    torch.manual_seed(seed)
    model = registry().model("vae").build(registry().model("vae").Config(latent=latent, hidden=3), (1, 2, 2)).double()
    x = torch.rand(batch, 1, 2, 2, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    log_w = model.log_importance_weights(x, k)
    torch.manual_seed(seed)
    q = model.posterior(x)
    z = q.mu + torch.randn(k, *q.mu.shape, dtype=torch.float64) * (0.5 * q.logvar).exp()
    probs = torch.sigmoid(model.decode_logits(z.reshape(-1, latent))).view(k, batch, -1)
    flat = x.flatten(1)  # grey targets: the Bernoulli log-likelihood written out
    log_px = (flat * probs.log() + (1 - flat) * (1 - probs).log()).sum(-1)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = Normal(q.mu, (0.5 * q.logvar).exp()).log_prob(z).sum(-1)
    assert log_w.shape == (batch, k)
    torch.testing.assert_close(log_w, (log_px + log_pz - log_qz).T)
