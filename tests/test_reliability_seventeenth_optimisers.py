"""Resume's optimiser-state check against what torch's own optimisers hold (fifteenth hostile pass, F13, F14).

F13: a model that decays its learning rate in its training step wrote checkpoints that no
resume took (``group 0 has lr 0.000165..., this run configures 0.0002``): the check wanted
every hyper-parameter equal to the configured one. F14: NAdam's ``mu_product`` and ASGD's
``eta`` and ``mu`` are scalars by design, and the check wanted each state tensor shaped like
its parameter. Each optimiser torch offers must resume to bit-for-bit the uninterrupted run,
while a checkpoint edited by hand or configured otherwise is still refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from genzoo_plugins.gan.model import GAN
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    Steered,
    assert_one_line_error,
    assert_same_run,
    data_root,
    one_thread,
    run_main,
    snapshot,
)
from test_hostile_third_pass import Partial, entries, trained

from genzoo import GenzooError, hookimpl
from genzoo.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from genzoo.train_config import TrainConfig
from genzoo.trainer import Interrupted
from genzoo.training import resume_run, start_run

STEPS_PER_EPOCH = 12  # 120 fake training images in batches of 10
INTERRUPT_AT = 17  # mid-epoch 2: every optimiser has state and a count to resume from

#: Every optimiser of torch.optim that steps dense parameters, as a model would configure it.
OPTIMISERS: dict[str, Callable[[Any, float], torch.optim.Optimizer]] = {
    "adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "adam-amsgrad": lambda p, lr: torch.optim.Adam(p, lr=lr, amsgrad=True),
    "adamw": lambda p, lr: torch.optim.AdamW(p, lr=lr),
    "adamax": lambda p, lr: torch.optim.Adamax(p, lr=lr),
    "nadam": lambda p, lr: torch.optim.NAdam(p, lr=lr),
    "nadam-decoupled": lambda p, lr: torch.optim.NAdam(p, lr=lr, decoupled_weight_decay=True, weight_decay=0.01),
    "radam": lambda p, lr: torch.optim.RAdam(p, lr=lr),
    "asgd": lambda p, lr: torch.optim.ASGD(p, lr=lr, t0=5),
    "sgd-momentum": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True),
    "adagrad": lambda p, lr: torch.optim.Adagrad(p, lr=lr),
    "adadelta": lambda p, lr: torch.optim.Adadelta(p),
    "rmsprop": lambda p, lr: torch.optim.RMSprop(p, lr=lr, momentum=0.5, centered=True),
    "rprop": lambda p, lr: torch.optim.Rprop(p, lr=lr),
}


class ChosenVAE(Steered, VAE):
    """The built-in VAE stepped by the optimiser the test chooses (``choice``)."""

    choice = "adam"

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizer = OPTIMISERS[self.choice](self.parameters(), self.config.lr)
        optimizer.register_step_post_hook(lambda *_: self.stepped())
        return {self.choice: optimizer}


class LBFGSVAE(Steered, VAE):
    """The VAE stepped by L-BFGS, whose step needs a closure, so the model steps it itself.

    L-BFGS keeps its whole history (flat directions, lists of them, plain numbers) as the
    state of the first parameter alone.
    """

    automatic_optimization = False

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizer = torch.optim.LBFGS(self.parameters(), lr=0.1, max_iter=3, history_size=4)
        optimizer.register_step_post_hook(lambda *_: self.stepped())
        return {"lbfgs": optimizer}

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        optimizer = optimizers["lbfgs"]
        last: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            last.update(self.loss(x))
            objective = last["nelbo"].mean()
            objective.backward()
            return objective

        optimizer.step(closure)
        return last

    def optimizer_steps(self, training_steps: int) -> dict[str, int]:
        return {"lbfgs": training_steps}


class DecayGAN(Steered, GAN):
    """The built-in GAN with an exponential learning-rate decay of 0.1% a step (the report's plugin).

    ``start`` scales the learning rate it configures: another value stands for another
    version of the plugin, whose runs start elsewhere.
    """

    start = 1.0

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = super().configure_optimizers()
        for optimizer in optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] *= self.start
        return optimizers

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        stats = super().training_step(x, optimizers)
        for optimizer in optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] *= 0.999
        return stats


CLASSES: dict[str, type[Steered]] = {"chosen-vae": ChosenVAE, "lbfgs-vae": LBFGSVAE, "decay-gan": DecayGAN}


class Plugin:
    @hookimpl
    def register_models(self, register):
        for name, cls in CLASSES.items():
            register(name, cls)


@pytest.fixture
def models(genzoo_register: Any) -> Any:
    def reset() -> None:
        for cls in CLASSES.values():
            cls.steps, cls.interrupt_at = 0, None
        ChosenVAE.choice, DecayGAN.start = "adam", 1.0

    reset()
    genzoo_register(Plugin(), "optimisers17")
    yield
    reset()


def config(model: str, data_root: Path, **changes: Any) -> TrainConfig:
    values = dict(model=model, epochs=2, batch_size=10, seed=3, device="cpu", data_root=str(data_root),
                  test_limit=20, checkpoint_every=5)
    return TrainConfig(**{**values, **changes})


def options(model: str) -> dict[str, Any]:
    return {"latent": 4} if model == "decay-gan" else {"latent": 2, "hidden": 16}


def interrupted(model: str, data_root: Path, out: Path, **changes: Any) -> Path:
    """A run of ``model`` stopped by Ctrl-C after step :data:`INTERRUPT_AT`; its folder."""
    CLASSES[model].steps, CLASSES[model].interrupt_at = 0, INTERRUPT_AT
    with pytest.raises(Interrupted):
        start_run(config(model, data_root, **changes), options(model), out=out)
    CLASSES[model].steps, CLASSES[model].interrupt_at = 0, None
    assert load_checkpoint(out)["position"]["global_step"] == INTERRUPT_AT
    return out


def resumes_as_uninterrupted(model: str, data_root: Path, tmp_path: Path) -> None:
    start_run(config(model, data_root), options(model), out=tmp_path / "reference")
    run = interrupted(model, data_root, tmp_path / "run")
    resume_run(run)
    assert CLASSES[model].steps == 2 * STEPS_PER_EPOCH - INTERRUPT_AT  # nothing trained twice
    assert_same_run(run, tmp_path / "reference")


@pytest.mark.parametrize("choice", list(OPTIMISERS))
def test_every_torch_optimiser_resumes_to_the_uninterrupted_run(models, data_root, tmp_path, choice):
    """Before: NAdam (``'mu_product' of parameter 0 has shape (), not (16, 784)``) and ASGD (``'eta'``) were
    refused on every resume."""
    ChosenVAE.choice = choice
    resumes_as_uninterrupted("chosen-vae", data_root, tmp_path)


def test_lbfgs_stepped_by_its_model_resumes_to_the_uninterrupted_run(models, data_root, tmp_path):
    """Before: ``'func_evals' of parameter 0 is 51, not a tensor`` (its history: numbers, lists, flat tensors)."""
    resumes_as_uninterrupted("lbfgs-vae", data_root, tmp_path)


def test_a_model_that_decays_its_learning_rate_resumes_as_trained(models, data_root, tmp_path):
    """Before: ``group 0 has lr 0.0001966..., this run configures 0.0002; it is damaged or not from this run``."""
    resumes_as_uninterrupted("decay-gan", data_root, tmp_path)
    lr = load_checkpoint(tmp_path / "run")["optimizers"]["generator"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(2e-4 * 0.999 ** (2 * STEPS_PER_EPOCH))


def refused(run: Path, capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    before = snapshot(run)
    code, _, err = run_main(["resume", str(run)], capsys)
    assert_one_line_error(code, err, f"{run / FILENAME} holds an optimiser state that does not fit this run",
                          *needles)
    assert snapshot(run) == before


def edited(run: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    state = load_checkpoint(run)
    change(state)
    save_checkpoint(run / FILENAME, state)
    return run


def test_a_decaying_model_configured_otherwise_than_its_checkpoint_is_refused(models, data_root, tmp_path, capsys):
    """The learning rate the model changes may differ from the configured one, but the run it starts from
    may not: another version of the plugin (starting at twice the rate) is refused, as is a changed rate
    that is no number, one the checkpoint does not say the model changed, or a record that is no record."""
    run = interrupted("decay-gan", data_root, tmp_path / "run")
    copies = [Path(shutil.copytree(run, tmp_path / f"copy{i}")) for i in range(3)]
    DecayGAN.start = 2.0
    refused(run, capsys, "'discriminator': group 0 was configured with lr 0.0002, this run configures 0.0004")
    DecayGAN.start = 1.0

    def lr_a_string(state: dict[str, Any]) -> None:
        state["optimizers"]["generator"]["param_groups"][0]["lr"] = "0.0002"

    refused(edited(copies[0], lr_a_string), capsys, "'generator': group 0 has lr '0.0002', which its model "
                                                    "changed from 0.0002 while training, but not to a finite number")

    def forgotten(state: dict[str, Any]) -> None:  # what a checkpoint of genzoo before the record holds
        del state["changed_hyperparameters"]

    refused(edited(copies[1], forgotten), capsys, "'discriminator': group 0 has lr 0.00019")

    def no_record(state: dict[str, Any]) -> None:
        state["changed_hyperparameters"]["generator"] = {"lr": 0.0002}

    refused(edited(copies[2], no_record), capsys, "'generator': its record of the settings the model changed is "
                                                  "{'lr': 0.0002}, not one mapping of this run's settings per")


def test_hyperparameters_the_model_never_changed_must_be_as_configured(models, data_root, tmp_path, capsys):
    """The record of what the model changed does not let other settings through: the GAN's betas edited."""
    run = interrupted("decay-gan", data_root, tmp_path / "run")

    def betas(state: dict[str, Any]) -> None:
        state["optimizers"]["generator"]["param_groups"][0]["betas"] = (0.9, 0.999)

    refused(edited(run, betas), capsys, "'generator': group 0 has betas (0.9, 0.999), this run configures (0.5, 0.999)")


SCALAR_EDITS: dict[str, tuple[str, Callable[[dict[str, Any]], Any], str]] = {
    "nadam's mu_product shaped like the parameter": (
        "nadam", lambda e: e.update(mu_product=torch.ones(16, 784)), "'mu_product' of parameter 0 has shape (16, 784), not ()"),
    "asgd's ax a scalar": ("asgd", lambda e: e.update(ax=torch.tensor(0.0)), "'ax' of parameter 0 has shape (), not (16, 784)"),
    "asgd's eta infinite": ("asgd", lambda e: e.update(eta=torch.tensor(float("inf"))),
                            "'eta' of parameter 0 has NaN or infinite values"),
    "adam's exp_avg a scalar": ("adam", lambda e: e.update(exp_avg=torch.tensor(0.0)),
                                "'exp_avg' of parameter 0 has shape (), not (16, 784)"),
}


@pytest.mark.parametrize("name", list(SCALAR_EDITS))
def test_state_of_another_shape_than_the_optimiser_keeps_is_still_refused(models, data_root, tmp_path, capsys, name):
    """Which fields are scalars and which are shaped like their parameter, a step of the same optimiser on a
    scratch parameter tells: a scalar moment (a traceback at the first step) is refused as before."""
    choice, change, needle = SCALAR_EDITS[name]
    ChosenVAE.choice = choice
    run = interrupted("chosen-vae", data_root, tmp_path / "run", fused=False)  # no warning line before the error
    assert tuple(load_checkpoint(run)["model_state"]["encoder.0.weight"].shape) == (16, 784)  # parameter 0
    refused(edited(run, lambda s: change(s["optimizers"][choice]["state"][0])), capsys, needle)


def test_adagrad_with_a_frozen_parameter_resumes(monkeypatch, tmp_path):
    """torch's Adagrad gives every parameter state when it is built, a frozen or unused one too, and no step
    updates those. Before: ``after 2 steps, state for parameters [0, 1], which no step updates``."""
    monkeypatch.setattr(Partial, "optimizer", staticmethod(lambda p: torch.optim.Adagrad(p, lr=0.1)))
    trainer, state = trained(Partial, tmp_path)
    assert len(entries(state)) == 4
    trainer.restore(state)
    assert trainer.position.global_step == 2
    entries(state)[0]["sum"] = torch.zeros(3)
    with pytest.raises(GenzooError, match=r"'sum' of parameter 0 has shape \(3,\), not \(1,\)"):
        trainer.restore(state)
