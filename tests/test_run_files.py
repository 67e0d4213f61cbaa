"""Run files that lie, are of the wrong shape, or are not files at all (issue 10).

A run folder's ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` and ``eval.json``
can be torn by a crash, edited by hand or replaced by a stranger. ``eval``, ``resume``
and ``compare --from-runs`` must then give one line (or, for lost metrics, one
consistent answer) and never report stale weights, touch a file, or hang.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
from reliability_support import (  # noqa: F401 - one_thread is a fixture
    assert_one_line_error,
    assert_same_run,
    one_thread,
    run_main,
    snapshot,
    write_fake_mnist,
)

from genzoo import GenzooError
from genzoo.building import load_model
from genzoo.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from genzoo.run_folder import CONFIG, METRICS, read_metrics
from genzoo.train_config import TrainConfig
from genzoo.trainer import Trainer
from genzoo.training import resume_run, start_run

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = {"latent": 2, "hidden": 16}
EVAL = ["--fid-samples", "0", "--iwae-k", "2", "--device", "cpu"]


def train_config(data_root: Path) -> TrainConfig:
    """Two epochs of 12 steps (120 fake images in batches of 10), tested on 20 images."""
    return TrainConfig(model="vae", epochs=2, batch_size=10, seed=3, device="cpu", data_root=str(data_root),
                       test_limit=20)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fake data and one finished two-epoch VAE run, trained once for this file."""
    root = tmp_path_factory.mktemp("made")
    write_fake_mnist(root / "data")
    torch.set_num_threads(1)
    start_run(train_config(root / "data"), OPTIONS, out=root / "finished")
    return root


@pytest.fixture
def run(made: Path, tmp_path: Path) -> Path:
    """A fresh copy of the finished run, as ``tmp_path/run``."""
    return Path(shutil.copytree(made / "finished", tmp_path / "run"))




def refused(args: list[str], folder: Path, capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """Run genzoo; one line, exit 1, and every file under ``folder`` byte for byte as before."""
    before = snapshot(folder)
    code, out, err = run_main(args, capsys)
    line = assert_one_line_error(code, err, *needles)
    assert snapshot(folder) == before
    return line


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


# -- a checkpoint behind its metrics (§2) -------------------------------------------------


def crash_before_the_last_checkpoint(data_root: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run killed after epoch 2's metric line was written but before its checkpoint was."""
    original = Trainer.save

    def crash_at_the_end_of_epoch_2(self: Trainer) -> None:
        if self.position.epoch == 2:
            raise Crash
        original(self)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "save", crash_at_the_end_of_epoch_2)
        with pytest.raises(Crash):
            start_run(train_config(data_root), OPTIONS, out=out)
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]
    assert load_checkpoint(out)["position"]["epoch"] == 1
    return out


def test_eval_and_compare_refuse_a_checkpoint_behind_the_metrics_and_resume_redoes_exactly_that(
        made, tmp_path, monkeypatch, capsys):
    """Before: eval and compare --from-runs reported epoch 1's weights as the finished run, exit 0."""
    monkeypatch.chdir(tmp_path)
    run = crash_before_the_last_checkpoint(made / "data", tmp_path / "run", monkeypatch)
    resume = f"genzoo resume {run}"
    refused(["eval", str(run), *EVAL], tmp_path, capsys, "checkpoint holds epoch 1", "epoch 2", resume)
    refused(["compare", "--from-runs", str(run), "--out", "cmp", *EVAL], tmp_path, capsys, resume)
    assert not (tmp_path / "cmp").exists()
    with pytest.raises(GenzooError, match="genzoo resume"):
        load_model(run)

    steps: list[int] = []
    original = Trainer._epoch

    def count(self: Trainer, progress: Any) -> dict[str, Any]:
        steps.append(self.steps_per_epoch - self.position.step)
        return original(self, progress)

    monkeypatch.setattr(Trainer, "_epoch", count)
    result = resume_run(run)
    assert steps == [12] and [r["epoch"] for r in result.records] == [2]  # epoch 2, once, nothing more
    assert [json.loads(line)["epoch"] for line in (run / METRICS).read_text().splitlines()] == [1, 2]
    assert_same_run(run, made / "finished")
    code, out, err = run_main(["eval", str(run), *EVAL], capsys)
    assert code == 0, err


# -- checkpoint positions out of range (§2) ---------------------------------------------------


def mid_epoch_2(**changes: Any) -> dict[str, Any]:
    """A consistent position 5 steps into epoch 2, then ``changes``."""
    return {"epoch": 1, "step": 5, "global_step": 17, "sums": {"loss": 300.0}, "images": 50, "seconds": 1.0,
            **changes}


BAD_POSITIONS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "epoch -2": lambda p: {**p, "epoch": -2},
    "epoch past the planned 2": lambda p: {**p, "epoch": 3, "global_step": 36},
    "images 0 with step 5": lambda p: mid_epoch_2(images=0),
    "images that are not the steps' images": lambda p: mid_epoch_2(images=40),
    "images at step 0": lambda p: {**p, "images": 50},
    "sums at step 0": lambda p: {**p, "sums": {"loss": 1.0}},
    "a NaN sum": lambda p: mid_epoch_2(sums={"loss": math.nan}),
    "an infinite sum": lambda p: mid_epoch_2(sums={"loss": math.inf}),
    "a sum that is a string": lambda p: mid_epoch_2(sums={"loss": "1"}),
    "sums that are a list": lambda p: mid_epoch_2(sums=[1.0]),
    "negative global_step": lambda p: {**p, "global_step": -1},
    "global_step off by one": lambda p: {**p, "global_step": 23},
    "step past the epoch's 12": lambda p: mid_epoch_2(step=13, global_step=25, images=120),
    "negative step": lambda p: mid_epoch_2(step=-1, global_step=11),
    "epoch as a string": lambda p: {**p, "epoch": "2"},
    "epoch as a float": lambda p: {**p, "epoch": 2.0},
    "epoch as a bool": lambda p: {**p, "epoch": True, "global_step": 12},
    "negative seconds": lambda p: {**p, "seconds": -1.0},
    "NaN seconds": lambda p: {**p, "seconds": math.nan},
    "a missing field": lambda p: {k: v for k, v in p.items() if k != "images"},
    "an unknown field": lambda p: {**p, "bogus": 1},
    "not a mapping": lambda p: [p["epoch"], p["step"]],
}


@pytest.mark.parametrize("name", list(BAD_POSITIONS))
def test_an_out_of_range_checkpoint_position_is_refused_before_any_file_changes(name, run, capsys):
    """Before: epoch -2 deleted every metric line and retrained; images 0 emptied metrics.jsonl,
    then ZeroDivisionError; others trained on from a position that never existed."""
    state = load_checkpoint(run)
    state["position"] = BAD_POSITIONS[name](state["position"])
    save_checkpoint(run / FILENAME, state)
    refused(["resume", str(run)], run.parent, capsys, f"{run / FILENAME}")
    refused(["eval", str(run), *EVAL], run.parent, capsys, str(run))  # impossible, or not finished


@pytest.mark.parametrize("name,change", [
    ("no rng", lambda s: s.pop("rng")),
    ("a torch rng state of floats", lambda s: s["rng"].update(torch=torch.zeros(5))),
    ("a shuffle state of the wrong size", lambda s: s["rng"].update(shuffle_epoch_start=torch.zeros(3, dtype=torch.uint8))),
    ("no train_config", lambda s: s.pop("train_config")),
    ("another sample_shape", lambda s: s.update(sample_shape=[1, 14, 14])),
])
def test_a_checkpoint_with_a_broken_rng_or_identity_is_refused_before_any_file_changes(name, change, run, capsys):
    state = load_checkpoint(run)
    change(state)
    save_checkpoint(run / FILENAME, state)
    refused(["resume", str(run)], run.parent, capsys, f"{run / FILENAME}")


# -- config.json and metrics.jsonl of the wrong shape (§3) -----------------------------------


def edit_config(run: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    config = json.loads((run / CONFIG).read_text())
    changed = change(config)
    (run / CONFIG).write_text(json.dumps(config if changed is None else changed))


BAD_CONFIGS: dict[str, Callable[[Path], None]] = {
    "no model": lambda r: edit_config(r, lambda c: c.pop("model")),
    "no sample_shape": lambda r: edit_config(r, lambda c: c.pop("sample_shape")),
    "model_config 5": lambda r: edit_config(r, lambda c: c.update(model_config=5)),
    "train_config 'x'": lambda r: edit_config(r, lambda c: c.update(train_config="x")),
    "epochs '1'": lambda r: edit_config(r, lambda c: c["train_config"].update(epochs="1")),
    "epochs true": lambda r: edit_config(r, lambda c: c["train_config"].update(epochs=True)),
    "no epochs": lambda r: edit_config(r, lambda c: c["train_config"].pop("epochs")),
    "an unknown training setting": lambda r: edit_config(r, lambda c: c["train_config"].update(speed=3)),
    "model 5": lambda r: edit_config(r, lambda c: c.update(model=5)),
    "sample_shape [0]": lambda r: edit_config(r, lambda c: c.update(sample_shape=[0])),
    "sample_shape 'x'": lambda r: edit_config(r, lambda c: c.update(sample_shape="x")),
    "train_config for another model": lambda r: edit_config(r, lambda c: c["train_config"].update(model="gan")),
    "a list": lambda r: edit_config(r, lambda c: [c]),
    "a byte 0xff": lambda r: (r / CONFIG).write_bytes(b'{"model": "\xff"}'),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_a_config_of_the_wrong_shape_is_one_line_in_eval_resume_and_compare(name, run, tmp_path, capsys,
                                                                             monkeypatch):
    """Before: KeyError, TypeError, AttributeError or UnicodeDecodeError tracebacks."""
    monkeypatch.chdir(tmp_path)
    BAD_CONFIGS[name](run)
    needle = str(run / CONFIG)
    refused(["eval", str(run), *EVAL], tmp_path, capsys, needle)
    refused(["resume", str(run)], tmp_path, capsys, needle)
    refused(["compare", "--from-runs", str(run), "--out", "cmp", *EVAL], tmp_path, capsys, needle)
    assert not (tmp_path / "cmp").exists()


BAD_METRICS = {
    "a line [1]": b"[1]\n",
    "a line {}": b"{}\n",
    "an epoch as a string": b'{"epoch": "1", "step": 12}\n',
    "a byte 0xff": b'{"epoch": 1, "step": 12, "test_loss": "\xff"}\n',
    "garbage": b"this is not json\n",
    "an epoch listed twice": None,  # the first line again
}


@pytest.mark.parametrize("name", list(BAD_METRICS))
def test_a_metric_line_of_the_wrong_shape_in_the_middle_is_corruption_not_skipped(name, run, tmp_path, capsys,
                                                                                   monkeypatch):
    """Before: tracebacks for [1] and {}; garbage lines were skipped without a word."""
    monkeypatch.chdir(tmp_path)
    first, second = (run / METRICS).read_bytes().splitlines(keepends=True)
    (run / METRICS).write_bytes(first + (BAD_METRICS[name] or first) + second)
    needle = f"{run / METRICS} line 2"
    refused(["eval", str(run), *EVAL], tmp_path, capsys, needle)
    refused(["resume", str(run)], tmp_path, capsys, needle)
    refused(["compare", "--from-runs", str(run), "--out", "cmp", *EVAL], tmp_path, capsys, needle)


@pytest.mark.parametrize("line", [0, 1], ids=["epoch 1", "epoch 2"])
def test_metric_lines_that_disagree_with_the_checkpoint_are_refused(line, run, tmp_path, capsys):
    """A line whose epoch ends at another step than the checkpoint's epochs: another run's metrics."""
    lines = (run / METRICS).read_text().splitlines(keepends=True)
    record = json.loads(lines[line])
    lines[line] = json.dumps({**record, "step": record["step"] + 1}) + "\n"
    (run / METRICS).write_text("".join(lines))
    refused(["eval", str(run), *EVAL], tmp_path, capsys, f"ends epoch {line + 1} at step {12 * (line + 1) + 1}")
    refused(["resume", str(run)], tmp_path, capsys, f"ends epoch {line + 1} at step {12 * (line + 1) + 1}")


def test_a_torn_last_line_is_what_a_crash_leaves_and_is_ignored(run):
    whole = read_metrics(run)
    with open(run / METRICS, "ab") as f:
        f.write(b'{"epoch": 3, "train_nel')
    assert read_metrics(run) == whole


# -- things that are not regular files (§4) -------------------------------------------------


@contextmanager
def no_hang(seconds: int = 60) -> Iterator[None]:
    """Turn a hang into a test failure (a safety net, not a measurement)."""
    def hung(signum: int, frame: Any) -> None:
        raise TimeoutError("genzoo hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("name,commands", [
    (CONFIG, ["eval", "resume"]),
    (METRICS, ["eval", "resume"]),
    (FILENAME, ["eval", "resume"]),
    ("eval.json", ["eval"]),
])
def test_a_fifo_in_place_of_a_run_file_is_refused_not_waited_on(name, commands, run, tmp_path, capsys):
    """Before: a FIFO as config.json blocked eval and resume forever, with no output."""
    (run / name).unlink(missing_ok=True)
    os.mkfifo(run / name)
    for command in commands:
        args = [command, str(run), *(EVAL if command == "eval" else [])]
        with no_hang():
            code, out, err = run_main(args, capsys)
        assert_one_line_error(code, err, f"{run / name} is not a regular file")


# -- eval.json keeps what was measured (§2) -----------------------------------------------------


def test_an_eval_without_fid_keeps_the_fid_measured_before_with_its_settings(run, tmp_path, capsys, monkeypatch):
    """Before: ``--fid-samples 0`` replaced an eval.json holding FIDs with one holding none."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    code, out, err = run_main(["eval", str(run), "--fid-samples", "30", "--features", "mnist",
                               "--iwae-k", "2", "--device", "cpu"], capsys)
    assert code == 0, err
    first = json.loads((run / "eval.json").read_text())
    assert first["fid"]["mnist/model"]["samples"] == 30

    code, out, err = run_main(["eval", str(run), "--fid-samples", "0", "--iwae-k", "3", "--device", "cpu"], capsys)
    assert code == 0, err
    merged = json.loads((run / "eval.json").read_text())
    assert merged["iwae"]["k"] == 3 and merged["eval_config"]["fid_samples"] == 0  # this evaluation
    assert merged["fid"]["mnist/model"] == first["fid"]["mnist/model"]  # the earlier FID, kept
    kept = merged["kept"]["fid.mnist/model"]  # with the settings it was measured under
    assert kept["eval_config"] == first["eval_config"] and kept["test_images"] == first["test_images"]
    assert kept["evaluated_at"] == first["environment"]["evaluated_at"]
    assert "fid" not in merged["unavailable"]
    assert "kept" in err and "fid.mnist/model" in err

    code, out, err = run_main(["eval", str(run), *EVAL], capsys)  # kept again, still with its own settings
    assert code == 0, err
    again = json.loads((run / "eval.json").read_text())
    assert again["fid"]["mnist/model"] == first["fid"]["mnist/model"] and again["kept"]["fid.mnist/model"] == kept


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'{"fid": 5}', b'{"fid": {"mnist": 1}}', b"\xff"],
                         ids=["not json", "a list", "fid a number", "a fid entry a number", "a byte 0xff"])
def test_a_malformed_eval_json_is_one_line_before_any_work_and_stays(content, run, capsys):
    (run / "eval.json").write_bytes(content)
    refused(["eval", str(run), *EVAL], run.parent, capsys, f"{run / 'eval.json'}")


# -- metrics.jsonl lost (§5) ------------------------------------------------------------------


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_with_metrics_jsonl_lost_eval_and_resume_agree_that_the_checkpoint_holds_the_finished_run(
        run, capsys):
    """Before: eval said 'finished 0 of 2 epochs; resume it', resume said 'already complete'."""
    (run / METRICS).unlink()
    warning = f"genzoo: warning: {run / METRICS} has lost the lines of epochs 1-2"
    code, out, err = run_main(["eval", str(run), *EVAL], capsys)
    assert code == 0, err
    assert warning in err and "Traceback" not in err
    saved = json.loads((run / "eval.json").read_text())
    assert "epochs 1-2" in saved["unavailable"]["training"] and saved["training"] is None

    before = snapshot(run)
    code, out, err = run_main(["resume", str(run)], capsys)
    assert code == 0, err
    assert "already complete" in out and warning in err
    assert not (run / METRICS).exists()  # nothing invented
    assert {k: v for k, v in snapshot(run).items() if not k.endswith(".png")} == \
        {k: v for k, v in before.items() if not k.endswith(".png")}

    code, out, err = run_main(["compare", "--from-runs", str(run), "--out", str(run.parent / "cmp"), *EVAL], capsys)
    assert code == 0, err
    assert warning in err
    (compared,) = json.loads((run.parent / "cmp" / "results.json").read_text())["models"]
    assert compared["training"] is None and "epochs 1-2" in compared["unavailable"]["training"]
