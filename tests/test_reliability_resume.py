"""Resume: a run interrupted and resumed ends exactly as one never interrupted (CPU, same seed)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    SteeredAE,
    SteeredGAN,
    SteeredPlugin,
    SteeredVAE,
    assert_same_run,
    assert_same_tensors,
    data_root,
    one_thread,
    reset_steering,
    run_main,
    steered,
)

from genzoo import GenzooError
from genzoo import trainer as trainer_module
from genzoo.checkpoint import FILENAME, load_checkpoint
from genzoo.run_folder import METRICS, locked, read_metrics
from genzoo.train_config import TrainConfig
from genzoo.trainer import Interrupted, Trainer
from genzoo.training import resume_run, start_run

STEPS_PER_EPOCH = 12  # 120 fake training images in batches of 10
OPTIONS = {
    "steered-vae": {"latent": 2, "hidden": 16},
    "steered-ae": {"latent": 2, "hidden": 16, "prior_components": 2},
    "steered-gan": {"latent": 4},
}
CLASSES = {"steered-vae": SteeredVAE, "steered-ae": SteeredAE, "steered-gan": SteeredGAN}


def config(model: str, data_root: Path, **changes: Any) -> TrainConfig:
    values = dict(model=model, epochs=2, batch_size=10, seed=3, device="cpu", data_root=str(data_root),
                  test_limit=20)
    return TrainConfig(**{**values, **changes})


@pytest.mark.parametrize(
    "model,interrupt_at,every",
    [
        ("steered-vae", 7, None),  # mid-epoch 1, no periodic checkpoints
        ("steered-vae", STEPS_PER_EPOCH, None),  # the last step of epoch 1, before its evaluation
        ("steered-ae", 17, None),  # mid-epoch 2; the AE fits its mixture prior at the very end
        ("steered-gan", 19, 5),  # mid-epoch 2, two optimisers, with periodic checkpoints
    ],
)
def test_interrupted_then_resumed_equals_uninterrupted(steered, data_root, tmp_path, model, interrupt_at, every):
    cfg = config(model, data_root, checkpoint_every=every)
    start_run(cfg, OPTIONS[model], out=tmp_path / "reference")

    reset_steering()
    CLASSES[model].interrupt_at = interrupt_at  # a real SIGINT to this process after that step
    with pytest.raises(Interrupted) as info:
        start_run(cfg, OPTIONS[model], out=tmp_path / "run")
    assert info.value.checkpoint == tmp_path / "run" / FILENAME
    position = load_checkpoint(tmp_path / "run")["position"]
    assert position["global_step"] == interrupt_at  # Ctrl-C loses no finished step
    epoch = (interrupt_at - 1) // STEPS_PER_EPOCH  # completed epochs
    assert (position["epoch"], position["step"]) == (epoch, interrupt_at - epoch * STEPS_PER_EPOCH)

    reset_steering()
    result = resume_run(tmp_path / "run")
    assert CLASSES[model].steps == 2 * STEPS_PER_EPOCH - interrupt_at  # nothing trained twice
    assert [r["epoch"] for r in result.records] == ([2] if interrupt_at > STEPS_PER_EPOCH else [1, 2])
    assert_same_run(tmp_path / "run", tmp_path / "reference")
    assert (tmp_path / "run" / "samples.png").is_file()


def test_ctrl_c_during_evaluation_stops_after_the_epoch_checkpoint(steered, data_root, tmp_path, monkeypatch):
    cfg = config("steered-vae", data_root)
    start_run(cfg, OPTIONS["steered-vae"], out=tmp_path / "reference")
    original = trainer_module.test_losses
    calls: list[int] = []

    def evaluate_and_get_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "test_losses", evaluate_and_get_interrupted)
    reset_steering()
    with pytest.raises(Interrupted):
        start_run(cfg, OPTIONS["steered-vae"], out=tmp_path / "run")
    monkeypatch.setattr(trainer_module, "test_losses", original)
    position = load_checkpoint(tmp_path / "run")["position"]
    assert (position["epoch"], position["step"]) == (1, 0)
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1]
    assert SteeredVAE.steps == STEPS_PER_EPOCH  # it stopped before epoch 2 began
    resume_run(tmp_path / "run")
    assert_same_run(tmp_path / "run", tmp_path / "reference")


def test_a_second_ctrl_c_stops_at_once(steered, data_root, tmp_path, capsys):
    """For a step that hangs: the second press does not wait for a checkpoint."""
    SteeredVAE.interrupt_at, SteeredVAE.presses = 4, 2
    code, out, err = run_main(
        ["train", "steered-vae", "--latent", "2", "--epochs", "2", "--batch-size", "10", "--device", "cpu",
         "--data-root", str(data_root), "--out", str(tmp_path / "run")], capsys)
    assert code == 130
    assert err.strip().splitlines()[-1] == "Aborted."
    assert SteeredVAE.steps == 4 and not (tmp_path / "run" / FILENAME).exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the trainer put it back


def test_checkpoint_every_n_steps_is_honoured_for_any_n(steered, data_root, tmp_path, monkeypatch):
    """Regression: checkpoints were only taken where N met the 20-step loss sync."""
    saved: list[tuple[int, int]] = []
    original = Trainer.save

    def spy(self):
        original(self)
        saved.append((self.position.epoch, self.position.step))

    monkeypatch.setattr(Trainer, "save", spy)
    start_run(config("steered-vae", data_root, checkpoint_every=5), OPTIONS["steered-vae"], out=tmp_path / "run")
    assert saved == [(0, 5), (0, 10), (1, 0), (1, 5), (1, 10), (2, 0)]


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, not even except-Exception blocks."""


def test_metric_lines_after_the_checkpoint_are_dropped_and_redone_once(steered, data_root, tmp_path, monkeypatch):
    """Killed between writing epoch 2's metric line and its checkpoint: that line is redone, not doubled."""
    cfg = config("steered-vae", data_root)
    start_run(cfg, OPTIONS["steered-vae"], out=tmp_path / "reference")
    original = Trainer.save

    def crash_at_the_end_of_epoch_2(self):
        if self.position.epoch == 2:
            raise Crash
        original(self)

    monkeypatch.setattr(Trainer, "save", crash_at_the_end_of_epoch_2)
    with pytest.raises(Crash):
        start_run(cfg, OPTIONS["steered-vae"], out=tmp_path / "run")
    monkeypatch.setattr(Trainer, "save", original)
    metrics = tmp_path / "run" / METRICS
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2]
    with open(metrics, "a") as f:
        f.write('{"epoch": 3, "train_nel')  # and a torn last line, as a power cut may leave

    resume_run(tmp_path / "run")
    lines = metrics.read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert_same_run(tmp_path / "run", tmp_path / "reference")


def test_resume_command_continues_and_then_says_the_run_is_complete(steered, data_root, tmp_path, capsys):
    SteeredVAE.interrupt_at = 5
    code, out, err = run_main(
        ["train", "steered-vae", "--latent", "2", "--epochs", "2", "--batch-size", "10", "--device", "cpu",
         "--data-root", str(data_root), "--test-limit", "20", "--out", str(tmp_path / "run")], capsys)
    assert code == 130
    assert err.strip().splitlines()[-1] == (
        f"Interrupted: checkpoint saved to {tmp_path / 'run' / FILENAME}; "
        f"resume with: genzoo resume {tmp_path / 'run'}")

    SteeredVAE.interrupt_at = None
    code, out, err = run_main(["resume", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert f"run folder: {tmp_path / 'run'}" in out and "final test metrics (epoch 2" in out
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2]

    before = load_checkpoint(tmp_path / "run")
    code, out, err = run_main(["resume", str(tmp_path / "run")], capsys)
    assert code == 0 and "already complete" in out
    assert_same_tensors(load_checkpoint(tmp_path / "run")["model_state"], before["model_state"])
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2]


def test_resume_removes_the_temporary_file_a_killed_write_left(steered, data_root, tmp_path):
    SteeredVAE.interrupt_at = 3
    with pytest.raises(Interrupted):
        start_run(config("steered-vae", data_root), OPTIONS["steered-vae"], out=tmp_path / "run")
    stale = tmp_path / "run" / ".checkpoint.pt.k2x9_q1z.tmp"
    stale.write_bytes(b"half a checkpoint")
    mine = tmp_path / "run" / "my-notes.tmp"
    mine.write_text("not genzoo's")
    hidden = tmp_path / "run" / ".notes.20261202.tmp"  # named as atomic_write names them, of no file of genzoo's
    hidden.write_text("not genzoo's either")  # (deleted before: twenty-sixth hostile pass, files M5)
    SteeredVAE.interrupt_at = None
    resume_run(tmp_path / "run")
    assert not stale.exists()
    assert mine.read_text() == "not genzoo's"
    assert hidden.read_text() == "not genzoo's either"


def test_a_run_folder_in_use_is_not_resumed_twice(steered, data_root, tmp_path):
    SteeredVAE.interrupt_at = 3
    with pytest.raises(Interrupted):
        start_run(config("steered-vae", data_root), OPTIONS["steered-vae"], out=tmp_path / "run")
    SteeredVAE.interrupt_at = None
    before = (tmp_path / "run" / FILENAME).read_bytes()
    with locked(tmp_path / "run"):
        with pytest.raises(GenzooError, match="in use by another genzoo process"):
            resume_run(tmp_path / "run")
    assert (tmp_path / "run" / FILENAME).read_bytes() == before
