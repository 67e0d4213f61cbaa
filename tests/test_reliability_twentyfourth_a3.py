"""Reliability: state that still escaped the state checks (twenty-first hostile pass, plugins F1, F2, F3, F6, M1).

F1: a loss whose ``__deepcopy__`` gave a shallow copy (``copy.copy(self)``) shared its call count, kept in a list, with
every model's copy and every copy the checks made: a resumed run differed from one never stopped, exit 0. It is
refused in one line naming the loss and the attribute, before any run folder, as a loss that cannot be copied is.
F2, F3, F6: an optimiser counting its steps in ``self.defaults``, keeping its slow weights as attributes of the
parameter tensors, or counting in a numpy integer escaped the optimiser check, exit 0, resumes differing: each is
refused after the run's first step. M1: constant settings keyed by ``id(p)`` were refused as kept state (the ids differ
in any fresh optimiser): they are matched by the parameter's place, as parameter keys are. Each test of a refusal
failed before its fix (docs/reliability.md, the rows of the twenty-fourth round).
"""

from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from genzoo_plugins.vae import VAE
from reliability_support import assert_one_line_error, data_root, run_main  # noqa: F401 - data_root is a fixture

from genzoo import hookimpl
from genzoo.building import unkept_optimizer_state
from genzoo.loss import Loss

TINY = ["--batch-size", "20", "--train-limit", "100", "--test-limit", "20", "--device", "cpu", "--latent", "2",
        "--hidden", "16", "--epochs", "1"]


def train(model: str, data_root: Path, out: Path, capsys: pytest.CaptureFixture[str],
          *extra: str) -> tuple[int, str, str]:
    return run_main(["train", model, *TINY, "--data-root", str(data_root), "--out", str(out), *extra], capsys)


def refusal(code: int, err: str, run: Path) -> str:
    """The one line of a refusal after the run's first step (a run folder with its config.json alone)."""
    assert code == 1 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.endswith(f"no checkpoint had been written yet, so {run} (its config.json alone) cannot be resumed: "
                         "once the model is mended, train again into another folder"), line
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]
    return line


# -- F1: a loss whose deep copy is shallow -------------------------------------------------------------------


def _bce(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(logits.flatten(1), x.flatten(1),
                                                                reduction="none").sum(dim=1)


class ShallowBCE(Loss):
    """BCE weighed 0.5 after 7 calls with gradients (a warm-up), counted in a list; its deep copy is shallow."""

    name, kind, description = "shallow-bce", "reconstruction", "bce with a warm-up, copied shallowly"

    def __init__(self) -> None:
        self.calls = [0]

    def __deepcopy__(self, memo: dict[int, object]) -> ShallowBCE:
        return copy.copy(self)

    def __call__(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.calls[0] += torch.is_grad_enabled()
        return _bce(logits, x) * (1.0 if self.calls[0] < 8 else 0.5)


class ShallowSettingsBCE(Loss):
    """A shallow deep copy sharing only what a deep copy keeps too: a number, a function, a class, a logger."""

    name, kind, description = "shallow-settings-bce", "reconstruction", "bce with settings, copied shallowly"

    def __init__(self) -> None:
        self.weight, self.reduce, self.kind_of = 1.0, torch.sum, torch.Tensor
        self.log = logging.getLogger(__name__)

    def __deepcopy__(self, memo: dict[int, object]) -> ShallowSettingsBCE:
        return copy.copy(self)

    def __call__(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _bce(logits, x) * self.weight


class LossPlugin:
    @hookimpl
    def register_losses(self, register):
        for loss in (ShallowBCE(), ShallowSettingsBCE()):
            register(loss.name, loss)


def test_f1_a_loss_whose_deep_copy_shares_a_list_is_refused_before_the_run_folder(genzoo_register, data_root,
                                                                                   tmp_path, capsys):
    """Before: the run trained, exit 0 (interrupted and resumed, it ended otherwise than one never stopped)."""
    genzoo_register(LossPlugin(), "f1-losses")
    code, _, err = train("vae", data_root, tmp_path / "run", capsys, "--loss", "shallow-bce")
    assert_one_line_error(code, err, "loss 'shallow-bce' (ShallowBCE)'s deep copy shares its attribute 'calls' with "
                                     "it (a __deepcopy__ making a shallow copy?), so every model would share what it "
                                     "holds: each model is handed a copy of its own")
    assert not (tmp_path / "run").exists()


def test_f1_a_shallow_copy_sharing_only_settings_is_each_models_own(genzoo_register):
    genzoo_register(LossPlugin(), "f1-losses")
    from genzoo.plugin_registry import registry

    model = registry().build_model("vae", (1, 28, 28), reconstruction_loss="shallow-settings-bce")
    model.refuse_shared_losses()
    assert model.losses["reconstruction_loss"] is not registry().loss("shallow-settings-bce")


# -- F2, F3, F6, M1: optimisers ------------------------------------------------------------------------------


class DefaultsAdam(torch.optim.Adam):
    """Counts its steps in ``self.defaults`` and shrinks the weights every 5th (a Lookahead-like schedule)."""

    def __init__(self, params, **options) -> None:
        super().__init__(params, **options)
        self.defaults["k_count"] = 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        self.defaults["k_count"] += 1
        if self.defaults["k_count"] % 5 == 0:
            for group in self.param_groups:
                for p in group["params"]:
                    p.mul_(0.9)
        return loss


class ParameterAttributeAdam(torch.optim.Adam):
    """Lookahead keeping its slow weights and count on each parameter (``p.slow_w``, ``p.k_count``)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if not hasattr(p, "slow_w"):
                    p.slow_w, p.k_count = p.detach().clone(), 0
                p.k_count += 1
                if p.k_count % 5 == 0:
                    p.slow_w.add_(p - p.slow_w, alpha=0.5)
                    p.copy_(p.slow_w)
        return loss


class NumpyAdam(torch.optim.Adam):
    """Counts its steps in a numpy integer and shrinks the weights every 5th."""

    def __init__(self, params, **options) -> None:
        super().__init__(params, **options)
        self.k_count = np.int64(0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        self.k_count += 1
        if self.k_count % 5 == 0:
            for group in self.param_groups:
                for p in group["params"]:
                    p.mul_(0.9)
        return loss


class IdKeyedAdam(torch.optim.Adam):
    """Constant per-parameter settings keyed by ``id(p)``, never changed."""

    def __init__(self, params, **options) -> None:
        super().__init__(params, **options)
        self.mult = {id(p): 1.0 for group in self.param_groups for p in group["params"]}


class OptimizerVAE(VAE):
    optimizer: type[torch.optim.Adam] = torch.optim.Adam

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer(self.parameters(), lr=self.config.lr)}


class DefaultsVAE(OptimizerVAE):
    optimizer = DefaultsAdam


class ParameterAttributeVAE(OptimizerVAE):
    optimizer = ParameterAttributeAdam


class NumpyVAE(OptimizerVAE):
    optimizer = NumpyAdam


class IdKeyedVAE(OptimizerVAE):
    optimizer = IdKeyedAdam


class LockedNumpyVAE(NumpyVAE):
    """Holds a lock, so it cannot be deep-copied."""

    def __init__(self, config, sample_shape) -> None:
        super().__init__(config, sample_shape)
        self.lock = threading.Lock()


class MarkedVAE(VAE):
    """Marks its biases for no weight decay with an attribute set once, when built (as some recipes do)."""

    def __init__(self, config, sample_shape) -> None:
        super().__init__(config, sample_shape)
        for name, p in self.named_parameters():
            p.no_decay = name.endswith("bias")


class OptimizerPlugin:
    @hookimpl
    def register_models(self, register):
        for name, cls in (("defaults-vae", DefaultsVAE), ("param-attr-vae", ParameterAttributeVAE),
                          ("numpy-vae", NumpyVAE), ("id-keyed-vae", IdKeyedVAE), ("marked-vae", MarkedVAE),
                          ("locked-numpy-vae", LockedNumpyVAE)):
            register(name, cls)


@pytest.fixture
def optimizers(genzoo_register):
    genzoo_register(OptimizerPlugin(), "f2-optimizers")


def test_f2_an_optimiser_counting_in_its_defaults_is_refused_after_the_first_step(optimizers, data_root, tmp_path,
                                                                                  capsys):
    """Before: it trained with exit 0, and a run interrupted and resumed ended otherwise than one never stopped."""
    line = refusal(*train("defaults-vae", data_root, tmp_path / "run", capsys)[::2], tmp_path / "run")
    assert line.startswith(
        "Error: DefaultsVAE's optimiser 'adam' (DefaultsAdam) keeps state outside its state_dict: after the run's "
        "first training step, it and a fresh DefaultsAdam given its state_dict differ in defaults['k_count'] (plain "
        "attribute of the optimiser), so no checkpoint holds it and every resume would start it afresh; keep an "
        "optimiser's state in self.state (by parameter)"), line


def test_f3_an_optimiser_keeping_state_on_the_parameters_is_refused_after_the_first_step(optimizers, data_root,
                                                                                         tmp_path, capsys):
    """Before: it trained with exit 0, and a run interrupted and resumed ended otherwise than one never stopped."""
    line = refusal(*train("param-attr-vae", data_root, tmp_path / "run", capsys)[::2], tmp_path / "run")
    assert line.startswith(
        "Error: ParameterAttributeVAE's optimiser 'adam' (ParameterAttributeAdam) holds parameters with state outside "
        "the state_dict: after the run's first training step, they and those of a fresh ParameterAttributeAdam given "
        "its state_dict differ in encoder.0.weight.slow_w, encoder.0.weight.k_count, encoder.0.bias.slow_w and 17 "
        "more (attributes set on the parameter tensors), which no checkpoint holds and every resume would start "
        "afresh; keep an optimiser's state in self.state (by parameter)"), line


def test_f3_attributes_a_model_sets_on_its_parameters_when_built_are_no_state(optimizers, data_root, tmp_path,
                                                                              capsys):
    """A fresh build sets them again: the optimiser check compares with one, not with a deep copy (which drops
    them)."""
    code, _, err = train("marked-vae", data_root, tmp_path / "run", capsys)
    assert code == 0, err


def test_f6_an_optimiser_counting_in_a_numpy_integer_is_refused_after_the_first_step(optimizers, data_root, tmp_path,
                                                                                     capsys):
    """Before: it trained with exit 0, and a run interrupted and resumed ended otherwise than one never stopped."""
    line = refusal(*train("numpy-vae", data_root, tmp_path / "run", capsys)[::2], tmp_path / "run")
    assert line.startswith(
        "Error: NumpyVAE's optimiser 'adam' (NumpyAdam) keeps state outside its state_dict: after the run's first "
        "training step, it and a fresh NumpyAdam given its state_dict differ in k_count (plain attribute of the "
        "optimiser)"), line


def test_f6_the_optimisers_of_a_model_that_cannot_be_deep_copied_are_checked_too(optimizers, data_root, tmp_path,
                                                                                  capsys):
    """The fresh optimisers are a fresh build's: before, a model holding a lock was left unchecked, exit 0."""
    line = refusal(*train("locked-numpy-vae", data_root, tmp_path / "run", capsys)[::2], tmp_path / "run")
    assert line.startswith("Error: LockedNumpyVAE's optimiser 'adam' (NumpyAdam) keeps state outside its state_dict: "
                           "after the run's first training step, it and a fresh NumpyAdam given its state_dict differ "
                           "in k_count (plain attribute of the optimiser)"), line


def test_f6_numpy_values_are_compared_as_numbers_and_arrays():
    net = torch.nn.Linear(2, 1)
    mine, theirs = torch.optim.Adam(net.parameters()), torch.optim.Adam(copy.deepcopy(net).parameters())
    for optimizer in (mine, theirs):
        optimizer.count, optimizer.slow = np.float32(2.5), np.array([1.0, np.nan])
    assert unkept_optimizer_state(mine, theirs) == []
    theirs.count, theirs.slow = np.float32(0.0), np.array([0.0, np.nan])
    assert unkept_optimizer_state(mine, theirs) == ["count", "slow"]


def test_m1_constant_settings_keyed_by_the_parameters_ids_train(optimizers, data_root, tmp_path, capsys):
    """Before: refused after the first step, ``differ in mult (plain attribute of the optimiser)``, exit 1."""
    code, _, err = train("id-keyed-vae", data_root, tmp_path / "run", capsys)
    assert code == 0, err


def test_m1_a_dict_keyed_by_the_parameters_ids_is_matched_by_their_places():
    """Settings by ``id(p)`` agree with a fresh optimiser's; changed ones do not."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    mine, theirs = IdKeyedAdam(net.parameters()), IdKeyedAdam(copy.deepcopy(net).parameters())
    assert unkept_optimizer_state(mine, theirs) == []
    mine.mult[id(next(net.parameters()))] = 0.5
    assert unkept_optimizer_state(mine, theirs) == ["mult"]
