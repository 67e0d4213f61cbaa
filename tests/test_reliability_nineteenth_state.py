"""Found by the seventeenth look (sixteenth hostile pass, F2, F8, F9): state that escaped the state check, and
optimiser state that no resume took.

F2: a non-persistent buffer that training changes and only ``sample`` reads passed the state check, which
compared only ``loss`` and ``evaluate`` after a training pass: ``genzoo sample`` drew another model than the
run's ``samples.png``. F8: a KL warm-up weight kept in the model's own config passed every check; every load
builds the model from the config it was built with, so a resumed run differed from an uninterrupted one. F9: an
optimiser of the model's own keeping a mode name in its state trained, and every resume refused its checkpoints.
Each test failed before its fix (docs/reliability.md, "Found by the seventeenth look").
"""

from __future__ import annotations

import dataclasses
import enum
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.config import VAEConfig
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    Steered,
    assert_one_line_error,
    assert_same_run,
    data_root,
    one_thread,
    run_main,
)

from genzoo import hookimpl
from genzoo.checkpoint import FILENAME, load_checkpoint
from genzoo.train_config import TrainConfig
from genzoo.trainer import Interrupted
from genzoo.training import resume_run, start_run

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--no-fused", "--latent", "2", "--hidden", "16"]
STEPS_PER_EPOCH = 12  # 120 fake training images in batches of 10
INTERRUPT_AT = 17  # mid-epoch 2, after the checkpoint of step 15


class ZMeanVAE(VAE):
    """Samples around a running mean of its codes, kept in a non-persistent buffer that training changes (F2)."""

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.register_buffer("zmean", torch.zeros(config.latent), persistent=False)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            with torch.no_grad():
                self.zmean.mul_(0.5).add_(0.5 * self.posterior(x).mu.mean(0) + 3.0)
        return super().loss(x)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.decode(torch.randn(n, self.config.latent, device=self.device) + self.zmean)


@dataclasses.dataclass
class WarmConfig(VAEConfig):
    kl_weight: float = dataclasses.field(default=0.0, metadata={"help": "KL weight; warms up to 1 while training."})


class KLWarmVAE(VAE):
    """Warms its KL weight up in its config, in each training forward pass with gradients (F8, the report's)."""

    Config = WarmConfig
    loss_names = ("objective", "bce", "kl")

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().loss(x)
        if self.training and torch.is_grad_enabled():
            self.config.kl_weight = min(1.0, self.config.kl_weight + 0.05)
        return {"objective": out["bce"] + self.config.kl_weight * out["kl"], "bce": out["bce"], "kl": out["kl"]}


class StepWarmVAE(VAE):
    """The same warm-up in its config, in its own training step, which no check before the run folder takes."""

    Config = WarmConfig
    automatic_optimization = False

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        (optimizer,) = optimizers.values()
        optimizer.zero_grad(set_to_none=True)
        out = self.loss(x)
        (out["bce"] + self.config.kl_weight * out["kl"]).mean().backward()
        optimizer.step()
        self.config.kl_weight = min(1.0, self.config.kl_weight + 0.05)
        return out


class LateWarmVAE(VAE):
    """Counts its training steps in a buffer (state a checkpoint holds) and turns its KL weight up, in its config,
    from the third: after the run's first step and its first checkpoint."""

    Config = WarmConfig

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training and torch.is_grad_enabled():
            self.steps += 1
            if self.steps >= 3:
                self.config.kl_weight = 0.5
        out = super().loss(x)
        return {**out, "nelbo": out["bce"] + self.config.kl_weight * out["kl"]}


class Mode(enum.Enum):
    SIGN = "sign"


class SignSGD(torch.optim.Optimizer):
    """Steps by the sign of the gradient, naming its mode in its state (the report's)."""

    mode: Any = "sign"

    def __init__(self, params: Any, lr: float = 1e-3) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "mode" not in state:
                    state["mode"], state["count"] = self.mode, 0
                state["count"] += 1
                p.add_(p.grad.sign(), alpha=-group["lr"])


class EnumSignSGD(SignSGD):
    """The same, its mode an enum member: a weights-only checkpoint cannot hold it, so no load could read one."""

    mode = Mode.SIGN


class SignVAE(Steered, VAE):
    """The VAE stepped by its own SignSGD, whose state holds a mode name, a str (F9)."""

    optimizer: type[SignSGD] = SignSGD

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizer = self.optimizer(self.parameters(), lr=self.config.lr)
        optimizer.register_step_post_hook(lambda *_: self.stepped())
        return {"signsgd": optimizer}


class EnumSignVAE(SignVAE):
    optimizer = EnumSignSGD


@hookimpl
def register_models(register: Any) -> None:
    register("zmean19", ZMeanVAE)
    register("klwarm19", KLWarmVAE)
    register("stepwarm19", StepWarmVAE)
    register("latewarm19", LateWarmVAE)
    register("signvae19", SignVAE)
    register("enumsign19", EnumSignVAE)


@pytest.fixture
def models(genzoo_register: Any) -> Any:
    def reset() -> None:  # the steered models count their steps in class attributes
        for cls in (SignVAE, EnumSignVAE):
            cls.steps, cls.interrupt_at = 0, None

    reset()
    genzoo_register(types.SimpleNamespace(register_models=register_models), "nineteenth", "test-nineteenth")
    yield
    reset()


def train(model: str, out: Path, data_root: Path, capsys: pytest.CaptureFixture, command: str = "train",
          ) -> tuple[int, str]:
    """``genzoo train MODEL`` (or ``compare MODEL``) with tiny options into ``out``: its exit status and stderr."""
    if command == "compare":  # compare sets a model's options with --set
        args = ["compare", model, "--fid-samples", "0", "--data-root", str(data_root), *TINY[:-4]]
    else:
        args = ["train", model, "--data-root", str(data_root), *TINY]
    code, _, err = run_main([*args, "--out", str(out)], capsys)
    return code, err


def test_a_buffer_that_training_changes_and_only_sample_reads_is_refused_before_the_run_folder(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: trained, exit 0, and ``genzoo sample`` drew about 38/255 a pixel away from ``samples.png``."""
    out = tmp_path / "out"
    code, err = train("zmean19", out, data_root, capsys)
    assert_one_line_error(code, err, "ZMeanVAE computes with state its state_dict does not hold: a ZMeanVAE that "
                                     "has run a training forward pass and a fresh ZMeanVAE given its state_dict "
                                     "compute sample differently", "register_buffer (persistent)")
    assert not out.exists()


@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_model_keeping_training_state_in_its_config_is_refused_before_the_run_folder(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str) -> None:
    """Before: trained, exit 0; a resumed run differed from an uninterrupted one, every load used weight 0.0.
    The warm-up happens only with gradients, as in the trainer's steps: the check's pass has them."""
    out = tmp_path / "out"
    code, err = train("klwarm19", out, data_root, capsys, command)
    assert_one_line_error(code, err, "KLWarmVAE changed its config as it computed (a training forward pass, then "
                                     "each of its methods once) (kl_weight 0.0 -> 0.05)",
                          "config.json and every checkpoint keep the config it was built with",
                          "register_buffer, nn.Parameter, or get_extra_state")
    assert not out.exists()


def test_a_config_changed_in_a_models_own_training_step_is_refused_before_any_checkpoint(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The check before the run folder takes no step: the trainer looks after the first, before any checkpoint
    (the folder holds its config.json alone, as when the first step fails). Before: trained, exit 0."""
    out = tmp_path / "out"
    code, err = train("stepwarm19", out, data_root, capsys)
    assert_one_line_error(code, err, "StepWarmVAE changed its config in its first training step "
                                     "(kl_weight 0.0 -> 0.05)", "never in its config")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_a_config_changed_later_in_training_is_refused_before_the_next_checkpoint(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Changed in step 3 of 4: the checkpoint of epoch 1 (step 2) is kept, and none of the changed config is
    written. Before: trained, exit 0."""
    out, options = tmp_path / "out", list(TINY)
    options[options.index("--epochs") + 1] = "2"
    code, _, err = run_main(["train", "latewarm19", "--data-root", str(data_root), *options, "--out", str(out)],
                            capsys)
    assert_one_line_error(code, err.splitlines()[-1], "LateWarmVAE changed its config while training (kl_weight "
                                                      "0.0 -> 0.5): config.json",
                          f"; the last good checkpoint is kept at {out / FILENAME}")
    assert load_checkpoint(out)["position"]["epoch"] == 1


def config(data_root: Path) -> TrainConfig:
    return TrainConfig(model="signvae19", epochs=2, batch_size=10, seed=3, device="cpu", data_root=str(data_root),
                       test_limit=20, checkpoint_every=5)


def test_an_optimiser_keeping_a_mode_name_in_its_state_resumes_to_the_uninterrupted_run(
        models: None, data_root: Path, tmp_path: Path) -> None:
    """Before: ``holds an optimiser state that does not fit this run (optimiser 'signsgd': 'mode' of parameter 0
    is 'sign', not a tensor); it is damaged or not from this run``, on every resume."""
    options = {"latent": 2, "hidden": 16}
    start_run(config(data_root), options, out=tmp_path / "reference")
    SignVAE.steps, SignVAE.interrupt_at = 0, INTERRUPT_AT
    with pytest.raises(Interrupted):
        start_run(config(data_root), options, out=tmp_path / "run")
    SignVAE.steps, SignVAE.interrupt_at = 0, None
    assert load_checkpoint(tmp_path / "run")["optimizers"]["signsgd"]["state"][0] == {"mode": "sign",
                                                                                       "count": INTERRUPT_AT}
    resume_run(tmp_path / "run")
    assert SignVAE.steps == 2 * STEPS_PER_EPOCH - INTERRUPT_AT  # nothing trained twice
    assert_same_run(tmp_path / "run", tmp_path / "reference")


def test_an_optimiser_keeping_what_no_checkpoint_can_hold_is_stopped_at_its_first_step(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An enum member in optimiser state: a weights-only load refuses it, so no command could read a checkpoint.
    Before: trained to the end, exit 0, every resume (and eval, sample, export) refused the run."""
    out = tmp_path / "out"
    code, err = train("enumsign19", out, data_root, capsys)
    assert_one_line_error(code, err, "EnumSignVAE's optimiser 'signsgd' holds, after the run's first step, what no "
                                     "resume would take ('mode' of parameter 0 is <Mode.SIGN: 'sign'>, a Mode: "
                                     "neither a tensor nor a plain value", "every checkpoint of the run would be "
                                                                           "refused")
    assert not (out / FILENAME).exists()
