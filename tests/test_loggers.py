"""Loggers: the ``register_loggers`` hook, ``genzoo train --log``, and the built-in TensorBoard logger read back."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    SteeredPlugin,
    SteeredVAE,
    assert_same_run,
    data_root,
    one_thread,
    reset_steering,
    run_main,
    snapshot,
)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_reliability_resume import config
from test_security import assert_one_line_error, finished_run

from genzoo import Logger, hookimpl
from genzoo.plugin_registry import registry
from genzoo.run_folder import read_metrics
from genzoo.trainer import Interrupted
from genzoo.training import resume_run, start_run

SMALL = ["--epochs", "2", "--batch-size", "10", "--test-limit", "20", "--device", "cpu", "--no-download"]


class Recorder(Logger):
    """Keeps every call, to check what a third-party logger is given."""

    description = "records calls (test)"
    calls: list[tuple[str, object]] = []

    def __init__(self, run_dir: Path, start_epoch: int) -> None:
        super().__init__(run_dir, start_epoch)
        self.calls.append(("init", (run_dir, start_epoch)))

    def log_hyperparameters(self, description):
        self.calls.append(("hyperparameters", description))

    def log_epoch(self, record, samples):
        self.calls.append(("epoch", (record, None if samples is None else tuple(samples.shape))))

    def close(self):
        self.calls.append(("close", None))


class RecorderPlugin:
    @hookimpl
    def register_loggers(self, register):
        register("recorder", Recorder)


@pytest.fixture
def recorder(genzoo_register):
    Recorder.calls = []
    reset_steering()
    genzoo_register(RecorderPlugin(), "recorder")
    genzoo_register(SteeredPlugin(), "steered")
    yield Recorder.calls
    reset_steering()


def events(run: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_event_files_hold_the_epochs_scalars_sample_grids_and_hyperparameters(data_root, tmp_path,
                                                                                        capsys):
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--latent", "2", "--hidden", "16", "--data-root", str(data_root), *SMALL,
                             "--log", "tensorboard", "--out", str(run)], capsys)
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["loggers"] == ["tensorboard"]
    tb = events(run)
    records = read_metrics(run)
    for key in ("train_nelbo", "test_nelbo", "train_images_per_s"):
        split, _, name = key.partition("_")
        scalars = tb.Scalars(f"{split}/{name}")
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in records], rel=1e-6)
    assert [image.step for image in tb.Images("samples")] == [1, 2]
    assert (tb.Images("samples")[0].width, tb.Images("samples")[0].height) == (8 * 28, 8 * 28)  # 64 samples, 8x8
    hparams = tb.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in hparams
    assert b"latent" in hparams["_hparams_/session_start_info"] and b"train.batch_size" in hparams[
        "_hparams_/session_start_info"]
    assert b"test/nelbo" in hparams["_hparams_/experiment"] and b"latent" in hparams["_hparams_/experiment"]


def test_a_third_party_logger_gets_the_hyperparameters_each_epoch_and_a_close(recorder, data_root, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_main(["train", "ae", "--latent", "2", "--data-root", str(data_root), *SMALL,
                             "--log", "recorder,recorder", "--log", "recorder", "--out", str(run)], capsys)
    assert code == 0, err
    description = json.loads((run / "config.json").read_text())
    assert description["loggers"] == ["recorder"]  # repeats dropped
    records = read_metrics(run)
    # The AE fits its sampling prior after the last epoch: no grid before it.
    assert recorder == [("init", (run, 0)), ("hyperparameters", description),
                        ("epoch", (records[0], None)), ("epoch", (records[1], (64, 1, 28, 28))), ("close", None)]


def test_resume_logs_to_the_same_loggers_and_logging_changes_nothing_trained(recorder, data_root, tmp_path):
    cfg = config("steered-vae", data_root)
    options = {"latent": 2, "hidden": 16}
    start_run(cfg, options, out=tmp_path / "reference")
    reset_steering()
    SteeredVAE.interrupt_at = 17  # mid-epoch 2 (of 12 steps each)
    with pytest.raises(Interrupted):
        start_run(cfg, options, out=tmp_path / "run", loggers=["recorder", "tensorboard"])
    reset_steering()
    del recorder[:]
    resume_run(tmp_path / "run")
    assert [call for call, _ in recorder] == ["init", "epoch", "close"]
    assert recorder[0] == ("init", (tmp_path / "run", 1))  # epoch 1 was logged before the interruption
    assert_same_run(tmp_path / "run", tmp_path / "reference")
    assert [s.step for s in events(tmp_path / "run").Scalars("test/nelbo")] == [1, 2]


def test_an_unknown_logger_is_one_line_before_any_run_folder(data_root, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--data-root", str(data_root), *SMALL, "--log", "tensorboard,tensorbord",
                             "--out", str(run)], capsys)
    assert_one_line_error(code, err, "unknown logger 'tensorbord'; did you mean 'tensorboard'?")
    assert not run.exists()


def test_without_tensorboard_installed_the_line_says_what_to_install(data_root, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--data-root", str(data_root), *SMALL, "--log", "tensorboard",
                             "--out", str(run)], capsys)
    assert_one_line_error(code, err, "--log tensorboard needs the tensorboard package",
                          "pip install 'genzoo[tensorboard]'")
    assert not run.exists()


def test_the_tensorboard_logger_comes_through_the_builtin_entry_point():
    entry = registry().entry("logger", "tensorboard")
    assert (entry.distribution, entry.plugin) == ("genzoo", "loggers")
    assert issubclass(entry.obj, Logger)


@pytest.mark.parametrize("loggers, needle", [
    (5, "config.json is not a genzoo run configuration: loggers is 5, not a list of logger names"),
    (["gone"], "unknown logger 'gone'"),
])
def test_a_runs_loggers_that_are_damaged_or_gone_are_one_line_on_resume(data_root, tmp_path, capsys, loggers, needle):
    run = finished_run(data_root, tmp_path / "run")
    description = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**description, "loggers": loggers}))
    before = snapshot(run)
    code, _, err = run_main(["resume", str(run)], capsys)
    assert_one_line_error(code, err, needle)
    assert snapshot(run) == before


class Broken(Logger):
    """Fails in the middle of the run, as a logger whose server went away would."""

    def log_epoch(self, record, samples):
        raise ConnectionError("tracking server unreachable")


class Unstartable(Logger):
    def __init__(self, run_dir, start_epoch):
        raise OSError("no space left on device")


class FaultyPlugin:
    @hookimpl
    def register_loggers(self, register):
        register("broken", Broken)
        register("unstartable", Unstartable)


def test_a_failing_logger_warns_once_and_the_run_and_other_loggers_go_on(recorder, genzoo_register, data_root,
                                                                         tmp_path, capsys):
    genzoo_register(FaultyPlugin(), "faulty")
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--latent", "2", "--hidden", "16", "--data-root", str(data_root), *SMALL,
                             "--log", "broken,unstartable,recorder", "--out", str(run)], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("genzoo: warning:")]
    assert warnings == [
        "genzoo: warning: logger 'unstartable' failed and logs no more of this session: OSError: no space left on device",
        "genzoo: warning: logger 'broken' failed and logs no more of this session: ConnectionError: tracking server "
        "unreachable",
    ]
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert [call for call, _ in recorder] == ["init", "hyperparameters", "epoch", "epoch", "close"]
