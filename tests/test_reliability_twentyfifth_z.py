"""Reliability: what the twenty-second hostile pass left open, fixed (rows in docs/reliability.md).

Plugins F2: a child a logger started through ``subprocess`` (a tracking client's background service) inherited
genzoo's standard output, so a pipe's reader (``genzoo train ... | tee log``) waited for it with no word after genzoo
exited. Plugins M1: a stat named ``'nelbo '`` was filed beside ``nelbo``. Each test failed before its fix.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import assert_one_line_error, data_root, run_main, subprocess_env  # noqa: F401 - a fixture
from test_reliability_twentyfourth_d3 import _alive

from genzoo import hookimpl
from genzoo.cli import THREAD_WAIT_S

TINY = ["--epochs", "1", "--train-limit", "100", "--test-limit", "40", "--batch-size", "50", "--device", "cpu",
        "--latent", "2", "--hidden", "16"]
#: Seconds a tiny run may take on a loaded two-core machine, exit included.
RUN_S = 120

#: ``genzoo`` with a logger that starts, at its first epoch, ``sleep`` through ``subprocess`` as $GENZOO_TEST_CHILD
#: says: holding genzoo's output for ever ("holds"), for a second ("brief"), or with its output elsewhere
#: ("elsewhere"); its pid is written to $GENZOO_TEST_PID.
SPAWNING_SCRIPT = """
import os, subprocess, sys
from pathlib import Path
from genzoo import Logger, hookimpl
from genzoo.cli import main
from genzoo.plugin_registry import register_plugin

HOW = os.environ["GENZOO_TEST_CHILD"]

class Spawning(Logger):
    def log_epoch(self, record, samples):
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL} if HOW == "elsewhere" else {}
        child = subprocess.Popen(["sleep", "1" if HOW == "brief" else "600"], **quiet)
        Path(os.environ["GENZOO_TEST_PID"]).write_text(str(child.pid))

class Plugin:
    @hookimpl
    def register_loggers(self, register):
        register("spawning25", Spawning)

register_plugin(Plugin(), "spawning25", "test-spawning25")
sys.argv = ["genzoo", *sys.argv[1:]]
main()
"""


def _piped_run(data_root: Path, tmp_path: Path, how: str) -> tuple[int, str, int]:
    """``genzoo train`` with the logger, its output read through pipes to their end as ``| tee`` reads it: exit
    code, stderr, the child's pid."""
    pid_file = tmp_path / "pid"
    genzoo = subprocess.Popen(
        [sys.executable, "-c", SPAWNING_SCRIPT, "train", "vae", "--data-root", str(data_root), *TINY, "--log",
         "spawning25", "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=subprocess_env(GENZOO_TEST_CHILD=how, GENZOO_TEST_PID=str(pid_file)))
    try:
        _, err = genzoo.communicate(timeout=RUN_S + THREAD_WAIT_S + 30)  # both pipes to their end, and the exit
    except BaseException:  # (not after a run that ended: the child a test expects alive was killed here, and the
        genzoo.kill()      # test passed only when it looked before the SIGKILL took effect)
        if pid_file.is_file() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        raise
    return genzoo.returncode, err.decode(), int(pid_file.read_text())


def test_a_subprocess_child_holding_genzoos_output_gets_the_wait_then_is_ended(data_root: Path,
                                                                             tmp_path: Path) -> None:
    """Plugins F2. Before: genzoo exited 0 at once, but its pipes stayed open until the ``sleep 600`` the logger
    started ended: the reader (here ``communicate``, as ``tee``) waited ten minutes with no word."""
    code, err, pid = _piped_run(data_root, tmp_path, "holds")
    lines = [line for line in err.splitlines() if "━" not in line]
    assert code == 0, err
    assert lines[-1] == (f"genzoo: warning: 1 child process started by plugin code ('sleep', pid {pid}, holding "
                         f"genzoo's output open) still running {THREAD_WAIT_S:g} s after the command; genzoo exits "
                         "without waiting for them, and ends its child processes"), err
    assert not _alive(pid)


def test_a_child_that_lets_go_of_the_output_is_left_alone_and_one_that_ends_is_waited_for(data_root: Path,
                                                                                       tmp_path: Path) -> None:
    """The F2 fix waits only for children holding the output: one whose output goes elsewhere (a service meant to
    outlive genzoo) neither holds the exit nor is ended, and one that ends by itself within the wait is waited for
    without a word."""
    (tmp_path / "elsewhere").mkdir()
    code, err, pid = _piped_run(data_root, tmp_path / "elsewhere", "elsewhere")
    assert code == 0 and "warning" not in err, err
    assert _alive(pid), "a child that let go of genzoo's output was ended"
    os.kill(pid, signal.SIGKILL)
    (tmp_path / "brief").mkdir()
    code, err, pid = _piped_run(data_root, tmp_path / "brief", "brief")
    assert code == 0 and "warning" not in err, err
    assert not _alive(pid)


class SpacedNameVAE(VAE):
    """Its loss also returns its KL term as ``'kl '``."""

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().loss(x)
        return {**out, "kl ": out["kl"]}


@pytest.fixture
def spaced(genzoo_register: Any) -> None:
    @hookimpl
    def register_models(register: Any) -> None:
        register("spacedname", SpacedNameVAE)

    genzoo_register(types.SimpleNamespace(register_models=register_models), "twentyfifth-z", "test-twentyfifth-z")


def test_a_stat_named_with_white_space_at_an_end_is_refused_before_the_run_folder(spaced: None, data_root: Path,
                                                                                  tmp_path: Path, capsys: Any) -> None:
    """Plugins M1. Before: trained, exit 0, metrics.jsonl holding ``test_kl`` and ``test_kl `` and the summary
    ``kl 3.1 kl  3.1``: one name twice to the eye. After: one line before the run folder, as the empty name."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "spacedname", *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert_one_line_error(code, err, "SpacedNameVAE.loss returned a value named by 'kl ', which starts or ends with "
                                     "white space")
    assert not run.exists()
