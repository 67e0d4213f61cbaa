"""benchmarks/step_kinds.py: the machine's limit is computed from the work a step really does."""

from __future__ import annotations

import sys

import pytest
import torch

from benchmarks import common
from benchmarks.step_kinds import step_flops


def test_a_steps_flops_are_those_of_its_layer_shapes():
    """Forward 2·B·in·out per linear layer, backward twice that, but no input gradient for the data itself."""
    model = common.build_model("vae", torch.device("cpu"), **common.VAE_OPTIONS)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    batch = 10
    expected = sum(6 * batch * m.in_features * m.out_features for m in layers)
    expected -= 2 * batch * layers[0].in_features * layers[0].out_features
    assert step_flops("vae", torch.device("cpu"), torch.rand(batch, 1, 28, 28)) == expected


def test_the_conv_models_are_benchmarked_only_when_named(monkeypatch):
    """The conv models at their papers' widths take hours per CPU epoch: named, not benchmarked by default."""
    monkeypatch.delenv(common.MODELS_ENV, raising=False)
    assert common.bench_models() == ["ae", "gan", "vae"]
    assert {"conv-ae", "conv-vae", "dcgan"} <= set(common.bench_models("all"))
    monkeypatch.setenv(common.MODELS_ENV, "dcgan, vae")
    assert common.bench_models() == ["dcgan", "vae"]
    assert common.models_with("has_elbo") == ["vae"]
    with pytest.raises(ValueError, match="conv-vea not registered"):
        common.bench_models("vae,conv-vea")


def test_without_pythae_its_rows_say_why(monkeypatch):
    """No pythae: the benchmark skips its rows with the reason and the install command, never fails."""
    from benchmarks import step_kinds

    monkeypatch.setitem(sys.modules, "pythae.pipelines", None)
    reason = step_kinds.pythae_installed()
    assert reason is not None and "pip install 'genzoo[bench-pythae]'" in reason


def test_pythaes_vae_is_genzoos_article_vae():
    """The peer trains the same networks: the same layers, shapes and parameter count as `genzoo train vae`."""
    pytest.importorskip("pythae", reason="pythae is an optional extra: pip install 'genzoo[bench-pythae]'")
    from benchmarks.pythae_vae import pythae_vae

    ours = common.build_model("vae", torch.device("cpu"), **common.VAE_OPTIONS)
    theirs = pythae_vae()
    shapes = sorted(tuple(p.shape) for p in ours.parameters())
    assert sorted(tuple(p.shape) for p in theirs.parameters()) == shapes
    assert theirs.model_config.reconstruction_loss == "bce" and theirs.latent_dim == common.VAE_OPTIONS["latent"]


def test_steps_beyond_the_split_count_only_the_steps_an_epoch_takes(monkeypatch):
    """``--steps 100 --batch-size 1000`` on 60,000 images: an epoch is 60 steps, and its work and limit count 60."""
    import argparse

    from benchmarks import step_kinds
    from genzoo.data import TensorSplit

    train = TensorSplit(torch.rand(50, 1, 28, 28))
    args = argparse.Namespace(steps=10, batch_size=20, epochs=1)
    monkeypatch.setattr(step_kinds, "KINDS", ("eager",))  # what is counted, not the kinds' timings (no compiling)
    row = step_kinds.measure_model("ae", args, torch.device("cpu"), train, peak=1e9, fast_peak=2e9)
    assert row["steps_per_epoch"] == 3 and row["images_per_epoch"] == 50
    assert row["flops_per_epoch"] == 3 * step_flops("ae", torch.device("cpu"), torch.rand(20, 1, 28, 28))


@pytest.mark.parametrize("option, value", [("--steps", "-3"), ("--steps", "0"), ("--epochs", "0"),
                                           ("--batch-size", "0"), ("--threads", "0"), ("--processes", "-1")])
def test_a_count_below_its_least_is_refused_before_any_timing(option, value, capsys):
    """``--steps -3`` timed whole epochs and recorded negative steps, images and work (seventeenth hostile pass, F7);
    ``--epochs 0`` would reach the median of nothing."""
    from benchmarks import step_kinds

    with pytest.raises(SystemExit):
        step_kinds.parse_args([option, value])
    assert f"argument {option}: must be at least" in capsys.readouterr().err
