"""Found by the seventeenth look (sixteenth hostile pass, F1, F10, F11): the names and precision of a step's values.

F1: a model whose ``loss`` returned a name in some steps and not others was a ``KeyError`` traceback
mid-training, or had the value dropped without a word, or averaged over images it was not computed for.
F11: the same across the ranks of ``--nproc 2`` all-reduced tensors of different lengths: the launch hung
or ended in gloo's tracebacks. F10: float16 per-image values overflowed genzoo's own batch sum (taken in
their precision), and a finite run was stopped as diverged. Each test failed before its fix
(docs/reliability.md, "Found by the seventeenth look").
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    TIMING,
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    subprocess_env,
    write_fake_mnist,
)

from genzoo import hookimpl
from genzoo.run_folder import read_metrics

TINY = ["--batch-size", "20", "--train-limit", "60", "--test-limit", "20", "--device", "cpu", "--latent", "2",
        "--hidden", "16"]
#: Seconds a two-process launch may take on a CPU shared with other workers; before the fix it hung past this.
LAUNCH_TIMEOUT = 300


class ChangingVAE(VAE):
    """A VAE whose training steps' names change at its ``at``-th training call: ``mode`` says how.

    From the third call: the state check before training makes two calls on each copy it trains, and
    the copies must compute alike. The count is in the state_dict (a buffer), as the state check before
    each checkpoint requires of anything the model computes with.
    """

    mode = ""  # "drop": no "kl" in that call; "add": an "extra" from that call on; "raise": a KeyError there
    at = 0

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def loss(self, x: torch.Tensor) -> Any:
        stats = super().loss(x)
        if not self.training:
            return stats
        self.calls += 1
        if self.mode == "drop" and self.calls == self.at:
            del stats["kl"]
        if self.mode == "add" and self.calls >= self.at:
            stats["extra"] = stats["kl"].detach()
        if self.mode == "raise" and self.calls == self.at:
            raise KeyError("oops")
        return stats


class HalfVAE(VAE):
    """A VAE that also reports ten times its objective in float16: about 5,400 an image, finite, but twenty of
    them sum to more than float16's 65,504."""

    def loss(self, x: torch.Tensor) -> Any:
        stats = super().loss(x)
        return {**stats, "nelbo_x10": (stats["nelbo"].detach() * 10).half()}


@hookimpl
def register_models(register: Any) -> None:
    register("changing19", ChangingVAE)
    register("half19", HalfVAE)


@pytest.fixture
def models(genzoo_register: Any) -> Any:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "nineteenth", "test-nineteenth")
    yield
    ChangingVAE.mode, ChangingVAE.at = "", 0


def train(model: str, data: Path, run: Path, capsys: pytest.CaptureFixture, epochs: int) -> tuple[int, str, str]:
    return run_main(["train", model, "--data-root", str(data), *TINY, "--epochs", str(epochs), "--out", str(run)],
                    capsys)


def step_names(run: Path) -> list[list[str]]:
    return [sorted(key for key in record if key.startswith("train_") and key not in TIMING) for record in read_metrics(run)]


# -- F1: a name in some steps and not others --------------------------------------------------------


@pytest.mark.parametrize(("mode", "at", "epochs", "said", "kept"), [
    # before: KeyError traceback
    ("drop", 3, 1, "['bce', 'nelbo'] at step 3 of epoch 1", "no checkpoint had been written yet"),
    # before: exit 0, "extra" dropped without a word
    ("add", 3, 1, "['bce', 'extra', 'kl', 'nelbo'] at step 3 of epoch 1", "no checkpoint had been written yet"),
    # before: exit 0, epoch 2's line alone with train_extra
    ("add", 4, 2, "['bce', 'extra', 'kl', 'nelbo'] at step 1 of epoch 2", "resume with: genzoo resume "),
])
def test_a_loss_whose_names_change_between_steps_is_one_line_and_the_run_resumes_once_mended(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
        mode: str, at: int, epochs: int, said: str, kept: str) -> None:
    run = tmp_path / "run"
    monkeypatch.setattr(ChangingVAE, "mode", mode)
    monkeypatch.setattr(ChangingVAE, "at", at)
    code, _, err = train("changing19", data_root, run, capsys, epochs)
    *epoch_lines, last = err.strip().splitlines()
    assert len(epoch_lines) == epochs - 1 and all(line.startswith("epoch ") for line in epoch_lines), err
    assert_one_line_error(code, last, f"ChangingVAE.loss returned {said}, but ['bce', 'kl', 'nelbo'] at the run's "
                                      "first step: every step must return the same names", kept)
    assert (run / "checkpoint.pt").exists() == (epochs > 1)
    if epochs > 1:  # as the line says: mended, the run resumes from the epoch's checkpoint, each line alike
        monkeypatch.setattr(ChangingVAE, "mode", "")
        code, _, err = run_main(["resume", str(run)], capsys)
        assert code == 0, err
        assert step_names(run) == [["train_bce", "train_kl", "train_nelbo"]] * 2


def test_a_resumed_run_whose_steps_return_other_names_than_its_metric_lines_is_one_line(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Resumed at an epoch's end, the steps are held to the names of the run's metric lines (before: epoch 2's
    line had a train_extra that epoch 1's lacked, exit 0)."""
    run = tmp_path / "run"
    monkeypatch.setattr(ChangingVAE, "mode", "raise")
    monkeypatch.setattr(ChangingVAE, "at", 4)  # the first step of epoch 2: epoch 1's checkpoint is kept
    code, _, err = train("changing19", data_root, run, capsys, 2)
    assert code == 1 and "ChangingVAE.loss raised KeyError: 'oops'" in err, err
    monkeypatch.setattr(ChangingVAE, "mode", "add")
    monkeypatch.setattr(ChangingVAE, "at", 1)
    code, _, err = run_main(["resume", str(run)], capsys)
    assert_one_line_error(code, err, "ChangingVAE.loss returned ['bce', 'extra', 'kl', 'nelbo'] at step 1 of epoch 2, "
                                     "but ['bce', 'kl', 'nelbo'] at the run's first step", "resume with: genzoo resume ")
    assert step_names(run) == [["train_bce", "train_kl", "train_nelbo"]]
    monkeypatch.setattr(ChangingVAE, "mode", "")
    code, _, err = run_main(["resume", str(run)], capsys)
    assert code == 0, err
    assert step_names(run) == [["train_bce", "train_kl", "train_nelbo"]] * 2


# -- F11: the names differ between the ranks of --nproc 2 ------------------------------------------

PLUGIN = """
import os

from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE


class RankVAE(VAE):
    '''A VAE whose training steps on rank 1 return other names: MODE "every", an "extra" in every step;
    "one", no "kl" in its third step alone (the state check's copies make two calls each); "order", the
    same names in the other order.'''

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.calls = 0

    def loss(self, x):
        stats = super().loss(x)
        if not self.training or os.environ.get("RANK") != "1":
            return stats
        self.calls += 1
        mode = os.environ["GENZOO_TEST_RANK_MODE"]
        if mode == "every":
            stats["extra"] = stats["kl"].detach()
        elif mode == "one" and self.calls == 3:
            del stats["kl"]
        elif mode == "order":
            return dict(reversed(stats.items()))
        return stats


@hookimpl
def register_models(register):
    register("rankvae19", RankVAE)
"""


def launch(tmp_path: Path, mode: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """``genzoo train rankvae19 --nproc 2`` of three steps, its rank 1 steered by ``mode``: the run and the launch."""
    data = write_fake_mnist(tmp_path / "data")
    site = tmp_path / "site"  # the model installed, so the ranks (plain genzoo) find it too
    info = site / "genzoo_rank_names-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: genzoo-rank-names\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[genzoo]\nrank_names = rank_names\n")
    (site / "rank_names.py").write_text(PLUGIN)
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    run = tmp_path / "run"
    return run, subprocess.run(
        [sys.executable, "-m", "genzoo", "train", "rankvae19", "--epochs", "1", "--batch-size", "20",
         "--train-limit", "60", "--test-limit", "20", "--latent", "2", "--hidden", "16", "--device", "cpu",
         "--data-root", str(data), "--no-download", "--out", str(run), "--nproc", "2"],
        env=subprocess_env(PYTHONPATH=path, GENZOO_TEST_RANK_MODE=mode), capture_output=True, text=True,
        timeout=LAUNCH_TIMEOUT)


@pytest.mark.parametrize(("mode", "said"), [
    ("every", "RankVAE.loss returned ['bce', 'kl', 'nelbo'] in training process 0 but ['bce', 'extra', 'kl', "
              "'nelbo'] in process 1 of 2, from step 1 of epoch 1: every process must return the same names"),
    ("one", "RankVAE.loss returned ['bce', 'nelbo'] at step 3 of epoch 1 in training process 1 of 2, but "
            "['bce', 'kl', 'nelbo'] at the run's first step: every step must return the same names"),
])
def test_ranks_whose_steps_return_different_names_stop_with_one_line_each(tmp_path: Path, mode: str,
                                                                          said: str) -> None:
    """Before: the ranks all-reduced sums of different lengths: the launch hung ("every"), or gloo's tracebacks."""
    run, done = launch(tmp_path, mode)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("genzoo: warning:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-4000:]
    # Both ranks exit with code 1: which one the launcher sees first is a race, so its line may name either.
    launcher = ("Error: training process {} of 2 exited with code 1; the launcher stopped the others; no checkpoint "
                "was written, so there is nothing to resume")
    assert lines[:2] == [f"Error: {said}; no checkpoint had been written yet, so {run} (its config.json alone) "
                         "cannot be resumed: once the model is mended, train again into another folder"] * 2, \
        done.stderr[-4000:]
    assert lines[2:] in ([launcher.format(0)], [launcher.format(1)]), done.stderr[-4000:]
    assert not (run / "checkpoint.pt").exists()


def test_ranks_returning_the_same_names_in_another_order_sum_each_name_with_itself(tmp_path: Path) -> None:
    """Before: each rank's sums were all-reduced in its own order of the names, so rank 1's nelbo was added to
    rank 0's kl: train_nelbo was no longer train_bce + train_kl."""
    run, done = launch(tmp_path, "order")
    assert done.returncode == 0, done.stderr[-4000:]
    (record,) = read_metrics(run)
    assert math.isclose(record["train_nelbo"], record["train_bce"] + record["train_kl"], rel_tol=1e-6), record


# -- F10: float16 values whose batch sum overflows float16 ---------------------------------------


def test_float16_losses_whose_batch_sum_overflows_float16_are_no_divergence(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: ``training diverged: non-finite loss at epoch 1, step 1``, every value finite."""
    run = tmp_path / "run"
    code, _, err = train("half19", data_root, run, capsys, 1)
    assert code == 0, err
    (record,) = read_metrics(run)
    for split in ("train", "test"):  # each image's value is its nelbo times ten, in float16: 3 significant digits
        assert math.isclose(record[f"{split}_nelbo_x10"], 10 * record[f"{split}_nelbo"], rel_tol=1e-3), record
