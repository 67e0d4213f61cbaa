"""Tenth hostile pass F2 and F7.

F2: a rank whose launcher died by kill -9 before the ranks had joined kept retrying the
launcher's store for minutes (the join timeout bounds torch's rendezvous, but its client
retries the connection past it), then printed an Error line into a terminal whose command
had long ended. F7: both of torch's variables that force weights-only loading on and off
make torch refuse every file, and genzoo's line blamed the checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from distributed_support import free_port
from reliability_support import subprocess_env, write_fake_mnist

from genzoo import GenzooError
from genzoo.checkpoint import load_checkpoint, save_checkpoint

#: A second rank of a launch whose store never comes: a client that retries connecting to it.
CLIENT = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}


def train_args(data: Path, out: Path) -> list[str]:
    return ["train", "ae", "--epochs", "1", "--batch-size", "32", "--latent", "4", "--train-limit", "64",
            "--test-limit", "16", "--device", "cpu", "--data-root", str(data), "--no-download", "--out", str(out)]


def test_a_rank_whose_launcher_was_killed_ends_at_once_and_says_nothing(tmp_path: Path) -> None:
    data = write_fake_mnist(tmp_path / "data")
    pid_file = tmp_path / "rank.pid"
    # The launcher stands in as a Python process that starts the rank and waits; kill -9 takes it away.
    launcher = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys; "
        f"p = subprocess.Popen([sys.executable, '-m', 'genzoo', *{train_args(data, tmp_path / 'run')!r}], "
        f"stdout=open({str(tmp_path / 'out')!r}, 'w'), stderr=open({str(tmp_path / 'err')!r}, 'w')); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); p.wait()")],
        env=subprocess_env(**CLIENT, MASTER_PORT=str(free_port()), GENZOO_JOIN_TIMEOUT="600"))
    deadline = time.monotonic() + 120
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(8)  # the rank is retrying the store by now
    rank = int(pid_file.read_text())
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 30  # before the fix: still retrying minutes later
    while time.monotonic() < deadline and Path(f"/proc/{rank}").exists() and "Z" not in _state(rank):
        time.sleep(0.2)
    alive = Path(f"/proc/{rank}").exists() and "Z" not in _state(rank)
    if alive:
        os.kill(rank, signal.SIGKILL)
    assert not alive
    assert (tmp_path / "err").read_text() == "" and not (tmp_path / "run").exists()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def test_a_client_whose_store_never_comes_gives_up_near_the_join_timeout(tmp_path: Path) -> None:
    """The wait that now watches the launcher still ends in the usual line when no one comes (torch's own timeout
    ends this one; genzoo's deadline, JOIN_GRACE seconds later, is the backstop for a client that keeps retrying)."""
    data = write_fake_mnist(tmp_path / "data")
    done = subprocess.run([sys.executable, "-m", "genzoo", *train_args(data, tmp_path / "run")],
                          env=subprocess_env(**CLIENT, MASTER_PORT=str(free_port()), GENZOO_JOIN_TIMEOUT="2"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("Error: no other training process joined within 2 s"), done.stderr
    assert not (tmp_path / "run").exists()


def test_both_forcing_variables_are_named_not_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model_state": {"w": torch.zeros(2)}})
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "yes")
    with pytest.raises(GenzooError, match="TORCH_FORCE_WEIGHTS_ONLY_LOAD and TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD are "
                                          "both set") as info:
        load_checkpoint(path)
    assert str(path) not in str(info.value)
    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    assert load_checkpoint(path)["model_state"]["w"].shape == (2,)  # one alone: loaded as ever
