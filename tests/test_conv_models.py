"""The convolutional built-ins: the papers' networks layer by layer, their defaults, training and resuming."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from genzoo_plugins.conv import ToGrid
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    assert_same_run,
    data_root,
    one_thread,
    run_main,
)
from torch import nn

from genzoo import GenzooError
from genzoo.plugin_registry import registry
from genzoo.train_config import TrainConfig
from genzoo.trainer import Trainer, training_step
from genzoo.training import resume_run, start_run

SHAPE = (1, 28, 28)
TINY = {"conv-ae": {"width": 2, "prior_components": 2}, "conv-vae": {"width": 2}, "dcgan": {"width": 2}}


def build(name: str, **options):
    torch.manual_seed(0)
    return registry().build_model(name, SHAPE, **options)


def layers(module: nn.Module, kind: type[nn.Module]) -> list[tuple]:
    """(in, out, kernel, stride) of each layer of ``kind``; (in, out) for linear layers."""
    if kind is nn.Linear:
        return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]
    return [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in module.modules() if isinstance(m, kind)]


def shapes(module: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    """The output shape of each convolution (transposed or not) as ``x`` passes through ``module``."""
    seen: list[tuple[int, ...]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[1:])))
             for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    module.eval()
    with torch.no_grad():
        module(x)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("name", ["conv-ae", "conv-vae"])
def test_the_autoencoders_have_ghosh_et_al_s_mnist_networks(name):
    """Appendix of Ghosh et al. 2020: conv 128-256-512-1024 (4x4, stride 2, BN, ReLU), fc 16;
    fc 8x8x1024, convT 512-256 (BN, ReLU), convT 1; MNIST padded to 32x32."""
    model = build(name)
    k4, s2, s1 = (4, 4), (2, 2), (1, 1)
    assert layers(model.encoder, nn.Conv2d) == [(1, 128, k4, s2), (128, 256, k4, s2), (256, 512, k4, s2),
                                                (512, 1024, k4, s2)]
    assert shapes(model.encoder, torch.rand(2, 784)) == [(128, 16, 16), (256, 8, 8), (512, 4, 4), (1024, 2, 2)]
    assert [m.num_features for m in model.encoder.modules() if isinstance(m, nn.BatchNorm2d)] == [128, 256, 512, 1024]
    heads = layers(model, nn.Linear)[:-1]  # the encoder's: one for the AE, mean and log-variance for the VAE
    assert heads == [(4096, 16)] * (1 if name == "conv-ae" else 2)
    assert layers(model.decoder, nn.Linear) == [(16, 8 * 8 * 1024)]
    assert layers(model.decoder, nn.ConvTranspose2d) == [(1024, 512, k4, s2), (512, 256, k4, s2), (256, 1, k4, s1)]
    assert [m.num_features for m in model.decoder.modules() if isinstance(m, nn.BatchNorm2d)] == [512, 256]
    assert shapes(model.decoder, torch.randn(2, 16))[:2] == [(512, 16, 16), (256, 32, 32)]
    assert model.decode(torch.randn(3, 16)).shape == (3, *SHAPE)


def test_dcgan_has_lucic_et_al_s_infogan_style_mnist_networks():
    """G: z 64 - fc 1024 BN ReLU - fc 7x7x128 BN ReLU - convT 64 BN ReLU - convT 1 sigmoid;
    D: conv 64 lReLU - conv 128 BN lReLU - fc 1024 BN lReLU - fc 1 (all 4x4, stride 2)."""
    model = build("dcgan")
    k4, s2 = (4, 4), (2, 2)
    g, d = model.generator, model.discriminator
    assert layers(g, nn.Linear) == [(64, 1024), (1024, 7 * 7 * 128)]
    assert [m.num_features for m in g.modules() if isinstance(m, nn.BatchNorm1d)] == [1024, 7 * 7 * 128]
    assert layers(g, nn.ConvTranspose2d) == [(128, 64, k4, s2), (64, 1, k4, s2)]
    assert shapes(g, torch.randn(2, 64)) == [(64, 14, 14), (1, 28, 28)]
    assert [m.num_features for m in g.modules() if isinstance(m, nn.BatchNorm2d)] == [64]
    assert layers(d, nn.Conv2d) == [(1, 64, k4, s2), (64, 128, k4, s2)]
    assert shapes(d, torch.rand(2, 784)) == [(64, 14, 14), (128, 7, 7)]
    assert layers(d, nn.Linear) == [(7 * 7 * 128, 1024), (1024, 1)]
    assert [type(m) for m in d.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))] == [
        nn.BatchNorm2d, nn.BatchNorm1d]
    assert {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}
    model.eval()
    samples = model.sample(5)
    assert samples.shape == (5, *SHAPE) and 0 <= float(samples.min()) and float(samples.max()) <= 1


def test_the_defaults_are_the_papers():
    reg = registry()
    ae, vae, gan = reg.model("conv-ae").Config(), reg.model("conv-vae").Config(), reg.model("dcgan").Config()
    assert (ae.latent, ae.width, ae.lr, ae.prior_components) == (16, 128, 5e-4, 10)
    assert (vae.latent, vae.width, vae.lr, vae.reconstruction_loss) == (16, 128, 1e-4, "bce-sum")
    assert (gan.latent, gan.width, gan.lr, gan.beta1, gan.adversarial_loss) == (64, 64, 2e-4, 0.5, "non-saturating")
    optimizers = build("dcgan", width=2).configure_optimizers()
    assert {name: opt.defaults["betas"] for name, opt in optimizers.items()} == {
        "discriminator": (0.5, 0.999), "generator": (0.5, 0.999)}


def test_an_image_is_fed_centred_on_a_grid_the_strides_divide():
    """MNIST's 28x28 sits in the middle of a 32x32 grid of background, in [-1, 1] for Ghosh et al.'s encoder."""
    grid = ToGrid(SHAPE, (32, 32), signed=True)(torch.ones(1, 784))
    assert grid.shape == (1, 1, 32, 32)
    assert bool((grid[0, 0, 2:30, 2:30] == 1).all())
    assert float(grid.sum()) == 28 * 28 - (32 * 32 - 28 * 28)


def test_the_vae_s_log_variance_is_bounded_as_in_the_authors_code():
    model = build("conv-vae", width=2)
    with torch.no_grad():
        model.log_sigma_head.bias.fill_(1e6)
    logvar = model.posterior(torch.rand(3, *SHAPE)).logvar
    torch.testing.assert_close(logvar, torch.full_like(logvar, 10.0))


@pytest.mark.parametrize("name", ["conv-ae", "conv-vae", "dcgan"])
def test_the_width_shrinks_every_layer_and_is_checked(name):
    small, large = build(name, width=2), build(name, width=4)
    assert 0 < sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in large.parameters())
    for width in (0, -3, 2.5, True):
        with pytest.raises(GenzooError, match="width must be a positive integer"):
            registry().build_model(name, SHAPE, width=width)


@pytest.mark.parametrize("name", ["conv-ae", "conv-vae", "dcgan"])
def test_images_that_are_no_channels_height_width_are_refused_in_one_line(name):
    with pytest.raises(GenzooError, match=r"need images of shape \(channels, height, width\), got \(784,\)"):
        registry().build_model(name, (784,), width=2)


@pytest.mark.parametrize("name", ["conv-ae", "conv-vae", "dcgan"])
def test_other_image_sizes_are_padded_and_cropped_back(name):
    shape = (3, 20, 13)
    model = registry().build_model(name, shape, **TINY[name])
    x = torch.rand(4, *shape)
    stats = training_step(model, x, model.configure_optimizers())
    assert all(tuple(v.shape) == (4,) and bool(torch.isfinite(v).all()) for v in stats.values())
    model.eval()
    if name == "conv-ae":
        assert model.reconstruct(x).shape == (4, *shape)
    else:
        assert model.sample(4).shape == (4, *shape)


def test_dcgan_refuses_a_split_that_leaves_one_real_image_in_a_batch():
    """Its discriminator batch-normalises the real images; its generator draws two fakes for one."""
    dcgan = registry().model("dcgan")
    with pytest.raises(GenzooError, match="DCGAN trains on batches of at least 2 images, but 201 training images "
                                          "in batches of 100 leave a last batch of 1"):
        dcgan.check_training_split(dcgan.Config(), 201, 100)
    dcgan.check_training_split(dcgan.Config(), 202, 100)
    model = build("dcgan", width=2)
    stats = training_step(model, torch.rand(2, *SHAPE), model.configure_optimizers())
    assert all(tuple(v.shape) == (2,) and math.isfinite(float(v.sum())) for v in stats.values())


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


@pytest.mark.parametrize("name", ["conv-ae", "conv-vae", "dcgan"])
def test_an_interrupted_run_resumes_bit_identically(name, data_root, tmp_path, monkeypatch):
    """Killed in the middle of epoch 2 (checkpoint every 5 steps), resumed: the same weights as never killed."""
    cfg = TrainConfig(model=name, epochs=2, batch_size=10, seed=3, device="cpu", data_root=str(data_root),
                      test_limit=20, checkpoint_every=5)
    start_run(cfg, TINY[name], out=tmp_path / "reference")
    original = Trainer.save

    def crash_in_epoch_2(self: Trainer) -> None:
        if (self.position.epoch, self.position.step) == (1, 10):
            raise Crash
        original(self)

    monkeypatch.setattr(Trainer, "save", crash_in_epoch_2)
    with pytest.raises(Crash):
        start_run(cfg, TINY[name], out=tmp_path / "run")
    monkeypatch.setattr(Trainer, "save", original)
    resume_run(tmp_path / "run")
    assert_same_run(tmp_path / "run", tmp_path / "reference")
    assert (tmp_path / "run" / "samples.png").stat().st_size > 0


def test_train_refuses_a_bad_width_in_one_line_and_makes_no_folder(data_root, tmp_path, capsys):
    code, _, err = run_main(["train", "conv-vae", "--width", "0", "--data-root", str(data_root), "--no-download",
                             "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "--width must be a positive integer")
    assert not (tmp_path / "run").exists()


def test_train_conv_vae_end_to_end_with_pictures(data_root, tmp_path, capsys):
    code, out, err = run_main(["train", "conv-vae", "--width", "2", "--epochs", "1", "--train-limit", "100",
                               "--test-limit", "40", "--data-root", str(data_root), "--no-download",
                               "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    for picture in ("samples.png", "reconstructions.png", "loss.png"):
        assert (Path(tmp_path / "run") / picture).stat().st_size > 0


def test_train_refuses_a_dcgan_split_with_a_lone_image_in_one_line(data_root, tmp_path, capsys):
    code, _, err = run_main(["train", "dcgan", "--width", "2", "--train-limit", "21", "--batch-size", "10",
                             "--data-root", str(data_root), "--no-download", "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "DCGAN trains on batches of at least 2 images, but 21 training images in "
                                     "batches of 10 leave a last batch of 1")
    assert not (tmp_path / "run").exists()
