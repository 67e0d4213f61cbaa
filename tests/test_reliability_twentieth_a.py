"""Found by the eighteenth look (seventeenth hostile pass, F1, F4, F5): state and names that escaped the checks.

F1: a training value kept on the model's config object outside its dataclass fields passed the config check,
which compared the fields alone: a resumed run differed from an uninterrupted one. F4: state set in
``after_training`` and read by ``sample`` passed the state check, which never ran ``after_training``: the run's
``samples.png`` was not what ``genzoo sample RUN`` draws. F5: a name ``evaluate`` returned only from a later epoch
on (or in some test batches, or on one rank) changed the metric lines' ``test_*`` keys without a word. Each test
failed before its fix (docs/reliability.md, "Found by the eighteenth look").
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch
from genzoo_plugins.vae.model import VAE
from PIL import Image
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    subprocess_env,
    write_fake_mnist,
)

from genzoo import hookimpl
from genzoo.checkpoint import FILENAME, load_checkpoint
from genzoo.errors import PluginFault
from genzoo.run_folder import read_metrics
from genzoo.train_config import TrainConfig
from genzoo.training import start_run

TINY = ["--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu", "--latent", "2",
        "--hidden", "16"]
#: Seconds a two-process launch may take on a CPU shared with other workers.
LAUNCH_TIMEOUT = 300


# -- F1: a training value on the config object, outside its fields -------------------------------


class HiddenWarmVAE(VAE):
    """A KL warm-up kept as an attribute of its config object that is no field of it (the report's)."""

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().loss(x)
        warm = getattr(self.config, "_warm", 0.0)
        if self.training and torch.is_grad_enabled():
            object.__setattr__(self.config, "_warm", min(1.0, warm + 0.05))
        return {**out, "nelbo": out["bce"] + warm * out["kl"]}


class StepHiddenWarmVAE(VAE):
    """The same warm-up in its own training step, which no check before the run folder takes."""

    automatic_optimization = False

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        (optimizer,) = optimizers.values()
        optimizer.zero_grad(set_to_none=True)
        out = self.loss(x)
        (out["bce"] + getattr(self.config, "_warm", 0.0) * out["kl"]).mean().backward()
        optimizer.step()
        self.config._warm = min(1.0, getattr(self.config, "_warm", 0.0) + 0.05)  # type: ignore[attr-defined]
        return out


class Helper:
    """What a model may keep on its config when it is built: an object that defines no ``==`` of its own."""

    def __init__(self, pixels: int) -> None:
        self.pixels = pixels


class ConfigHelperVAE(VAE):
    """Keeps a tensor and a helper object on its config when built, and never changes them: no training state."""

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        config._mask, config._helper = torch.ones(3), Helper(784)


# -- F4: state set in after_training ---------------------------------------------------------------


class AttrSampleVAE(VAE):
    """A plain attribute set in after_training, read by sample (the report's)."""

    def after_training(self, train: Any) -> None:
        self._center = 3.0

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.decode(torch.randn(n, self.config.latent, device=self.device) + getattr(self, "_center", 0.0))


class BufferSampleVAE(AttrSampleVAE):
    """The same centre, of the training images' mean pixel, kept in a persistent buffer: saved, so sound."""

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.register_buffer("center", torch.zeros(()))

    def after_training(self, train: Any) -> None:
        self.center.fill_(float(next(iter(train.batches(len(train)))).mean()))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.decode(torch.randn(n, self.config.latent, device=self.device) + self.center)


class ConfigAfterVAE(VAE):
    """Writes what it learnt after training into its config: no load would have it."""

    def after_training(self, train: Any) -> None:
        self.config.lr = 0.5


# -- F5: names evaluate returns only sometimes -----------------------------------------------------


class EvalLaterVAE(VAE):
    """Counts its training steps in a (saved) buffer; ``evaluate`` adds an "extra" once ``steps`` exceeds
    ``later`` (two steps an epoch here: from epoch 2 on), or, with ``later`` None, in its last, smaller test
    batch."""

    later: int | None = 2

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training and torch.is_grad_enabled():
            self.steps += 1
            if int(self.steps) == type(self).crash_at:
                raise RuntimeError("planned crash")
        return super().loss(x)

    crash_at = 0

    def evaluate(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().evaluate(x)
        later = type(self).later
        if (later is not None and int(self.steps) > later) or (later is None and x.shape[0] == 5):
            out["extra"] = out["kl"] * 0 + 1.0
        return out


@hookimpl
def register_models(register: Any) -> None:
    register("hiddenwarm20", HiddenWarmVAE)
    register("stephiddenwarm20", StepHiddenWarmVAE)
    register("confighelper20", ConfigHelperVAE)
    register("attrsample20", AttrSampleVAE)
    register("buffersample20", BufferSampleVAE)
    register("configafter20", ConfigAfterVAE)
    register("evallater20", EvalLaterVAE)


@pytest.fixture
def models(genzoo_register: Any) -> Any:
    EvalLaterVAE.later, EvalLaterVAE.crash_at = 2, 0
    genzoo_register(types.SimpleNamespace(register_models=register_models), "twentieth-a", "test-twentieth-a")
    yield
    EvalLaterVAE.later, EvalLaterVAE.crash_at = 2, 0


def train(model: str, out: Path, data_root: Path, capsys: pytest.CaptureFixture, *more: str) -> tuple[int, str]:
    """``genzoo train MODEL`` with tiny options (one epoch unless ``more`` says) into ``out``: status and stderr."""
    code, _, err = run_main(["train", model, "--data-root", str(data_root), "--epochs", "1", *TINY, *more,
                             "--out", str(out)], capsys)
    return code, err


def test_a_training_value_on_the_config_outside_its_fields_is_refused_before_the_run_folder(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """F1. Before: trained, exit 0; a resumed run's test nelbo was 301.6 where an uninterrupted one's was 305.2."""
    out = tmp_path / "out"
    code, err = train("hiddenwarm20", out, data_root, capsys)
    assert_one_line_error(code, err, "HiddenWarmVAE changed its config as it computed (a training forward pass, "
                                     "then each of its methods once) (_warm unset -> 0.05)", "never in its config")
    assert not out.exists()


def test_a_value_set_on_the_config_in_a_models_own_training_step_is_refused_before_any_checkpoint(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """F1, as the trainer checks after the first step. Before: trained, exit 0."""
    out = tmp_path / "out"
    code, err = train("stephiddenwarm20", out, data_root, capsys)
    assert_one_line_error(code, err, "StepHiddenWarmVAE changed its config in its first training step "
                                     "(_warm unset -> 0.05)")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_values_a_model_keeps_on_its_config_from_its_build_on_are_no_change(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """What F1's check lets through: a tensor and an object without its own ``==`` put on the config when the
    model is built, which each deep copy of the config copies anew, are compared element for element and
    attribute for attribute: the run trains."""
    code, err = train("confighelper20", tmp_path / "out", data_root, capsys, "--checkpoint-every", "1")
    assert code == 0, err


def test_an_attribute_after_training_sets_and_sample_reads_is_refused_before_the_run_folder(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """F4. Before: trained, exit 0, and ``genzoo sample`` drew 35/255 a pixel away from ``samples.png``."""
    out = tmp_path / "out"
    code, err = train("attrsample20", out, data_root, capsys)
    assert_one_line_error(code, err, "AttrSampleVAE computes with state its state_dict does not hold: a "
                                     "AttrSampleVAE that has run after_training and a fresh AttrSampleVAE given its "
                                     "state_dict compute sample differently (a non-persistent buffer or plain "
                                     "attribute that after_training sets?)")
    assert not out.exists()


def test_a_config_after_training_changes_is_refused_before_the_run_folder(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """F4's config side. Before: trained, exit 0 (nothing checked the config after ``after_training``)."""
    out = tmp_path / "out"
    code, err = train("configafter20", out, data_root, capsys)
    assert_one_line_error(code, err, "ConfigAfterVAE changed its config in after_training (lr 0.001 -> 0.5)")
    assert not out.exists()


def test_state_after_training_keeps_in_a_persistent_buffer_trains_and_samples_as_saved(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """What the check lets through: ``after_training`` state the checkpoint holds. ``genzoo sample`` draws the
    run's ``samples.png`` again (as it did not for AttrSampleVAE: 35/255 a pixel away)."""
    out = tmp_path / "out"
    code, err = train("buffersample20", out, data_root, capsys)
    assert code == 0, err
    assert float(load_checkpoint(out)["model_state"]["center"]) > 0.1
    code, _, err = run_main(["sample", str(out), "--out", str(tmp_path / "again.png")], capsys)
    assert code == 0, err
    drawn, again = (numpy.asarray(Image.open(path).convert("L")) for path in (out / "samples.png",
                                                                              tmp_path / "again.png"))
    assert (drawn[30:] == again[30:]).all()  # the pictures below their titles (the run's names its epoch)


def test_a_name_evaluate_returns_from_a_later_epoch_on_is_refused_in_one_line(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """F5. Before: exit 0, epoch 1's line without ``test_extra``, epoch 2's with it."""
    out = tmp_path / "out"
    code, err = train("evallater20", out, data_root, capsys, "--epochs", "2")
    assert_one_line_error(code, err.splitlines()[-1],
                          "EvalLaterVAE.evaluate returned ['bce', 'extra', 'kl', 'nelbo'] for batch 1 of the test "
                          "pass of epoch 2, but ['bce', 'kl', 'nelbo'] in the run's earlier test passes: every test "
                          f"pass must return the same names; the last good checkpoint is kept at {out / FILENAME}")
    assert [sorted(key for key in line if key.startswith("test_")) for line in read_metrics(out)] == [
        ["test_bce", "test_kl", "test_nelbo"]]


def test_a_name_evaluate_returns_in_some_test_batches_only_is_refused_in_one_line(
        models: None, data_root: Path, tmp_path: Path) -> None:
    """F5 within one test pass (25 test images in batches of 10: the last of 5 adds a name). Before: exit 0, its
    ``test_extra`` averaged over all 25 images (0.2, where each of the 5 gave 1.0)."""
    EvalLaterVAE.later = None
    out = tmp_path / "out"
    config = TrainConfig(model="evallater20", epochs=1, batch_size=20, train_limit=40, test_limit=25,
                         eval_batch_size=10, device="cpu", data_root=str(data_root))
    with pytest.raises(PluginFault) as info:
        start_run(config, {"latent": 2, "hidden": 16}, out=out)
    assert str(info.value) == (
        "EvalLaterVAE.evaluate returned ['bce', 'extra', 'kl', 'nelbo'] for batch 3 of the test pass of epoch 1, "
        "but ['bce', 'kl', 'nelbo'] for its first batch: every batch must return the same names; no checkpoint had "
        f"been written yet, so {out} (its config.json alone) cannot be resumed: once the model is mended, train "
        "again into another folder")


def test_a_resumed_run_holds_its_test_names_to_its_last_metric_line(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """F5 on resume: crashed in epoch 2, resumed by a model whose evaluate now adds a name. Before: the resumed
    epoch's line alone had ``test_extra``, exit 0."""
    out = tmp_path / "out"
    EvalLaterVAE.later, EvalLaterVAE.crash_at = None, 3  # the state check's copies count their own steps
    code, err = train("evallater20", out, data_root, capsys, "--epochs", "2")
    assert code == 1 and "planned crash" in err, err
    EvalLaterVAE.later, EvalLaterVAE.crash_at = 0, 0
    code, _, err = run_main(["resume", str(out)], capsys)
    assert_one_line_error(code, err.splitlines()[-1],
                          "EvalLaterVAE.evaluate returned ['bce', 'extra', 'kl', 'nelbo'] for batch 1 of the test "
                          "pass of epoch 2, but ['bce', 'kl', 'nelbo'] in the run's earlier test passes")
    assert len(read_metrics(out)) == 1


PLUGIN = """
import os

from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE


class RankEvalVAE(VAE):
    '''A VAE whose evaluate returns an "extra" on rank 1 alone, in batches of more than one image (not in the probe
    of one test image before the run folder, whose values the ranks agree: twenty-sixth look).'''

    def evaluate(self, x):
        out = super().evaluate(x)
        if os.environ.get("RANK") == "1" and len(x) > 1:
            out["extra"] = out["kl"] * 0 + 1.0
        return out


@hookimpl
def register_models(register):
    register("rankeval20", RankEvalVAE)
"""


def test_ranks_whose_test_passes_return_different_names_stop_with_one_line_each(tmp_path: Path) -> None:
    """F5 across the ranks of ``--nproc 2``. Before: exit 0, ``test_extra`` summed over rank 1's shard alone and
    divided by the whole split (0.5, where every image gave 1.0)."""
    data = write_fake_mnist(tmp_path / "data")
    site = tmp_path / "site"  # the model installed, so the ranks (plain genzoo) find it too
    info = site / "genzoo_rank_eval-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: genzoo-rank-eval\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[genzoo]\nrank_eval = rank_eval\n")
    (site / "rank_eval.py").write_text(PLUGIN)
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "genzoo", "train", "rankeval20", "--epochs", "1", *TINY,
                           "--data-root", str(data), "--no-download", "--out", str(run), "--nproc", "2"],
                          env=subprocess_env(PYTHONPATH=path), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("genzoo: warning:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-4000:]
    said = ("RankEvalVAE.evaluate returned ['bce', 'kl', 'nelbo'] in process 0 but ['bce', 'extra', 'kl', 'nelbo'] "
            "in process 1 of 2, in the test pass of epoch 1: every process must return the same names")
    assert lines[:2] == [f"Error: {said}; no checkpoint had been written yet, so {run} (its config.json alone) "
                         "cannot be resumed: once the model is mended, train again into another folder"] * 2, \
        done.stderr[-4000:]
    assert not (run / FILENAME).exists()
