"""Found by the sixteenth look (fifteenth hostile pass, F1-F4): what the state check missed or crashed on.

``building.check_state_complete`` compared two fresh copies of a model through ``evaluate`` alone: a plain-list
layer used only by ``sample`` (F1) passed, and so did a non-persistent buffer that training changes (F2), both
leaving every load unlike the trained model. It crashed in a traceback on a model keeping state the PyTorch way,
``get_extra_state`` (F3), and on one whose ``__init__`` rewrites the config it is given (F4). Each test failed
before its fix (docs/reliability.md, "Found by the sixteenth look (fifteenth hostile pass)").
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from genzoo_plugins.vae.config import VAEConfig
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
)

from genzoo import GenzooError, hookimpl, load_model
from genzoo.building import check_state_complete
from genzoo.checkpoint import load_checkpoint
from genzoo.data import TensorSplit
from genzoo.plugin_registry import registry

SHAPE = (1, 28, 28)
TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2", "--hidden", "16"]


class SampleListVAE(VAE):
    """A plain-list layer used only when sampling (F1)."""

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.extra = [torch.nn.Linear(config.latent, config.latent)]

    def sample(self, n: int) -> torch.Tensor:
        z = self.extra[0](torch.randn(n, self.config.latent, device=self.device))
        return torch.sigmoid(self.decode_logits(z)).view(n, *self.sample_shape)


class NonPersistVAE(VAE):
    """Centres its inputs with a running mean kept as a non-persistent buffer, updated while training (F2)."""

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.register_buffer("centre", torch.zeros(sample_shape), persistent=False)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            with torch.no_grad():
                self.centre.mul_(0.9).add_(0.1 * x.mean(0))
        return super().loss(x)

    def posterior(self, x: torch.Tensor) -> Any:
        return super().posterior(x - self.centre)


class WarmUpVAE(VAE):
    """Weighs its KL term up over the first steps (and reports the weight), counting them in a plain attribute:
    no checkpoint holds it (F2)."""

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.steps = 0

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            self.steps += 1
        out, beta = super().loss(x), min(1.0, self.steps / 10)
        return {**out, "nelbo": out["bce"] + beta * out["kl"], "beta": torch.full_like(out["kl"], beta)}


class NumpySampleVAE(VAE):
    """Samples from numpy's global generator, which genzoo does not seed: not reproducible, but no lost state."""

    def sample(self, n: int) -> torch.Tensor:
        z = torch.from_numpy(np.random.randn(n, self.config.latent).astype("float32"))
        return torch.sigmoid(self.decode_logits(z)).view(n, *self.sample_shape)


class ExtraStateVAE(WarmUpVAE):
    """The same warm-up, its counter kept the PyTorch way: get_extra_state / set_extra_state (F3)."""

    def get_extra_state(self) -> dict[str, int]:
        return {"steps": self.steps}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.steps = int(state["steps"])


class BrokenExtraStateVAE(ExtraStateVAE):
    """A get_extra_state with a bug in it."""

    def get_extra_state(self) -> dict[str, int]:
        return {"steps": self.step}  # type: ignore[attr-defined]  # the bug: a misspelt attribute


class UnloadableExtraStateVAE(ExtraStateVAE):
    """A set_extra_state with a bug in it."""

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.steps = int(state["step"])  # the bug: a misspelt key


@dataclasses.dataclass
class WidthsConfig(VAEConfig):
    widths: str = "16"


class WidthsVAE(VAE):
    """Parses its option in __init__, into the config it was given (F4)."""

    Config = WidthsConfig

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        config.widths = [int(w) for w in config.widths.split(",")]
        super().__init__(config, sample_shape)


@hookimpl
def register_models(register: Any) -> None:
    register("samplelist17", SampleListVAE)
    register("nonpersist17", NonPersistVAE)
    register("warmup17", WarmUpVAE)
    register("extrastate17", ExtraStateVAE)
    register("badextra17", BrokenExtraStateVAE)
    register("unloadable17", UnloadableExtraStateVAE)
    register("widths17", WidthsVAE)


@pytest.fixture
def models(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "seventeenth", "test-seventeenth")


def train(model: str, out: Path, data_root: Path, capsys: pytest.CaptureFixture, command: str = "train",
          *extra: str) -> tuple[int, str]:
    """``genzoo train MODEL`` (or ``compare MODEL``) with tiny options into ``out``: its exit status and stderr."""
    if command == "compare":  # compare sets a model's options with --set
        args = ["compare", model, "--fid-samples", "0", "--data-root", str(data_root), *TINY[:-4]]
    else:
        args = ["train", model, "--data-root", str(data_root), *TINY]
    code, _, err = run_main([*args, *extra, "--out", str(out)], capsys)
    return code, err


@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_plain_list_layer_used_only_by_sample_is_refused_before_the_run_folder(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str) -> None:
    out = tmp_path / "out"
    code, err = train("samplelist17", out, data_root, capsys, command)
    assert_one_line_error(code, err, "SampleListVAE computes with state its state_dict does not hold: two "
                                     "SampleListVAEs given the same state_dict compute sample differently",
                          "nn.ModuleList")
    assert not out.exists()


def test_a_non_persistent_buffer_that_training_changes_is_refused_before_the_run_folder(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code, err = train("nonpersist17", out, data_root, capsys)
    assert_one_line_error(code, err, "NonPersistVAE computes with state its state_dict does not hold: a "
                                     "NonPersistVAE that has run a training forward pass and a fresh NonPersistVAE "
                                     "given its state_dict compute loss, evaluate differently",
                          "non-persistent buffer", "register_buffer (persistent)")
    assert not out.exists()


def test_a_plain_attribute_that_training_changes_is_refused() -> None:
    model = WarmUpVAE.build(WarmUpVAE.Config(latent=2, hidden=16), SHAPE)
    with pytest.raises(GenzooError, match="WarmUpVAE computes with state .* a WarmUpVAE that has run a training "
                                          "forward pass .* compute loss, evaluate differently .*get_extra_state"):
        check_state_complete(model, TensorSplit(torch.rand(4, *SHAPE)))
    assert model.steps == 0  # the model itself is left as it was


def test_a_model_drawing_from_a_stream_genzoo_does_not_seed_is_not_taken_for_lost_state() -> None:
    """Its copies sample differently, but so does each copy from itself under one seed: that is no state."""
    check_state_complete(NumpySampleVAE.build(NumpySampleVAE.Config(latent=2, hidden=16), SHAPE),
                         TensorSplit(torch.rand(4, *SHAPE)))


def test_a_model_keeping_state_in_get_extra_state_trains_evaluates_and_samples(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    code, err = train("extrastate17", run, data_root, capsys, "train", "--checkpoint-every", "1")
    assert code == 0, err
    assert load_checkpoint(run / "checkpoint.pt")["model_state"]["_extra_state"] == {"steps": 2}
    assert load_model(run).steps == 2
    code, _, err = run_main(["eval", str(run), "--data-root", str(data_root), "--fid-samples", "0",
                             "--test-limit", "20", "--iwae-k", "2", "--device", "cpu"], capsys)
    assert code == 0, err
    code, _, err = run_main(["sample", str(run), "-n", "2", "--sampler", "gmm", "--data-root", str(data_root),
                             "--out", str(tmp_path / "s.npz")], capsys)  # a fitted sampler's cache key
    assert code == 0, err
    code, _, err = run_main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "x")], capsys)
    assert_one_line_error(code, err, "safetensors holds only tensors, and the model's '_extra_state' is a dict "
                                     "(from its get_extra_state); this run cannot be exported")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_model_whose_init_rewrites_its_config_is_one_line_before_the_run_folder(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str) -> None:
    out = tmp_path / "out"
    code, err = train("widths17", out, data_root, capsys, command)
    assert_one_line_error(code, err, "a second WidthsVAE cannot be built from the config the first was built with "
                                     "(AttributeError: 'list' object has no attribute 'split')",
                          "WidthsVAE.__init__ must leave the config it is given as it is")
    assert not out.exists()


@pytest.mark.parametrize(("model", "says"), [
    ("badextra17", "BrokenExtraStateVAE.state_dict() failed: AttributeError: 'BrokenExtraStateVAE' object has no "
                   "attribute 'step'"),
    ("unloadable17", "UnloadableExtraStateVAE's own state_dict does not load into a freshly built "
                     "UnloadableExtraStateVAE: KeyError: 'step'"),
])
def test_a_fault_in_extra_state_code_is_one_line_before_the_run_folder(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, model: str, says: str) -> None:
    out = tmp_path / "out"
    code, err = train(model, out, data_root, capsys)
    assert_one_line_error(code, err, says)
    assert not out.exists()


def test_the_state_check_leaves_the_models_extra_state_and_the_rng_alone(models: None) -> None:
    """The check runs a copy of the model in training mode, never the model: its step counter stays where it was."""
    model = registry().build_model("extrastate17", SHAPE, latent=2, hidden=16)
    train = TensorSplit(torch.rand(4, *SHAPE))
    state = torch.get_rng_state()
    check_state_complete(model, train)
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training and model.steps == 0 and model.state_dict()["_extra_state"] == {"steps": 0}
