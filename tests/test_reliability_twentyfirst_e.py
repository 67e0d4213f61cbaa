"""Found by the twenty-first look (eighteenth hostile pass, F9, F11, F12, M8, M9): model hooks, the kit and loggers.

F9: an ``after_training`` that changed torch's grad mode or default dtype leaked out of genzoo's own state check
(which runs it on a copy before the run): the run's first step blamed ``loss``; the run's own call left the
change for the pictures, blaming genzoo's ``model`` sampler. Both calls are now guarded as sampler and model
construction calls are: put back, one line naming ``after_training``. F11: the conformance kit let one model's
``after_training`` turn grad mode off for every later check of the session, failing a sound model; its model
calls are now guarded the same way, and its per-image check refuses complex values as the trainer does. F12: a
logger's ``GenzooError`` under ``--nproc 2`` (loggers run on rank 0 alone) left rank 1 in a gloo traceback; the
ranks now stop together. M8: a logger failing as it starts left a folder holding ``config.json`` alone without a
word; the line now says so. M9: a logger failing as it closes kept the finished run's pictures from being drawn;
they are drawn first, and the line says the training is complete. Each test failed before its fix
(docs/reliability.md, "Found by the twenty-first look").
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from pytester_support import run_session
from reliability_support import (  # noqa: F401 - data_root, one_thread and torch_defaults are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    subprocess_env,
    torch_defaults,
    write_fake_mnist,
)

from genzoo import GenzooError, Logger, hookimpl
from genzoo.run_folder import read_metrics

TINY = ["--batch-size", "20", "--test-limit", "20", "--device", "cpu", "--latent", "2", "--hidden", "16"]
#: Seconds a two-process launch may take on a CPU shared with other workers.
LAUNCH_TIMEOUT = 300


# -- F9: after_training changing torch's defaults ----------------------------------------------------------


class DefaultsAfterVAE(VAE):
    """``after_training`` changes one of torch's defaults (the report's ``p/after.py``), as ``change`` says; with
    ``full``, only given the whole split (more images than the state check's 64)."""

    change = "grad-off"
    full = False

    def after_training(self, train: Any) -> None:
        if type(self).full and len(train) <= 64:
            return
        if type(self).change == "grad-off":
            torch.set_grad_enabled(False)  # meant: with torch.no_grad()
        elif type(self).change == "raise":
            raise RuntimeError("the mixture did not converge")
        else:
            torch.set_default_dtype(torch.float64)


class GradOffStepVAE(VAE):
    """A manual ``training_step`` that leaves grad mode off (no check before training runs it)."""

    automatic_optimization = False

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        (optimizer,) = optimizers.values()
        optimizer.zero_grad(set_to_none=True)
        out = self.loss(x)
        out["nelbo"].mean().backward()
        optimizer.step()
        torch.set_grad_enabled(False)  # meant: with torch.no_grad(), for a running statistic
        return {key: value.detach() for key, value in out.items()}


# -- M8, M9: loggers raising GenzooError as they start or close ------------------------------------------


class StoppingLogger(Logger):
    """Raises a ``GenzooError`` at ``at`` (the report's ``p/errlog2.py``)."""

    at = "init"

    def __init__(self, run_dir: Path, start_epoch: int) -> None:
        super().__init__(run_dir, start_epoch)
        if type(self).at == "init":
            raise GenzooError("errlog21: cannot reach the tracking server")

    def log_hyperparameters(self, description: dict[str, Any]) -> None:
        if type(self).at == "hyper":
            raise GenzooError("errlog21: the server refused the hyper-parameters")

    def close(self) -> None:
        if type(self).at == "close":
            raise GenzooError("errlog21: could not upload the final artifacts")


@hookimpl
def register_models(register: Any) -> None:
    register("defaultsafter21", DefaultsAfterVAE)
    register("gradoffstep21", GradOffStepVAE)


@hookimpl
def register_loggers(register: Any) -> None:
    register("errlog21", StoppingLogger)


@pytest.fixture
def plugins(genzoo_register: Any) -> Iterator[None]:
    DefaultsAfterVAE.change, DefaultsAfterVAE.full, StoppingLogger.at = "grad-off", False, "init"
    genzoo_register(types.SimpleNamespace(register_models=register_models, register_loggers=register_loggers),
                    "twentyfirst-e", "test-twentyfirst-e")
    yield
    DefaultsAfterVAE.change, DefaultsAfterVAE.full, StoppingLogger.at = "grad-off", False, "init"


def train(model: str, out: Path, data_root: Path, capsys: pytest.CaptureFixture, *more: str) -> tuple[int, str]:
    """``genzoo train MODEL`` with tiny options (one epoch, 40 images unless ``more`` says) into ``out``: its status
    and stderr without the epochs' progress lines."""
    code, _, err = run_main(["train", model, "--data-root", str(data_root), "--epochs", "1", "--train-limit", "40",
                             *TINY, *more, "--out", str(out)], capsys)
    return code, "".join(line for line in err.splitlines(keepends=True) if not line.startswith("epoch "))


@pytest.mark.parametrize("change, changed", [
    ("grad-off", "torch's grad mode (enabled, set to disabled)"),
    ("f64", "torch's default dtype (float32, set to float64)"),
])
def test_after_training_that_changes_torchs_defaults_is_refused_before_the_run_folder(
        plugins: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, change: str,
        changed: str) -> None:
    """F9, the state check's call. Before: ``grad-off`` stopped at the first step, ``DefaultsAfterVAE.loss
    returned its objective 'nelbo' without a gradient to follow``, the folder holding ``config.json`` alone;
    ``f64`` trained, then warned that genzoo's ``model`` sampler failed ("mat1 and mat2 must have the same
    dtype"), exit 0, no ``samples.png``."""
    DefaultsAfterVAE.change = change
    out = tmp_path / "out"
    code, err = train("defaultsafter21", out, data_root, capsys, "--epochs", "2")
    assert_one_line_error(code, err, f"DefaultsAfterVAE.after_training changed {changed} while the state check "
                                     "ran it before training; they are put back (the Model contract: a model's "
                                     "methods leave torch's defaults and the process's settings alone)")
    assert not out.exists()
    assert torch.get_default_dtype() is torch.float32 and torch.is_grad_enabled()


def test_after_training_that_changes_torchs_defaults_in_the_run_stops_it_naming_after_training(
        plugins: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """F9, the run's own call (on the whole split, which the state check's 64 images do not reach). Before: exit 0,
    and grad mode left off in the process after the command."""
    DefaultsAfterVAE.full = True
    out = tmp_path / "out"
    code, err = train("defaultsafter21", out, data_root, capsys, "--epochs", "2", "--train-limit", "120")
    assert_one_line_error(code, err, "DefaultsAfterVAE.after_training changed torch's grad mode (enabled, set to "
                                     "disabled) while the trainer ran it after the last epoch; they are put back",
                          f"the last good checkpoint is kept at {out / 'checkpoint.pt'}",
                          f"resume with: genzoo resume {out}")
    assert [record["epoch"] for record in read_metrics(out)] == [1]
    assert torch.is_grad_enabled()


def test_a_training_step_that_leaves_grad_mode_off_stops_the_run_naming_it(
        plugins: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """F9's guard on every training step (``genzoo.testing.training_step`` too, F11). Before: the second step's
    backward failed, blamed as the step's own error: ``GradOffStepVAE.training_step raised RuntimeError: element 0
    of tensors does not require grad and does not have a grad_fn``."""
    out = tmp_path / "out"
    code, err = train("gradoffstep21", out, data_root, capsys)
    assert_one_line_error(code, err, "GradOffStepVAE.training_step changed torch's grad mode (enabled, set to "
                                     "disabled) while taking a training step; they are put back",
                          "no checkpoint had been written yet")
    assert torch.is_grad_enabled()


# -- F11: the conformance kit ---------------------------------------------------------------------------------

KIT = '''
import pytest
import torch
from genzoo_plugins.vae.model import VAE

from genzoo import hookimpl
from genzoo.testing import ModelConformance


class GradOffAfter(VAE):
    def after_training(self, train):
        torch.set_grad_enabled(False)  # meant: with torch.no_grad()


class ComplexStat(VAE):
    def loss(self, x):
        out = super().loss(x)
        return {**out, "spectral": torch.fft.fft2(x.view(x.shape[0], -1, *x.shape[-2:])).mean(dim=(1, 2, 3))}


class Plugin:
    @hookimpl
    def register_models(self, register):
        register("gradoffafter", GradOffAfter)
        register("complexstat", ComplexStat)
        register("soundvae", VAE)


@pytest.fixture(autouse=True)
def plugin(genzoo_register):
    genzoo_register(Plugin(), "kit-leak")


class TestAGradOffAfter(ModelConformance):
    model_name = "gradoffafter"
    options = {"latent": 2, "hidden": 16}


class TestBComplexStat(ModelConformance):
    model_name = "complexstat"
    options = {"latent": 2, "hidden": 16}


class TestCSound(ModelConformance):
    model_name = "soundvae"
    options = {"latent": 2, "hidden": 16}
'''


def test_the_kit_keeps_one_models_changes_to_torchs_defaults_from_the_next_model(pytester: pytest.Pytester) -> None:
    """F11. Before: ``gradoffafter`` failed three checks blaming its ``loss`` ("without a gradient to follow"), and
    the sound VAE after it failed four checks the same way; ``complexstat`` passed the per-image check, and
    ``test_evaluate_leaves_the_weights_alone`` failed with ``RuntimeError: value cannot be converted to type double
    without overflow``, naming no value."""
    pytester.makepyfile(test_kit=KIT)
    outcomes = run_session(pytester)
    assert all(test.outcome != "error" for test in outcomes), [test.message for test in outcomes]
    sound = {test.name: test.outcome for test in outcomes if test.cls == "TestCSound"}
    assert set(sound.values()) == {"passed"}, [test.message for test in outcomes if test.cls == "TestCSound"]
    failed = {test.name: test.message for test in outcomes if test.outcome == "failed"}
    grad_off = {test.name: test.message for test in outcomes if test.cls == "TestAGradOffAfter"
                and test.outcome == "failed"}
    assert set(grad_off) == {"test_state_round_trips_through_weights_only_load", "test_samples_are_valid_images",
                             "test_deterministic_under_a_seed", "test_resumed_training_equals_uninterrupted"}, failed
    for message in grad_off.values():
        assert "GradOffAfter.after_training changed torch's grad mode (enabled, set to disabled)" in message, message
    complex_stat = {test.name: test.message for test in outcomes if test.cls == "TestBComplexStat"
                    and test.outcome == "failed"}
    assert "test_losses_are_finite_per_image_values" in complex_stat, failed
    for message in complex_stat.values():
        assert "'spectral'" in message and "complex64, not real values" in message, message


# -- F12: a logger's GenzooError under --nproc 2 -------------------------------------------------------------

LOGGER = '''
import os

from genzoo import GenzooError, Logger, hookimpl


class StopLogger(Logger):
    def log_hyperparameters(self, description):
        if os.environ["GENZOO_TEST_STOP_AT"] == "start":
            raise GenzooError("gzerrlog21: the server refused the hyper-parameters")

    def log_epoch(self, record, samples):
        if record["epoch"] == 1:
            raise GenzooError("gzerrlog21: the tracking server says this run was deleted")


@hookimpl
def register_loggers(register):
    register("gzerrlog21", StopLogger)
'''


@pytest.mark.parametrize("at", ["epoch", "start"])
def test_a_loggers_error_under_two_processes_stops_both_without_a_traceback(tmp_path: Path, at: str) -> None:
    """F12 (and M8 under ``--nproc``: ``start``). Before: rank 1 went on into the next step's collective and met
    rank 0's closed connection: 37 ``[rank1]:`` traceback lines (gloo's ``Connection closed by peer``) between the
    two ``Error:`` lines."""
    data = write_fake_mnist(tmp_path / "data")
    site = tmp_path / "site"  # the logger installed, so the ranks (plain genzoo) find it too
    info = site / "genzoo_stop_logger-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: genzoo-stop-logger\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[genzoo]\nstop_logger = stop_logger\n")
    (site / "stop_logger.py").write_text(LOGGER)
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "genzoo", "train", "vae", "--epochs", "2", "--batch-size", "20", "--train-limit",
         "40", "--test-limit", "20", "--latent", "2", "--hidden", "16", "--device", "cpu", "--data-root",
         str(data), "--no-download", "--out", str(run), "--nproc", "2", "--log", "gzerrlog21"],
        env=subprocess_env(PYTHONPATH=path, GENZOO_TEST_STOP_AT=at), capture_output=True, text=True,
        timeout=LAUNCH_TIMEOUT)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("epoch ")]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-4000:]
    # Rank 1 ends with exit 0 once rank 0 has told it: the launcher's line names rank 0 alone.
    if at == "epoch":
        assert lines == ["Error: gzerrlog21: the tracking server says this run was deleted",
                         "Error: training process 0 of 2 exited with code 1; the launcher stopped the others; the "
                         f"work keeps its last checkpoint: genzoo resume {run} continues it"], done.stderr[-4000:]
        assert [record["epoch"] for record in read_metrics(run)] == [1]
    else:
        assert lines == [f"Error: gzerrlog21: the server refused the hyper-parameters; the run stopped before its "
                         f"first step, so {run} (its config.json alone) cannot be resumed: once the logger can work, "
                         "train again into another folder",
                         "Error: training process 0 of 2 exited with code 1; the launcher stopped the others; no "
                         "checkpoint was written, so there is nothing to resume"], done.stderr[-4000:]


# -- M8, M9: a logger's GenzooError as it starts or closes ----------------------------------------------------


@pytest.mark.parametrize("at, said", [
    ("init", "errlog21: cannot reach the tracking server"),
    ("hyper", "errlog21: the server refused the hyper-parameters"),
])
def test_a_logger_that_stops_the_run_as_it_starts_says_what_the_folder_holds(
        plugins: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, at: str, said: str) -> None:
    """M8. Before: ``Error: errlog21: ...`` alone, the folder left holding ``config.json`` without a word (and
    ``resume`` then said there was no checkpoint)."""
    StoppingLogger.at = at
    out = tmp_path / "out"
    code, err = train("vae", out, data_root, capsys, "--log", "errlog21")
    assert_one_line_error(code, err, f"Error: {said}; the run stopped before its first step, so {out} (its "
                                     "config.json alone) cannot be resumed: once the logger can work, train again "
                                     "into another folder")
    assert sorted(path.name for path in out.iterdir()) == ["config.json"]


def test_a_logger_that_fails_as_it_closes_leaves_the_finished_run_whole(
        plugins: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """M9. Before: ``Error: errlog21: could not upload the final artifacts``, exit 1, and no ``loss.png``,
    ``reconstructions.png`` or ``samples.png``: nothing said the training was complete."""
    StoppingLogger.at = "close"
    out = tmp_path / "out"
    code, err = train("vae", out, data_root, capsys, "--log", "errlog21")
    assert_one_line_error(code, err, f"Error: errlog21: could not upload the final artifacts; the training itself "
                                     f"is complete: {out} holds its checkpoint, metrics and pictures")
    assert {"checkpoint.pt", "loss.png", "reconstructions.png", "samples.png"} <= {p.name for p in out.iterdir()}


def test_a_logger_that_fails_as_it_closes_after_another_error_leaves_that_error_the_one_reported(
        plugins: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """M9's other side: the session ends with the model's error, and the logger then fails to close. Before: the
    logger's line replaced the model's (``Error: errlog21: could not upload the final artifacts``), whose
    ``resume with`` was lost."""
    DefaultsAfterVAE.change, DefaultsAfterVAE.full, StoppingLogger.at = "raise", True, "close"
    out = tmp_path / "out"
    code, err = train("defaultsafter21", out, data_root, capsys, "--epochs", "2", "--train-limit", "120",
                      "--log", "errlog21")
    assert code == 1, err
    assert err.splitlines() == [
        "genzoo: warning: errlog21: could not upload the final artifacts",
        "Error: DefaultsAfterVAE.after_training raised RuntimeError: the mixture did not converge; the last good "
        f"checkpoint is kept at {out / 'checkpoint.pt'}, and what followed it is trained again once the model is "
        f"mended: resume with: genzoo resume {out}"], err
