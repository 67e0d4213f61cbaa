"""Found by the twenty-first look (eighteenth hostile pass, F1, F2, F8): logger calls and non-real values.

F1: a logger drawing from torch's global random stream in ``log_epoch`` (a random subset of the samples to
upload) moved the run's stream after the epoch's checkpoint had saved it: a run killed there and resumed differed
from the uninterrupted one, exit 0. F2: a logger that changed torch's grad mode or default dtype was never caught:
the next epoch's step blamed the model's ``loss``, or the end of training genzoo's own ``model`` sampler. Each
logger call now runs under a fork of the random streams a checkpoint holds, and one that changes torch's defaults
is put back and dropped with one warning. F8: complex per-image values from ``loss`` or ``evaluate`` were written
as their real part with torch's raw warning; ``trainer.per_image`` refuses them in one line. Each test failed
before its fix (docs/reliability.md, "Found by the twenty-first look").
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root, one_thread and torch_defaults are fixtures
    assert_one_line_error,
    assert_same_run,
    data_root,
    one_thread,
    run_main,
    torch_defaults,
)
from test_reliability_resume import config

from genzoo import Logger, hookimpl
from genzoo.run_folder import read_metrics
from genzoo.training import resume_run, start_run

TINY = ["--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu", "--latent", "2",
        "--hidden", "16"]
OPTIONS = {"latent": 2, "hidden": 16}


# -- F1: a logger drawing from torch's global random stream ------------------------------------------


class Killed(KeyboardInterrupt):
    """Stands in for the SIGKILL of the report: the process ends in ``log_epoch``, after the epoch's checkpoint."""


class RandomSubsetLogger(Logger):
    """Uploads a random subset of each epoch's samples (the report's); at ``kill_at`` the process "dies"."""

    kill_at: int | None = None

    def log_epoch(self, record: dict[str, Any], samples: torch.Tensor | None) -> None:
        torch.randperm(64)[:16]  # which samples to upload
        if record["epoch"] == type(self).kill_at:
            raise Killed


class ReseedingLogger(Logger):
    """Seeds torch itself (a logger that makes its own picks repeatable)."""

    def log_epoch(self, record: dict[str, Any], samples: torch.Tensor | None) -> None:
        torch.manual_seed(0)


# -- F2: a logger changing torch's defaults -------------------------------------------------------------


class StateLogger(Logger):
    """Changes one of torch's defaults in ``log_epoch``, as ``change`` says (the report's ``statelog``)."""

    change: str = "nograd"

    def log_epoch(self, record: dict[str, Any], samples: torch.Tensor | None) -> None:
        if type(self).change == "nograd":
            torch.set_grad_enabled(False)  # meant: with torch.no_grad()
        else:
            torch.set_default_dtype(torch.float64)


class StateCheckingLogger(Logger):
    """Leaves torch's default dtype float64 in its check, which runs before the model is built."""

    @classmethod
    def check(cls) -> None:
        torch.set_default_dtype(torch.float64)


class StateClosingLogger(Logger):
    """Leaves torch's default dtype float64 as it closes: right before the run's pictures are drawn."""

    def close(self) -> None:
        torch.set_default_dtype(torch.float64)


# -- F8: complex per-image values -----------------------------------------------------------------------


class ComplexStatVAE(VAE):
    """Reports a spectral term whose ``.abs()`` was forgotten (the report's ``MODE=fft``)."""

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().loss(x)
        out["spectral"] = torch.fft.fft2(x.view(x.shape[0], -1, *x.shape[-2:])).mean(dim=(1, 2, 3))
        return out


class ComplexEvalVAE(VAE):
    """``evaluate`` returns a complex ``nelbo`` (the report's ``MODE=eval-complex``)."""

    def evaluate(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().evaluate(x)
        return {**out, "nelbo": torch.complex(out["nelbo"], out["nelbo"])}


class ComplexStepVAE(VAE):
    """A manual training step reporting a complex value that no ``evaluate`` returns: no check before training
    sees it."""

    automatic_optimization = False

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        (optimizer,) = optimizers.values()
        optimizer.zero_grad(set_to_none=True)
        out = self.loss(x)
        out["nelbo"].mean().backward()
        optimizer.step()
        return {**out, "phase": torch.complex(out["kl"], out["kl"]).detach()}


@hookimpl
def register_loggers(register: Any) -> None:
    register("randsubset21", RandomSubsetLogger)
    register("reseeding21", ReseedingLogger)
    register("statelog21", StateLogger)
    register("stateclose21", StateClosingLogger)
    register("statecheck21", StateCheckingLogger)


@hookimpl
def register_models(register: Any) -> None:
    register("complexstat21", ComplexStatVAE)
    register("complexeval21", ComplexEvalVAE)
    register("complexstep21", ComplexStepVAE)


@pytest.fixture
def plugins(genzoo_register: Any) -> Iterator[None]:
    RandomSubsetLogger.kill_at, StateLogger.change = None, "nograd"
    genzoo_register(types.SimpleNamespace(register_loggers=register_loggers, register_models=register_models),
                    "twentyfirst-b", "test-twentyfirst-b")
    yield
    RandomSubsetLogger.kill_at, StateLogger.change = None, "nograd"


def train(model: str, out: Path, data_root: Path, capsys: pytest.CaptureFixture, *more: str) -> tuple[int, str]:
    """``genzoo train MODEL`` with tiny options (one epoch unless ``more`` says) into ``out``: status and stderr."""
    code, _, err = run_main(["train", model, "--data-root", str(data_root), "--epochs", "1", *TINY, *more,
                             "--out", str(out)], capsys)
    return code, err


def test_a_run_killed_while_a_logger_draws_resumes_as_the_uninterrupted_run(
        plugins: None, data_root: Path, tmp_path: Path) -> None:
    """F1. Before: the resumed run's weights differed from the uninterrupted one's (``model_state.encoder.0.weight``)."""
    cfg = config("vae", data_root)
    start_run(cfg, OPTIONS, out=tmp_path / "reference", loggers=["randsubset21"])
    RandomSubsetLogger.kill_at = 1
    with pytest.raises(Killed):
        start_run(cfg, OPTIONS, out=tmp_path / "run", loggers=["randsubset21"])
    RandomSubsetLogger.kill_at = None
    resume_run(tmp_path / "run")
    assert_same_run(tmp_path / "run", tmp_path / "reference")


def test_a_logger_that_draws_or_reseeds_trains_as_a_run_without_loggers(
        plugins: None, data_root: Path, tmp_path: Path) -> None:
    """F1: what a logger does with torch's stream stays in its call. Before: both runs' weights differed from the
    run without loggers."""
    cfg = config("vae", data_root)
    start_run(cfg, OPTIONS, out=tmp_path / "reference")
    for logger in ("randsubset21", "reseeding21"):
        start_run(cfg, OPTIONS, out=tmp_path / logger, loggers=[logger])
        assert_same_run(tmp_path / logger, tmp_path / "reference")


@pytest.mark.parametrize("change, changed", [
    ("nograd", "torch's grad mode (enabled, set to disabled)"),
    ("f64", "torch's default dtype (float32, set to float64)"),
])
def test_a_logger_that_changes_torchs_defaults_is_put_back_and_dropped_with_one_warning(
        plugins: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, change: str,
        changed: str) -> None:
    """F2. Before: ``nograd`` stopped at epoch 2's first step blaming ``VAE.loss`` ("without a gradient to
    follow"), exit 1; ``f64`` warned that genzoo's ``model`` sampler failed ("mat1 and mat2 must have the same
    dtype"), no ``samples.png``, exit 0."""
    StateLogger.change = change
    out = tmp_path / "out"
    code, err = train("vae", out, data_root, capsys, "--epochs", "2", "--log", "statelog21")
    assert code == 0, err
    assert [line for line in err.splitlines() if line.startswith("genzoo: warning:")] == [
        f"genzoo: warning: logger 'statelog21' changed {changed} while logging epoch 1; they are put back (the "
        "Logger contract: a logger leaves torch's defaults and the process's settings alone), and it logs no more "
        "of this session"]
    assert [record["epoch"] for record in read_metrics(out)] == [1, 2]
    assert (out / "samples.png").is_file()
    assert torch.get_default_dtype() is torch.float32 and torch.is_grad_enabled()


def test_a_logger_that_changes_torchs_defaults_as_it_closes_leaves_the_pictures_alone(
        plugins: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """F2 at the session's end. Before: ``sampler 'model' ... failed while drawing 64 samples: RuntimeError: mat1
    and mat2 must have the same dtype ...; no samples.png is drawn``, exit 0."""
    out = tmp_path / "out"
    code, err = train("vae", out, data_root, capsys, "--log", "stateclose21")
    assert code == 0, err
    assert err.splitlines()[-1] == (
        "genzoo: warning: logger 'stateclose21' changed torch's default dtype (float32, set to float64) while "
        "closing; they are put back (the Logger contract: a logger leaves torch's defaults and the process's "
        "settings alone), and it logs no more of this session")
    assert (out / "samples.png").is_file()


def test_a_logger_whose_check_changes_torchs_defaults_is_refused_before_the_run_folder(
        plugins: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """F2 before the run: ``check`` runs before the model is built. Before: the model was built in float64, and the
    line blamed it: ``VAE.loss raised RuntimeError: mat1 and mat2 must have the same dtype, but got Float and
    Double``."""
    out = tmp_path / "out"
    code, err = train("vae", out, data_root, capsys, "--log", "statecheck21")
    assert_one_line_error(code, err, "logger 'statecheck21' from plugin 'twentyfirst-b' (distribution "
                                     "'test-twentyfirst-b') changed torch's default dtype (float32, set to float64) "
                                     "while checking that it can work here; they are put back")
    assert not out.exists()
    assert torch.get_default_dtype() is torch.float32


@pytest.mark.parametrize("model, said", [
    ("complexstat21", "ComplexStatVAE.loss returned 'spectral' of dtype complex64"),
    ("complexeval21", "ComplexEvalVAE.evaluate returned 'nelbo' of dtype complex64"),
])
def test_complex_per_image_values_are_refused_before_the_run_folder(
        plugins: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, model: str, said: str) -> None:
    """F8. Before: trained, exit 0, torch's two-line ``UserWarning: Casting complex values to real discards the
    imaginary part`` on stderr and the real part alone in ``metrics.jsonl`` (``train_spectral``, ``test_nelbo``)."""
    out = tmp_path / "out"
    code, err = train(model, out, data_root, capsys)
    assert_one_line_error(code, err, f"{said}, not real values: metrics.jsonl would hold their real part alone; "
                                     "return one real value per image (the .abs() of a spectrum, say)")
    assert not out.exists()


def test_a_complex_value_of_a_training_step_alone_is_stopped_at_the_first_step(
        plugins: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """F8 where no check before training sees the value (a manual ``training_step``'s). Before: trained, exit 0,
    ``train_phase`` the real part."""
    out = tmp_path / "out"
    code, err = train("complexstep21", out, data_root, capsys)
    assert_one_line_error(code, err, "ComplexStepVAE.training_step returned 'phase' of dtype complex64, not real "
                                     "values", "no checkpoint had been written yet")
    assert sorted(path.name for path in out.iterdir()) == ["config.json"]
