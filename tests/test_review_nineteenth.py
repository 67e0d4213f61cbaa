"""The review of the fixes of the seventeenth look (docs/reliability.md, "Found by the seventeenth look").

1: a loss that was NaN at the run's first step was reported as optimiser state no resume takes (its NaN
moments), not as the divergence it is. 2: the first-step check of optimiser state took values a weights-only
load refuses (a ``str`` enum member, numpy's float64, a namedtuple, a defaultdict): F9's lost work again.
3: the first-step refusals did not say that the run folder holds its config.json alone. 4: a model's
config and a checkpoint's identity were compared by two copies of one rule. 5: a resume that found no metric
line to hold its steps' names to said they differed from "the run's first step". Each test failed before its
fix.
"""

from __future__ import annotations

import collections
import enum
import io
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
)
from test_reliability_fifteenth_models import CountGAN, CriticGAN
from test_reliability_nineteenth_keys import ChangingVAE
from test_reliability_nineteenth_state import LateWarmVAE, StepWarmVAE
from test_reliability_writes import Fragile, train_fragile

from genzoo import GenzooError, hookimpl
from genzoo.checkpoint import FILENAME, UnfitOptimizerState, check_optimizer_state, load_weights_only
from genzoo.model import config_changes
from genzoo.run_folder import METRICS

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2"]
VAE_OPTIONS = ["--hidden", "16", "--no-fused"]


class NaNFirst(Fragile):
    bad_step = 1
    breaks = "loss"


class MomentsFirst(Fragile):
    bad_step = 1
    breaks = "moments"


class StrMode(str, enum.Enum):
    SIGN = "sign"


Pair = collections.namedtuple("Pair", "count scale")

#: What an optimiser keeps, no weights-only checkpoint holds, and the check's line shows; the plain value it stands
#: for, which a checkpoint does hold.
KEPT: dict[str, tuple[Any, Any, str]] = {
    "strenum": (StrMode.SIGN, "sign", "<StrMode.SIGN: 'sign'>, a StrMode: a subclass of str"),
    "float64": (np.float64(0.5), 0.5, "np.float64(0.5), a float64: a subclass of float"),
    "namedtuple": (Pair(1, 0.5), (1, 0.5), "Pair(count=1, scale=0.5), a Pair: a subclass of tuple"),
    "defaultdict": (collections.defaultdict(int, {"a": 1}), {"a": 1},
                    "defaultdict(<class 'int'>, {'a': 1}), a defaultdict: a subclass of dict"),
}


class KeepingSGD(torch.optim.Optimizer):
    """Steps by the gradient's sign, keeping ``kept`` in each parameter's state; with ``numpy_lr``, it sets its
    learning rate through numpy (a schedule computed with ``np.cos``) as it steps."""

    kept: Any = "sign"
    numpy_lr = False

    def __init__(self, params: Any, lr: float = 1e-3) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            if self.numpy_lr:
                group["lr"] = np.float64(group["lr"]) * np.cos(0.0)
            for p in group["params"]:
                if p.grad is not None:
                    self.state[p].setdefault("kept", self.kept)
                    p.add_(p.grad.sign(), alpha=-group["lr"])


class KeepingVAE(VAE):
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"keeping": KeepingSGD(self.parameters(), lr=self.config.lr)}


@hookimpl
def register_models(register: Any) -> None:
    register("nan-first", NaNFirst)
    register("moments-first", MomentsFirst)
    register("keeping-r19", KeepingVAE)
    register("stepwarm-r19", StepWarmVAE)
    register("latewarm-r19", LateWarmVAE)
    register("criticgan-r19", CriticGAN)
    register("countgan-r19", CountGAN)
    register("changing-r19", ChangingVAE)


@pytest.fixture
def models(genzoo_register: Any) -> Any:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "review19", "test-review19")
    yield
    ChangingVAE.mode, ChangingVAE.at = "", 0


def train(model: str, out: Path, data_root: Path, capsys: pytest.CaptureFixture, *extra: str) -> tuple[int, str]:
    options = [*TINY, *(VAE_OPTIONS if "gan" not in model else [])]
    code, _, err = run_main(["train", model, "--data-root", str(data_root), *options, *extra, "--out", str(out)],
                            capsys)
    return code, err


def config_alone(out: Path) -> str:
    """What a refusal before any checkpoint says the run folder ``out`` holds."""
    return (f"; no checkpoint had been written yet, so {out} (its config.json alone) cannot be resumed: once the "
            "model is mended, train again into another folder")


# -- 1: a NaN at the first step is a divergence --------------------------------------------------------------


@pytest.mark.parametrize(("model", "broken"), [("nan-first", "loss"), ("moments-first", "optimiser state ('adam')")])
def test_a_first_step_that_goes_non_finite_is_a_divergence(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, model: str, broken: str) -> None:
    """Before: ``NaNFirst's optimiser 'adam' holds, after the run's first step, what no resume would take ('exp_avg'
    of parameter 0 has NaN or infinite values) ...`` (``'exp_avg_sq'`` for the moments)."""
    code, _, err = train_fragile(model, data_root, tmp_path / "run", capsys)
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"Error: training diverged: non-finite {broken} at epoch 1, step 1; no checkpoint had been written yet")


# -- 2: exactly the plain types a weights-only load takes ------------------------------------------------------


def stepped(kept: Any) -> torch.optim.Optimizer:
    """A KeepingSGD stepped once, keeping ``kept``."""
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = KeepingSGD([param])
    optimizer.kept = kept
    param.grad = torch.ones(3)
    optimizer.step()
    return optimizer


@pytest.mark.parametrize("case", KEPT)
def test_the_state_check_takes_what_the_projects_weights_only_loader_takes(case: str) -> None:
    """The check and genzoo's loader agree: each subclass is refused by both, its plain value taken by both.
    Before: the check took every subclass, and every checkpoint was refused by the loader."""
    refused, plain, _ = KEPT[case]
    for kept, loads in ((refused, False), (plain, True)):
        optimizer = stepped(kept)
        buffer = io.BytesIO()
        torch.save(optimizer.state_dict(), buffer)
        buffer.seek(0)
        if loads:
            load_weights_only(buffer, Path("checkpoint.pt"), "a checkpoint")
            check_optimizer_state("keeping", optimizer.state_dict(), optimizer, Path("checkpoint.pt"), steps=1)
        else:
            with pytest.raises(GenzooError, match="rejected it|asks for"):
                load_weights_only(buffer, Path("checkpoint.pt"), "a checkpoint")
            with pytest.raises(UnfitOptimizerState):
                check_optimizer_state("keeping", optimizer.state_dict(), optimizer, Path("checkpoint.pt"), steps=1)


@pytest.mark.parametrize("case", [*KEPT, "numpy-lr"])
def test_optimiser_state_no_checkpoint_can_hold_is_one_line_after_the_first_step(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """Before: trained to the end, exit 0, and every resume (eval, sample, export) refused the run: ``refusing to
    load RUN/checkpoint.pt: it asks for ... while being loaded``. The line says what the folder holds (3)."""
    if case == "numpy-lr":
        monkeypatch.setattr(KeepingSGD, "numpy_lr", True)
        said = "group 0's lr is np.float64(0.001), a float64: a subclass of float"
    else:
        monkeypatch.setattr(KeepingSGD, "kept", KEPT[case][0])
        said = f"'kept' of parameter 0 is {KEPT[case][2]}"
    out = tmp_path / "out"
    code, err = train("keeping-r19", out, data_root, capsys)
    assert_one_line_error(code, err, "KeepingVAE's optimiser 'keeping' holds, after the run's first step, what no "
                                     f"resume would take ({said}", config_alone(out))
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


# -- 3: the first step's refusals say what the run folder holds ----------------------------------------------


@pytest.mark.parametrize(("model", "said"), [
    ("stepwarm-r19", "StepWarmVAE changed its config in its first training step (kl_weight 0.0 -> 0.05)"),
    ("criticgan-r19", "CriticGAN.optimizer_steps(1) says {'discriminator': 5, 'generator': 1}, but "
                      "CriticGAN.training_step stepped {'discriminator': 1, 'generator': 1} in the first step"),
    ("countgan-r19", "CountGAN.optimizer_steps(1) returned 1, not None or a dict of step counts"),
])
def test_a_refusal_at_the_first_step_says_the_folder_holds_its_config_alone(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, model: str, said: str) -> None:
    """Before: the refusal alone, as though the folder could be resumed."""
    out = tmp_path / "out"
    code, err = train(model, out, data_root, capsys)
    line = assert_one_line_error(code, err, said)
    assert line.endswith(config_alone(out)), line
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_a_config_changed_later_says_how_the_run_resumes(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Refused before epoch 2's checkpoint: the line says how to go on. Before: the checkpoint named, no resume."""
    out = tmp_path / "out"
    code, err = train("latewarm-r19", out, data_root, capsys, "--epochs", "2")
    kept = (f"the last good checkpoint is kept at {out / FILENAME}, and what followed it is trained again once "
            f"the model is mended: resume with: genzoo resume {out}")
    assert_one_line_error(code, err.splitlines()[-1], "LateWarmVAE changed its config while training (kl_weight "
                                                      "0.0 -> 0.5)", kept)


# -- 4: one rule for a changed config and a checkpoint's identity -------------------------------------------------


def test_a_config_value_turned_into_a_tensor_of_the_same_value_is_a_change() -> None:
    """A one-element tensor compares truthfully with a list of its value: before, ``config_changes`` took the
    field as unchanged, where a checkpoint's identity check (a tensor is never equal) refused it."""
    built = VAE.Config(latent=2)
    changed = VAE.Config(latent=2)
    changed.latent = torch.tensor([2])  # type: ignore[assignment]
    assert config_changes(built, changed) == ["latent 2 -> tensor([2])"]
    assert config_changes(built, VAE.Config(latent=2)) == []


# -- 5: a resume with no names to go by says what it compared with -----------------------------------------------


def test_a_resume_with_no_metric_line_names_the_step_its_names_came_from(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: ``... at step 2 of epoch 2, but ['bce', 'kl', 'nelbo'] at the run's first step``, though the run's
    first step was not looked at: its metric lines were gone."""
    out = tmp_path / "out"
    monkeypatch.setattr(ChangingVAE, "mode", "raise")
    monkeypatch.setattr(ChangingVAE, "at", 3)  # the first step of epoch 2: epoch 1's checkpoint is kept
    code, err = train("changing-r19", out, data_root, capsys, "--epochs", "2")
    assert code == 1 and "ChangingVAE.loss raised KeyError: 'oops'" in err, err
    (out / METRICS).unlink()
    monkeypatch.setattr(ChangingVAE, "mode", "add")
    monkeypatch.setattr(ChangingVAE, "at", 4)  # its count is in the checkpoint (2 after epoch 1): the second step
    code, _, err = run_main(["resume", str(out)], capsys)
    assert_one_line_error(code, err.strip().splitlines()[-1],
                          "ChangingVAE.loss returned ['bce', 'extra', 'kl', 'nelbo'] at step 2 of epoch 2, but "
                          "['bce', 'kl', 'nelbo'] at step 1 of epoch 2, the first this resume trained")
