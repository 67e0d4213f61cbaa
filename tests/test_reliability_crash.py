"""Real crashes in a subprocess: SIGKILL mid-epoch then resume, Ctrl-C (SIGINT) and SIGTERM.

The subprocess is genzoo itself (``reliability_support.py`` run as a script, which
adds the steered test models); it pauses at a chosen step and announces it in a
file, so the signal always lands mid-epoch, without guessing with sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    GO_FILE,
    PAUSE_AT,
    PAUSED_FILE,
    STEPS_FILE,
    SteeredPlugin,
    SteeredVAE,
    assert_same_run,
    data_root,
    one_thread,
    reset_steering,
    run_main,
    script_command,
    subprocess_env,
)

from genzoo.checkpoint import FILENAME, load_checkpoint
from genzoo.run_folder import METRICS, read_metrics
from genzoo.training import resume_run

STEPS_PER_EPOCH = 12
EPOCHS = 2
EVERY = 5


def train_args(data_root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "steered-vae", "--latent", "2", "--epochs", str(EPOCHS), "--batch-size", "10",
            "--device", "cpu", "--data-root", str(data_root), "--test-limit", "20", "--seed", "7",
            "--out", str(out), *extra]


def wait_for_pause(flag: Path, process: subprocess.Popen, log: Path) -> None:
    """Wait until the subprocess says it paused; fail at once if it exits instead."""
    deadline = time.monotonic() + 120  # a safety net for a hung test, not a measurement
    while not flag.exists():
        if process.poll() is not None:
            pytest.fail(f"genzoo exited with {process.returncode} before pausing:\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("genzoo never reached the step it should pause at")
        time.sleep(0.02)


def steps_taken(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_kill_9_mid_epoch_then_resume_completes_with_nothing_doubled(data_root, tmp_path, genzoo_register, capsys):
    run, reference = tmp_path / "run", tmp_path / "reference"
    paused, steps1, steps2 = tmp_path / "paused", tmp_path / "steps1", tmp_path / "steps2"
    kill_at = STEPS_PER_EPOCH + 8  # epoch 2, step 8; the last checkpoint before it is at epoch 2, step 5
    with open(tmp_path / "log1", "w") as log1:
        victim = subprocess.Popen(
            script_command(*train_args(data_root, run, "--checkpoint-every", str(EVERY))),
            env=subprocess_env(**{STEPS_FILE: str(steps1), PAUSE_AT: str(kill_at), PAUSED_FILE: str(paused)}),
            stdout=log1, stderr=subprocess.STDOUT)
        # Meanwhile, here, the uninterrupted run to compare with (same seed, settings, one thread).
        reset_steering()
        genzoo_register(SteeredPlugin(), "steered")
        code, _, err = run_main(train_args(data_root, reference, "--checkpoint-every", str(EVERY)), capsys)
        assert code == 0, err
        wait_for_pause(paused, victim, tmp_path / "log1")
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=60) == -signal.SIGKILL

    checkpoint = load_checkpoint(run)["position"]
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, EVERY)
    assert [r["epoch"] for r in read_metrics(run)] == [1]

    resumed = subprocess.run(script_command("resume", str(run)), env=subprocess_env(**{STEPS_FILE: str(steps2)}),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"run folder: {run}" in resumed.stdout and "final test metrics (epoch 2" in resumed.stdout

    # Work redone: the steps trained after the last checkpoint and lost with the process.
    redone = steps_taken(steps1) + steps_taken(steps2) - EPOCHS * STEPS_PER_EPOCH
    assert steps_taken(steps1) == kill_at
    assert redone == kill_at - (STEPS_PER_EPOCH + EVERY) == 3
    assert redone <= EVERY

    # metrics.jsonl: whole lines only, each epoch exactly once.
    text = (run / METRICS).read_text()
    assert text.endswith("\n")
    assert [json.loads(line)["epoch"] for line in text.splitlines()] == [1, 2]
    assert not list(run.glob(".*.tmp"))
    # And the run ends exactly where the uninterrupted one did: weights bit for bit, metrics to 1e-6.
    assert_same_run(run, reference)


def interrupt_training_with(signum: int, data_root: Path, tmp_path: Path, genzoo_register) -> None:
    """Send ``signum`` to a ``genzoo train`` subprocess paused at step 8 and check what it leaves.

    It must finish the step, checkpoint it, say how to resume as its last line, exit
    with 128 + the signal's number, and the run must then resume to the end.
    """
    run, paused, go = tmp_path / "run", tmp_path / "paused", tmp_path / "go"
    interrupt_at = 8  # mid-epoch 1, with no periodic checkpoint before it
    with open(tmp_path / "log", "w") as log:
        process = subprocess.Popen(
            script_command(*train_args(data_root, run)),
            env=subprocess_env(**{PAUSE_AT: str(interrupt_at), PAUSED_FILE: str(paused), GO_FILE: str(go)}),
            stdout=subprocess.DEVNULL, stderr=log)
        wait_for_pause(paused, process, tmp_path / "log")
        process.send_signal(signum)
        go.write_text("go")  # let the paused step return: the trainer then sees the signal
        assert process.wait(timeout=60) == 128 + signum, (tmp_path / "log").read_text()

    err = (tmp_path / "log").read_text()
    assert err.strip().splitlines()[-1] == (
        f"Interrupted: checkpoint saved to {run / FILENAME}; resume with: genzoo resume {run}")
    assert "Traceback" not in err
    position = load_checkpoint(run)["position"]
    assert (position["epoch"], position["step"], position["global_step"]) == (0, interrupt_at, interrupt_at)

    reset_steering()
    genzoo_register(SteeredPlugin(), "steered")
    resume_run(run)
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]


def test_ctrl_c_saves_a_checkpoint_prints_how_to_resume_and_exits_130(data_root, tmp_path, genzoo_register):
    interrupt_training_with(signal.SIGINT, data_root, tmp_path, genzoo_register)


def test_sigterm_is_handled_as_ctrl_c_is_and_exits_143(data_root, tmp_path, genzoo_register):
    """``kill``, batch schedulers and ``docker stop`` send SIGTERM: it used to end the run without a word."""
    interrupt_training_with(signal.SIGTERM, data_root, tmp_path, genzoo_register)


def test_sighup_of_a_closed_terminal_is_handled_as_ctrl_c_is_and_exits_129(data_root, tmp_path, genzoo_register):
    """A closed terminal or a dropped ssh connection sends SIGHUP: it ended the run at once (exit 129, no
    checkpoint of the epoch's steps), as the tenth hostile pass saw."""
    interrupt_training_with(signal.SIGHUP, data_root, tmp_path, genzoo_register)


def test_sighup_that_nohup_ignores_stays_ignored(data_root, tmp_path):
    """``nohup genzoo train ...``: the hangup is ignored, as asked, and the run goes on to its end."""
    run, paused, go = tmp_path / "run", tmp_path / "paused", tmp_path / "go"
    with open(tmp_path / "log", "w") as log:
        process = subprocess.Popen(
            script_command(*train_args(data_root, run)),
            env=subprocess_env(**{PAUSE_AT: "8", PAUSED_FILE: str(paused), GO_FILE: str(go)}),
            stdout=subprocess.DEVNULL, stderr=log, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
        wait_for_pause(paused, process, tmp_path / "log")
        process.send_signal(signal.SIGHUP)
        go.write_text("go")
        assert process.wait(timeout=120) == 0, (tmp_path / "log").read_text()
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_stdout_after_a_finished_run_says_only_the_printing_failed(data_root, tmp_path):
    """``genzoo train ... > /dev/full`` used to end with a bare ``Error: No space left on device``."""
    run = tmp_path / "run"
    with open("/dev/full", "w") as full:
        done = subprocess.run(script_command(*train_args(data_root, run)), stdout=full, stderr=subprocess.PIPE,
                              text=True, env=subprocess_env(), timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: could not write to standard output: No space left on device; only the printing failed "
        "(the command's work is done and its files are written)")
    assert "Traceback" not in done.stderr
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]  # the run itself is whole
    assert load_checkpoint(run)["position"]["epoch"] == EPOCHS


def test_a_reader_that_left_the_pipe_early_gets_no_traceback(tmp_path):
    """``genzoo plugins | head -1``: the reader closed its end, so there is nothing to say; exit 1."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(script_command("plugins"), stdout=write, stderr=subprocess.PIPE, text=True,
                              env=subprocess_env(), timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (1, "")


def test_sigterm_outside_training_stops_at_once_with_a_word_and_exits_143(data_root, tmp_path, monkeypatch, capsys):
    """While data loads (no checkpoint to save yet) SIGTERM stops as Ctrl-C does: ``Aborted.``, not a silent death."""
    import genzoo.training

    def terminated(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(genzoo.training, "load_splits", terminated)
    code, _, err = run_main(["train", "vae", "--data-root", str(data_root), "--out", str(tmp_path / "run")], capsys)
    assert (code, err.strip()) == (143, "Aborted.")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # main put the handler back


def test_a_second_sigterm_stops_at_once_without_a_checkpoint_and_exits_143(data_root, tmp_path, genzoo_register,
                                                                           capsys):
    """As a second Ctrl-C does, for a step that hangs; the handlers are put back."""
    reset_steering()
    genzoo_register(SteeredPlugin(), "steered")
    SteeredVAE.interrupt_at, SteeredVAE.presses, SteeredVAE.interrupt_signal = 3, 2, signal.SIGTERM
    try:
        code, _, err = run_main(train_args(data_root, tmp_path / "run"), capsys)
    finally:
        reset_steering()
    assert (code, err.strip().splitlines()[-1]) == (143, "Aborted.")
    assert not (tmp_path / "run" / FILENAME).exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
