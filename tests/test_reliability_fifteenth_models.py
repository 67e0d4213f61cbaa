"""Found by the fifteenth look (thirteenth hostile pass, F6 to F9): honest mistakes in a model's training contract.

F6: ``optimizer_steps`` that disagrees with ``training_step`` (a WGAN template's five critic steps)
trained, then every resume refused the intact checkpoint as damaged. F7: an ``after_training`` that
raises was a traceback. F8: ``check_training_split`` without ``@classmethod`` or ``min_batch_size =
None`` were tracebacks. F9: ``automatic_optimization = False`` without a ``training_step`` was a bare
NotImplementedError, and it, ``objective_reduction = 'avg'`` and a ``configure_optimizers`` that is no
dict each left a run folder holding only ``config.json``. Each test failed before its fix
(docs/reliability.md, "Found by the fourteenth look").
"""

from __future__ import annotations

import io
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.gan.model import GAN
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
)
from rich.console import Console

from genzoo import GenzooError, hookimpl
from genzoo.checkpoint import load_checkpoint
from genzoo.data import TensorSplit
from genzoo.model import Model
from genzoo.plugin_registry import registry
from genzoo.train_config import TrainConfig
from genzoo.trainer import Trainer

SHAPE = (1, 28, 28)
TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu"]


class CriticGAN(GAN):
    """A WGAN template's optimizer_steps on GAN's training_step, which steps each optimiser once."""

    def optimizer_steps(self, training_steps: int) -> dict[str, int]:
        return {"discriminator": 5 * training_steps, "generator": training_steps}


class CountGAN(GAN):
    """optimizer_steps giving one count for all optimisers: resume's ``steps.get`` was an AttributeError traceback."""

    def optimizer_steps(self, training_steps: int) -> Any:
        return training_steps


class AfterSplitVAE(VAE):
    def after_training(self, train: Any) -> None:
        raise ValueError("bad split")


class CheckSplitVAE(VAE):
    def check_training_split(self, config: Any, images: int, batch_size: int) -> None:  # type: ignore[override]
        return None


class MinBatchNoneVAE(VAE):
    min_batch_size = None  # type: ignore[assignment]


class ManualNoStepVAE(VAE):
    automatic_optimization = False


class NoLossVAE(VAE):
    """Its author named the objective ``compute_loss``, as another framework does; ``loss`` is the base's."""
    loss = Model.loss  # type: ignore[assignment]


class RedAvgVAE(VAE):
    objective_reduction = "avg"


class BareAdamVAE(VAE):
    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


@hookimpl
def register_models(register: Any) -> None:
    register("criticgan", CriticGAN)
    register("countgan", CountGAN)
    register("aftersplit", AfterSplitVAE)
    register("checksplit", CheckSplitVAE)
    register("minbatchnone", MinBatchNoneVAE)
    register("manualnostep", ManualNoStepVAE)
    register("redavg", RedAvgVAE)
    register("noloss", NoLossVAE)
    register("bareadam15", BareAdamVAE)


@pytest.fixture
def mistakes(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "fifteenth", "test-fifteenth")


def small(model: str) -> list[str]:
    return ["--latent", "2"] + (["--hidden", "16"] if "gan" not in model else [])


def test_optimizer_steps_that_disagree_with_the_step_are_refused_before_a_checkpoint(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    code, _, err = run_main(["train", "criticgan", "--data-root", str(data_root), *TINY, "--checkpoint-every", "1",
                             "--out", str(run)], capsys)
    assert_one_line_error(code, err, "CriticGAN.optimizer_steps(1) says", "'discriminator': 5",
                          "stepped {'discriminator': 1, 'generator': 1}")
    assert not (run / "checkpoint.pt").exists()


def test_optimizer_steps_that_is_no_dict_of_counts_is_one_line_at_the_first_step(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    code, _, err = run_main(["train", "countgan", "--data-root", str(data_root), *TINY, "--latent", "2",
                             "--out", str(run)], capsys)
    assert_one_line_error(code, err, "CountGAN.optimizer_steps(1) returned 1, not None or a dict of step counts")
    assert not (run / "checkpoint.pt").exists()


def test_resume_blames_optimizer_steps_as_well_as_the_checkpoint(mistakes: None, data_root: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    code, _, err = run_main(["train", "gan", "--data-root", str(data_root), *TINY, "--latent", "2",
                             "--out", str(run)], capsys)
    assert code == 0, err
    state = load_checkpoint(run / "checkpoint.pt")
    model = registry().build_model("criticgan", SHAPE, latent=2)
    images = TensorSplit(torch.rand(40, *SHAPE))
    config = TrainConfig(model="criticgan", epochs=1, batch_size=20, device="cpu")
    trainer = Trainer(model, images, images, config, tmp_path / "other", Console(file=io.StringIO()))
    with pytest.raises(GenzooError, match=r"step count 2 of parameter 0, but CriticGAN.optimizer_steps says it has "
                                          r"stepped 10 times\); either it is damaged or not from this run, or "
                                          r"CriticGAN.optimizer_steps does not count"):
        trainer.restore(state, run / "checkpoint.pt")


@pytest.mark.parametrize(("epochs", "kept"), [(1, "no checkpoint had been written yet"),
                                              (2, "resume with: genzoo resume ")])
def test_after_training_that_raises_is_one_line_saying_what_the_run_holds(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, epochs: int,
        kept: str, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    code, _, err = run_main(["train", "aftersplit", "--data-root", str(data_root), *TINY, "--epochs", str(epochs),
                             *small("aftersplit"), "--out", str(run)], capsys)
    *epoch_lines, last = err.strip().splitlines()  # the epochs before the last print their lines
    assert len(epoch_lines) == epochs - 1 and all(line.startswith("epoch ") for line in epoch_lines), err
    assert_one_line_error(code, last, "AfterSplitVAE.after_training raised ValueError: bad split", kept)
    assert (run / "checkpoint.pt").exists() == (epochs > 1)
    if epochs > 1:  # as the line says: mended, the run resumes and finishes
        monkeypatch.setattr(AfterSplitVAE, "after_training", lambda self, train: None)
        code, _, err = run_main(["resume", str(run)], capsys)
        assert code == 0, err


@pytest.mark.parametrize(("model", "says"), [
    ("checksplit", "CheckSplitVAE.check_training_split must be a @classmethod"),
    ("minbatchnone", "MinBatchNoneVAE.min_batch_size must be a positive integer, got None"),
    ("manualnostep", "ManualNoStepVAE sets automatic_optimization = False but does not override training_step"),
    ("redavg", "RedAvgVAE.objective_reduction is 'avg': the trainer reduces a model's per-image objective by "
               "'mean' or 'sum'"),
    ("noloss", "NoLossVAE optimises automatically but does not override loss"),
    ("bareadam15", "BareAdamVAE.configure_optimizers returned Adam ("),
])
def test_model_mistakes_seen_without_training_are_refused_before_the_run_folder(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, model: str, says: str) -> None:
    run = tmp_path / "run"
    code, _, err = run_main(["train", model, "--data-root", str(data_root), *TINY, *small(model),
                             "--out", str(run)], capsys)
    assert_one_line_error(code, err, says)
    assert not run.exists()


def test_compare_refuses_a_model_that_cannot_step_before_its_folder(mistakes: None, data_root: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cmp"
    code, _, err = run_main(["compare", "vae", "manualnostep", "--data-root", str(data_root), *TINY,
                             "--fid-samples", "0", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "ManualNoStepVAE sets automatic_optimization = False")
    assert not out.exists()


def test_the_nproc_launcher_refuses_a_model_that_cannot_step_before_its_folder(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    code, _, err = run_main(["train", "redavg", "--data-root", str(data_root), *TINY, *small("redavg"), "--nproc", "2",
                             "--out", str(run)], capsys)
    assert_one_line_error(code, err, "RedAvgVAE.objective_reduction is 'avg': the trainer reduces")
    assert not run.exists()
