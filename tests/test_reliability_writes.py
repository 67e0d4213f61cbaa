"""Atomic writes under injected failures, a full disk mid-run, and divergence."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from reliability_support import data_root, one_thread, run_main  # noqa: F401 - fixtures

from genzoo import GenzooError, Model, hookimpl
from genzoo.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from genzoo.files import atomic_write, atomic_write_json
from genzoo.run_folder import CONFIG, METRICS, append_metrics, read_metrics, write_config
from genzoo.training import resume_run

pytestmark = pytest.mark.usefixtures("one_thread")


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def half_then_disk_full(obj, f, *args, **kwargs):
    """A ``torch.save`` that gets half a file out before the disk fills."""
    f.write(b"PK\x03\x04" + b"\0" * 1000)
    disk_full()


def only_file(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- atomic writes ---------------------------------------------------------------------


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / FILENAME
    save_checkpoint(path, {"model": "old", "w": torch.arange(3.0)})
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", half_then_disk_full)
    with pytest.raises(GenzooError) as info:
        save_checkpoint(path, {"model": "new", "w": torch.zeros(3)})
    assert str(info.value) == (f"could not write {path}: No space left on device; "
                               "the previous version, if any, is intact")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["model"] == "old"
    assert only_file(tmp_path) == [FILENAME]  # the half-written temporary file is gone


def test_an_error_that_is_not_an_os_error_also_leaves_the_previous_file(tmp_path):
    path = tmp_path / "report.json"
    atomic_write_json(path, {"fid": 12.5})

    def explode(f):
        f.write(b'{"fid": ')
        raise RuntimeError("the evaluator crashed mid-report")

    with pytest.raises(RuntimeError, match="mid-report"):
        atomic_write(path, explode)
    assert json.loads(path.read_text()) == {"fid": 12.5}
    assert only_file(tmp_path) == ["report.json"]


def test_a_failed_config_write_leaves_the_previous_config(tmp_path, monkeypatch):
    write_config(tmp_path, {"model": "vae", "model_config": {"latent": 40}})
    before = (tmp_path / CONFIG).read_bytes()
    monkeypatch.setattr(os, "fsync", disk_full)  # the write reaches the flush and fails there
    with pytest.raises(GenzooError, match="could not write .*config.json: No space left on device"):
        write_config(tmp_path, {"model": "vae", "model_config": {"latent": 2}})
    monkeypatch.undo()
    assert (tmp_path / CONFIG).read_bytes() == before
    assert only_file(tmp_path) == [CONFIG]


def test_a_failed_rename_leaves_the_previous_picture(tmp_path, monkeypatch):
    from genzoo import figures

    path = tmp_path / "samples.png"
    figures.save_samples(torch.zeros(4, 1, 28, 28), path, "old")
    before = path.read_bytes()
    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(GenzooError, match="samples.png"):
        figures.save_samples(torch.ones(4, 1, 28, 28), path, "new")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert only_file(tmp_path) == ["samples.png"]


def test_a_process_killed_in_the_middle_of_a_write_leaves_the_previous_file(tmp_path):
    """Not a simulation: the writing process really dies (SIGKILL) halfway through."""
    path = tmp_path / FILENAME
    path.write_bytes(b"the previous checkpoint")
    script = (
        "import os, signal, sys\n"
        "from genzoo.files import atomic_write\n"
        "def write(f):\n"
        "    f.write(b'half of the new')\n"
        "    f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "atomic_write(sys.argv[1], write)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], timeout=120)
    assert done.returncode == -9
    assert path.read_bytes() == b"the previous checkpoint"


def test_atomic_writes_keep_permissions_instead_of_mkstemps_0600(tmp_path):
    """Regression: every checkpoint, config and picture came out readable by its owner only."""
    fresh = tmp_path / "fresh.json"
    atomic_write_json(fresh, {})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644 & ~umask
    shared = tmp_path / "shared.json"
    shared.write_text("{}")
    shared.chmod(0o640)
    atomic_write_json(shared, {"a": 1})
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640


def test_a_metrics_line_that_cannot_be_written_is_an_error_not_a_torn_line(tmp_path, monkeypatch):
    """A real short write: half the line reaches the file before the disk is full.

    The half line must go again, byte for byte: a crash could otherwise leave it in
    the middle of the file once the next line is appended after it.
    """
    append_metrics(tmp_path, {"epoch": 1, "step": 12, "loss": 1.0})
    before = (tmp_path / METRICS).read_bytes()
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[: len(data) // 2]))
    with pytest.raises(GenzooError, match="could not append to .*metrics.jsonl"):
        append_metrics(tmp_path, {"epoch": 2, "step": 24, "loss": 0.5})
    monkeypatch.undo()
    assert (tmp_path / METRICS).read_bytes() == before
    append_metrics(tmp_path, {"epoch": 2, "step": 24, "loss": 0.5})
    assert read_metrics(tmp_path) == [{"epoch": 1, "step": 12, "loss": 1.0}, {"epoch": 2, "step": 24, "loss": 0.5}]


def test_disk_full_mid_run_is_one_line_the_last_checkpoint_survives_and_resume_finishes(
        data_root, tmp_path, monkeypatch, capsys):
    real_save = torch.save
    calls = []

    def fill_up_on_the_second_checkpoint(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            half_then_disk_full(obj, f)
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fill_up_on_the_second_checkpoint)
    run = tmp_path / "run"
    code, out, err = run_main(
        ["train", "vae", "--latent", "2", "--epochs", "2", "--batch-size", "10", "--device", "cpu",
         "--data-root", str(data_root), "--test-limit", "20", "--out", str(run)], capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last == (f"Error: could not write {run / FILENAME}: No space left on device; "
                    "the previous version, if any, is intact")
    assert "Traceback" not in err
    assert load_checkpoint(run)["position"]["epoch"] == 1  # epoch 1's checkpoint, whole
    assert not list(run.glob(".*.tmp"))

    monkeypatch.setattr(torch, "save", real_save)  # space freed: resume finishes the run
    resume_run(run)
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]


# -- divergence ------------------------------------------------------------------------


class Fragile(Model):
    """Fits one number to the mean pixel; at ``bad_step`` its loss or its weights go bad."""

    bad_step: int | None = None
    breaks: str = "loss"

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.register_buffer("running_var", torch.ones(()))  # as a BatchNorm's
        self.steps = 0

    automatic_optimization = False

    def training_step(self, x, optimizers):
        self.steps += 1
        opt = optimizers["adam"]
        opt.zero_grad()
        loss = (self.w - x.flatten(1).mean(1)) ** 2
        if self.steps == self.bad_step and self.breaks == "loss":
            loss = loss * float("nan")  # and so its gradient, and so the weights
        loss.mean().backward()
        opt.step()
        if self.steps == self.bad_step and self.breaks == "weights":
            with torch.no_grad():
                self.w.fill_(float("inf"))  # the update broke the weights; this loss was fine
        if self.steps == self.bad_step and self.breaks == "buffer":
            self.running_var.fill_(float("inf"))  # as a BatchNorm's at a huge learning rate; parameters fine
        if self.steps == self.bad_step and self.breaks == "moments":
            opt.state[self.w]["exp_avg_sq"].fill_(float("inf"))  # as Adam's squares overflow at lr 1e6; weights fine
        return {"loss": loss}

    def evaluate(self, x):
        return {"loss": (self.w - x.flatten(1).mean(1)) ** 2}


class NaNLoss(Fragile):
    bad_step = 12 + 3  # epoch 2, step 3
    breaks = "loss"


class InfWeights(Fragile):
    bad_step = 10  # epoch 1, step 10, a checkpoint step with --checkpoint-every 5
    breaks = "weights"


class InfMoments(Fragile):
    bad_step = 10
    breaks = "moments"


class InfBuffer(Fragile):
    bad_step = 10
    breaks = "buffer"


class FragilePlugin:
    @hookimpl
    def register_models(self, register):
        register("nan-loss", NaNLoss)
        register("inf-weights", InfWeights)
        register("inf-moments", InfMoments)
        register("inf-buffer", InfBuffer)


def train_fragile(model: str, data_root: Path, run: Path, capsys, *extra: str) -> tuple[int, str, str]:
    return run_main(["train", model, "--epochs", "2", "--batch-size", "10", "--device", "cpu",
                     "--data-root", str(data_root), "--test-limit", "20", "--out", str(run), *extra], capsys)


def test_a_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(
        genzoo_register, data_root, tmp_path, capsys):
    genzoo_register(FragilePlugin(), "fragile")
    run = tmp_path / "run"
    code, out, err = train_fragile("nan-loss", data_root, run, capsys)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"Error: training diverged: non-finite loss at epoch 2, step 3; "
        f"the last good checkpoint is kept at {run / FILENAME}")
    assert "Traceback" not in err
    state = load_checkpoint(run)
    assert (state["position"]["epoch"], state["position"]["step"]) == (1, 0)
    assert torch.isfinite(state["model_state"]["w"])
    assert [r["epoch"] for r in read_metrics(run)] == [1]


def test_weights_that_went_infinite_are_never_checkpointed(genzoo_register, data_root, tmp_path, capsys):
    """The loss of the step that broke the weights was finite: the check before saving catches it."""
    genzoo_register(FragilePlugin(), "fragile")
    run = tmp_path / "run"
    code, out, err = train_fragile("inf-weights", data_root, run, capsys, "--checkpoint-every", "5")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"Error: training diverged: non-finite weights ('w') at epoch 1, step 10; "
        f"the last good checkpoint is kept at {run / FILENAME}")
    state = load_checkpoint(run)
    assert (state["position"]["epoch"], state["position"]["step"]) == (0, 5)
    assert torch.isfinite(state["model_state"]["w"])
    assert not (run / METRICS).exists()


def test_a_buffer_that_went_infinite_is_never_checkpointed(genzoo_register, data_root, tmp_path, capsys):
    """Sixth hostile pass F1: dcgan at --lr 7e7 saved an infinite BatchNorm running_var with finite parameters
    (exit 0); eval, resume, sample and export then refused the checkpoint as damaged."""
    genzoo_register(FragilePlugin(), "fragile")
    run = tmp_path / "run"
    code, out, err = train_fragile("inf-buffer", data_root, run, capsys, "--checkpoint-every", "5")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"Error: training diverged: non-finite weights ('running_var') at epoch 1, step 10; "
        f"the last good checkpoint is kept at {run / FILENAME}")
    state = load_checkpoint(run)  # the loader's own check of every tensor passes
    assert (state["position"]["epoch"], state["position"]["step"]) == (0, 5)
    assert torch.isfinite(state["model_state"]["running_var"])


def test_an_optimiser_state_that_went_infinite_is_never_checkpointed(genzoo_register, data_root, tmp_path, capsys):
    """Fifth hostile pass: at --lr 1e6 Adam's exp_avg_sq overflowed while loss and weights stayed finite; the
    checkpoint saved on SIGTERM was then refused by the resume its own message advised, losing every step."""
    genzoo_register(FragilePlugin(), "fragile")
    run = tmp_path / "run"
    code, out, err = train_fragile("inf-moments", data_root, run, capsys, "--checkpoint-every", "5")
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        f"Error: training diverged: non-finite optimiser state ('adam') at epoch 1, step 10; "
        f"the last good checkpoint is kept at {run / FILENAME}")
    state = load_checkpoint(run)
    assert (state["position"]["epoch"], state["position"]["step"]) == (0, 5)
    assert all(bool(torch.isfinite(v).all()) for entry in state["optimizers"]["adam"]["state"].values()
               for v in entry.values() if isinstance(v, torch.Tensor))


def test_a_huge_learning_rate_diverges_with_a_clear_message(data_root, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_main(
        ["train", "vae", "--latent", "2", "--lr", "1e12", "--epochs", "1", "--batch-size", "10",
         "--device", "cpu", "--data-root", str(data_root), "--test-limit", "20", "--out", str(run)], capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: training diverged: non-finite ") and "at epoch 1, step " in last
    assert last.endswith("no checkpoint had been written yet")
    assert "Traceback" not in err
    assert not (run / FILENAME).exists() and not (run / METRICS).exists()
