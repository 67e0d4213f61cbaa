"""Checkpoints a third hostile pass edited by hand that ``resume`` still took (issue 10).

Mid-epoch sums of only some of the step statistics, or of more; Adam's state emptied,
partly dropped, or counted to another step than the run's. Each must be one ``Error:``
line with every file left as it was. A checkpoint that is legitimately so (a frozen or
unused parameter without state, an optimiser that keeps none) must still resume.
``genzoo eval`` and ``load_model`` read only a checkpoint's weights and position, never
its optimiser state, so these cases concern ``resume`` (and ``compare --resume``,
which resumes through the same code).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from reliability_support import one_thread, run_main, write_fake_mnist  # noqa: F401 - one_thread is a fixture
from rich.console import Console
from test_hostile_runs import END_OF_EPOCH_1, edit_checkpoint
from test_run_files import made, refused, run  # noqa: F401 - fixtures
from torch import nn

from genzoo import GenzooError, Model
from genzoo.checkpoint import FILENAME, load_checkpoint
from genzoo.data import TensorSplit
from genzoo.model import ModelConfig
from genzoo.train_config import TrainConfig
from genzoo.trainer import Trainer
from genzoo.training import start_run

pytestmark = pytest.mark.usefixtures("one_thread")

#: 5 steps into the first epoch, where no metric line names the step statistics yet.
MID_EPOCH_1 = {"epoch": 0, "step": 5, "global_step": 5, "sums": {}, "images": 50, "seconds": 1.0}
BEFORE_THE_FIRST_STEP = {"epoch": 0, "step": 0, "global_step": 0, "sums": {}, "images": 0, "seconds": 0.0}


@pytest.fixture(scope="module")
def others(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished two-epoch run (12 steps an epoch) of the AE and of the GAN, trained once for this file."""
    root = tmp_path_factory.mktemp("others")
    write_fake_mnist(root / "data")
    torch.set_num_threads(1)
    for model, options in {"ae": {"latent": 2, "hidden": 16}, "gan": {"latent": 2}}.items():
        config = TrainConfig(model=model, epochs=2, batch_size=10, seed=3, device="cpu",
                             data_root=str(root / "data"), test_limit=20)
        start_run(config, options, out=root / model)
    return root


def copy_of(others: Path, model: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(others / model, tmp_path / model))


def resumes(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["resume", str(run)], capsys)
    assert code == 0, err


# -- 1: the first epoch's sums must be of exactly the step statistics ----------------------------

FIRST_EPOCH_SUMS = {
    "vae, only some (kl missing)": ("vae", {"nelbo": 300.0, "bce": 280.0}),
    "vae, only the objective": ("vae", {"nelbo": 300.0}),
    "ae, one only evaluation reports (bce)": ("ae", {"loss": 300.0, "bce": 280.0}),
}


@pytest.mark.parametrize("name", list(FIRST_EPOCH_SUMS))
def test_first_epoch_sums_of_other_names_than_a_step_reports_are_refused(name, run, others, tmp_path, capsys):
    """Before: resumed, exit 0: a VAE's train_kl left out of epoch 1's metrics, an AE's train_bce made of
    the edited number alone (its steps report no bce)."""
    model, sums = FIRST_EPOCH_SUMS[name]
    folder = run if model == "vae" else copy_of(others, model, tmp_path)
    edit_checkpoint(folder, lambda s: None, {**MID_EPOCH_1, "sums": sums})
    refused(["resume", str(folder)], folder.parent, capsys, f"{folder / FILENAME}", "holds epoch sums",
            str(sorted(sums)))


@pytest.mark.parametrize("model,sums", [("vae", {"nelbo": 300.0, "bce": 280.0, "kl": 20.0}),
                                        ("ae", {"loss": 300.0})])
def test_first_epoch_sums_of_exactly_the_step_statistics_resume(model, sums, run, others, tmp_path, capsys):
    folder = run if model == "vae" else copy_of(others, model, tmp_path)
    edit_checkpoint(folder, lambda s: None, {**MID_EPOCH_1, "sums": sums})
    resumes(folder, capsys)
    assert load_checkpoint(folder)["position"]["global_step"] == 24


# -- 2, 3: the optimiser state against the run's progress -------------------------------------------


def adam(state: dict[str, Any], name: str = "adam") -> dict[str, Any]:
    return state["optimizers"][name]


def counts(state: dict[str, Any], name: str, steps: int) -> None:
    for entry in adam(state, name)["state"].values():
        entry["step"].fill_(steps)


PROGRESS_CHANGES: dict[str, tuple[str, Callable[[dict[str, Any]], Any], str]] = {
    "vae, Adam's state emptied": ("vae", lambda s: adam(s)["state"].clear(), "no state for parameters"),
    "vae, one parameter's state dropped": ("vae", lambda s: adam(s)["state"].pop(3), "no state for parameters [3]"),
    "vae, one step count other than the run's": ("vae", lambda s: adam(s)["state"][0]["step"].fill_(7),
                                                 "step count 7 of parameter 0, but it has stepped 12 times"),
    "vae, every step count one behind": ("vae", lambda s: counts(s, "adam", 11), "step count 11"),
    "vae, a fractional step count": ("vae", lambda s: adam(s)["state"][2]["step"].fill_(12.5), "step count 12.5"),
    "gan, the generator's state emptied": ("gan", lambda s: adam(s, "generator")["state"].clear(),
                                           "optimiser 'generator': no state after 12 steps"),
    "gan, the discriminator counted as stepped twice a step": (
        "gan", lambda s: counts(s, "discriminator", 24), "step count 24 of parameter 0, but GAN.optimizer_steps says it has stepped 12"),
}


@pytest.mark.parametrize("name", list(PROGRESS_CHANGES))
def test_an_optimiser_state_behind_or_ahead_of_the_run_is_refused(name, run, others, tmp_path, capsys):
    """Before: each resumed, exit 0: Adam restarted its moments (emptied or dropped state) or bias-corrected
    them for another step count, so the finished run differed from an uninterrupted one."""
    model, change, needle = PROGRESS_CHANGES[name]
    folder = run if model == "vae" else copy_of(others, model, tmp_path)
    edit_checkpoint(folder, change, END_OF_EPOCH_1)
    refused(["resume", str(folder)], folder.parent, capsys, f"{folder / FILENAME}", "holds an optimiser state",
            needle)


def test_an_optimiser_state_before_the_first_step_is_refused(run, capsys):
    """Before: a finished run's checkpoint moved back to step 0 retrained from scratch with its trained
    Adam moments and counts, exit 0."""
    edit_checkpoint(run, lambda s: None, BEFORE_THE_FIRST_STEP)
    refused(["resume", str(run)], run.parent, capsys, f"{run / FILENAME}", "before its first step")


def test_a_gan_whose_optimisers_agree_with_its_position_resumes(others, tmp_path, capsys):
    folder = copy_of(others, "gan", tmp_path)
    edit_checkpoint(folder, lambda s: None, END_OF_EPOCH_1)
    resumes(folder, capsys)


# -- parameters that legitimately hold no state ------------------------------------------------


class Partial(Model):
    """A linear map trained by ``optimizer``; a frozen and an unused parameter never get a gradient."""

    optimizer: Callable[[Any], torch.optim.Optimizer] = staticmethod(lambda params: torch.optim.Adam(params))

    def __init__(self, config: ModelConfig, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.frozen = nn.Parameter(torch.ones(1), requires_grad=False)
        self.unused = nn.Parameter(torch.zeros(1))
        self.used = nn.Linear(4, 1)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": type(self).optimizer(self.parameters())}

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": (self.used(x.flatten(1)) * self.frozen).squeeze(1) ** 2}


class TwoSteppers(Partial):
    """Manual optimisation with two optimisers, not saying how often it steps them."""

    automatic_optimization = False

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"weight": torch.optim.Adam([self.used.weight]), "bias": torch.optim.Adam([self.used.bias])}

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        stats = self.loss(x)
        stats["loss"].mean().backward()
        for optimizer in optimizers.values():
            optimizer.step()
        return {key: value.detach() for key, value in stats.items()}


def trained(model_class: type[Model], tmp_path: Path) -> tuple[Trainer, dict[str, Any]]:
    """A fresh two-epoch trainer of ``model_class`` and the checkpoint of its first epoch (2 steps)."""
    images = torch.rand(8, 1, 2, 2, generator=torch.Generator().manual_seed(0))

    def trainer(epochs: int) -> Trainer:
        config = TrainConfig(model="partial", epochs=epochs, batch_size=4, device="cpu")
        model = model_class(ModelConfig(), (1, 2, 2))
        return Trainer(model, TensorSplit(images), TensorSplit(images), config, tmp_path, Console(file=io.StringIO()))

    trainer(1).fit()
    return trainer(2), load_checkpoint(tmp_path)


def entries(state: dict[str, Any], name: str = "opt") -> dict[int, Any]:
    entries: dict[int, Any] = state["optimizers"][name]["state"]
    return entries


def test_frozen_and_unused_parameters_without_state_resume_and_their_state_is_refused(tmp_path):
    trainer, state = trained(Partial, tmp_path)
    assert len(entries(state)) == 2  # the linear map's weight and bias; parameters 0 and 1 have none
    trainer.restore(state)
    assert trainer.position.global_step == 2
    entries(state)[1] = {key: value.clone() for key, value in entries(state)[3].items()}
    with pytest.raises(GenzooError, match=r"state for parameters \[1\], which no step updates"):
        trainer.restore(state)
    del entries(state)[1], entries(state)[3]
    with pytest.raises(GenzooError, match=r"no state for parameters \[3\]"):
        trainer.restore(state)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_an_optimiser_that_keeps_no_state_resumes_without_any(momentum, tmp_path, monkeypatch):
    """SGD without momentum keeps no state, so none is legitimate; with momentum an empty state is refused."""
    monkeypatch.setattr(Partial, "optimizer", staticmethod(lambda p: torch.optim.SGD(p, lr=0.1, momentum=momentum)))
    trainer, state = trained(Partial, tmp_path)
    assert bool(entries(state)) == bool(momentum)
    entries(state).clear()
    if momentum:
        with pytest.raises(GenzooError, match="no state for parameters"):
            trainer.restore(state)
    else:
        trainer.restore(state)
        assert trainer.position.global_step == 2


def test_a_model_that_steps_its_own_optimisers_gets_the_sanity_checks_only(tmp_path):
    """How often such a model steps each optimiser only it knows (unless it says, as the GAN does): its
    counts must be whole numbers >= 1. No state at all is no proof of damage: a model accumulating
    gradients over several steps has none before its first optimiser step."""
    trainer, state = trained(TwoSteppers, tmp_path)
    entries(state, "bias")[0]["step"].fill_(5)  # another count: what a model stepping it 5 times would save
    trainer.restore(state)
    entries(state, "bias")[0]["step"].fill_(2.5)
    with pytest.raises(GenzooError, match="step count 2.5 of parameter 0, but a count is a whole number >= 1"):
        trainer.restore(state)
    entries(state, "bias").clear()
    entries(state, "weight").clear()
    trainer.restore(state)
    assert trainer.position.global_step == 2
