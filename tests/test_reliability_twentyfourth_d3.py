"""Reliability: the twenty-first hostile pass's plugins F9, fixed (rows in docs/reliability.md).

What plugin code leaves running as a finished ``genzoo`` exits (an upload pool's task that never ends, a non-daemon
``multiprocessing`` child, an ``atexit`` flush that blocks) gets :data:`genzoo.cli.THREAD_WAIT_S` in all, then one
warning line naming it, and genzoo exits with its command's code; Ctrl-C during that wait ends it at once, without a
traceback; a normal exit, with an idle pool and a child that ends by itself, is not slowed and still waits for it.
Each run is a ``genzoo`` subprocess: the exit watched is the interpreter's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_support import data_root, subprocess_env  # noqa: F401 - data_root is a fixture

from genzoo.cli import THREAD_WAIT_S

TINY = ["--train-limit", "200", "--test-limit", "100", "--batch-size", "50", "--device", "cpu"]
#: Seconds a tiny run may take on a loaded two-core machine, before its exit.
RUN_S = 120

#: ``genzoo`` with a logger that leaves, at its first epoch, what $GENZOO_TEST_LEAVE names running: a pool's upload
#: that never ends (closed with ``shutdown(wait=False)``, as tracking clients do), a non-daemon child that never ends
#: (its pid written to $GENZOO_TEST_PID), an atexit flush that blocks; or an idle pool and a child that ends by
#: itself a second later (writing $GENZOO_TEST_PID).
LEAVING_SCRIPT = """
import atexit, concurrent.futures, multiprocessing, os, sys, threading, time
from pathlib import Path
from genzoo import Logger, hookimpl
from genzoo.cli import main
from genzoo.plugin_registry import register_plugin

LEAVE = os.environ["GENZOO_TEST_LEAVE"]
PID = Path(os.environ["GENZOO_TEST_PID"])

def flush():
    threading.Event().wait()

def finish():
    time.sleep(1.0)
    PID.write_text("done")

class Leaving(Logger):
    def __init__(self, run_dir, start_epoch):
        super().__init__(run_dir, start_epoch)
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="upload")

    def log_epoch(self, record, samples):
        if LEAVE == "pool":
            self.pool.submit(threading.Event().wait)
        elif LEAVE == "atexit":
            atexit.register(flush)
        elif LEAVE == "child":
            child = multiprocessing.get_context("fork").Process(target=threading.Event().wait, name="uploader")
            child.start()
            PID.write_text(str(child.pid))
        else:
            self.pool.submit(lambda: None).result()
            multiprocessing.get_context("fork").Process(target=finish).start()

    def close(self):
        self.pool.shutdown(wait=False)

class Plugin:
    @hookimpl
    def register_loggers(self, register):
        register("leaving24", Leaving)

register_plugin(Plugin(), "leaving24", "test-leaving24")
sys.argv = ["genzoo", *sys.argv[1:]]
main()
"""


class Leaving:
    """``genzoo train`` with the logger, as a subprocess; what it leaves is ended after the test, by pid."""

    def __init__(self, data_root: Path, tmp_path: Path) -> None:
        self.data_root, self.out, self.err, self.pid = data_root, tmp_path / "out", tmp_path / "err", tmp_path / "pid"
        self.run = tmp_path / "run"
        self.genzoo: subprocess.Popen[bytes] | None = None

    def start(self, leave: str) -> subprocess.Popen[bytes]:
        with open(self.out, "wb") as stdout, open(self.err, "wb") as stderr:
            self.genzoo = subprocess.Popen(
                [sys.executable, "-c", LEAVING_SCRIPT, "train", "vae", "--data-root", str(self.data_root), "--epochs",
                 "1", *TINY, "--log", "leaving24", "--out", str(self.run)], stdout=stdout, stderr=stderr,
                env=subprocess_env(GENZOO_TEST_LEAVE=leave, GENZOO_TEST_PID=str(self.pid)))
        return self.genzoo

    def finished(self) -> float:
        """Wait until the command printed its results; the time then."""
        assert self.genzoo is not None
        deadline = time.monotonic() + RUN_S
        while "final test metrics" not in self.out.read_text() and self.genzoo.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "final test metrics" in self.out.read_text(), self.err.read_text()
        return time.monotonic()

    def stderr_lines(self) -> list[str]:
        return [line for line in self.err.read_text().splitlines() if "━" not in line]

    def child(self) -> int | None:
        """The pid of the child the logger started (None: none, or it wrote that it was done)."""
        return int(self.pid.read_text()) if self.pid.is_file() and self.pid.read_text().isdigit() else None

    def end(self) -> None:
        if self.genzoo is not None and self.genzoo.poll() is None:
            self.genzoo.kill()
            self.genzoo.wait()
        child = self.child()
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)


@pytest.fixture
def leaving(data_root: Path, tmp_path: Path) -> Iterator[Leaving]:  # noqa: F811 - data_root is the fixture
    runs = Leaving(data_root, tmp_path)
    try:
        yield runs
    finally:
        runs.end()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _warning(left: str, when: str, ended: str = "") -> str:
    return f"genzoo: warning: {left} still running {when}; genzoo exits without waiting for them{ended}"


@pytest.mark.parametrize("leave, left", [
    ("pool", "1 thread started by plugin code ('upload_0')"),
    ("child", "1 child process started by plugin code ('uploader', pid {pid})"),
    ("atexit", "an exit hook registered by plugin code (__main__.flush)")])
def test_what_plugin_code_leaves_running_gets_the_wait_then_genzoo_exits(leaving, leave, left) -> None:
    """Plugins F9 and its variants. Before: a logger's pool upload that never ended, its non-daemon child, its
    blocking atexit flush each kept the finished ``genzoo train`` from ever exiting (``concurrent.futures`` and
    ``multiprocessing`` join theirs at exit; the twentieth pass's wait was for plain threads only)."""
    genzoo = leaving.start(leave)
    finished = leaving.finished()
    code = genzoo.wait(timeout=THREAD_WAIT_S + 30)
    waited = time.monotonic() - finished
    assert code == 0 and THREAD_WAIT_S - 1 < waited < THREAD_WAIT_S + 10, (code, waited, leaving.stderr_lines())
    child = leaving.child()
    ended = ", and ends its child processes" if leave == "child" else ""
    assert leaving.stderr_lines()[-1] == _warning(left.format(pid=child), f"{THREAD_WAIT_S:g} s after the command",
                                                  ended), leaving.stderr_lines()
    if child is not None:  # ended: it held genzoo's output open, and a pipe's reader would wait for it
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)


def test_ctrl_c_while_genzoo_waits_at_exit_ends_the_wait_without_a_traceback(leaving) -> None:
    """Plugins F9. Before: SIGINT during the endless wait for the pool's worker printed a 12-line traceback from
    ``threading._shutdown`` (``Exception ignored in: <module 'threading'>``)."""
    genzoo = leaving.start("pool")
    leaving.finished()
    time.sleep(0.5)  # in the exit's wait
    genzoo.send_signal(signal.SIGINT)
    stopped = time.monotonic()
    code = genzoo.wait(timeout=THREAD_WAIT_S + 30)
    assert code == 0 and time.monotonic() - stopped < THREAD_WAIT_S - 1, leaving.stderr_lines()
    assert "Traceback" not in leaving.err.read_text(), leaving.err.read_text()
    assert leaving.stderr_lines()[-1] == _warning("1 thread started by plugin code ('upload_0')",
                                                  "when genzoo was stopped")


def test_an_idle_pool_and_a_child_that_ends_by_itself_neither_slow_the_exit_nor_are_cut_short(leaving) -> None:
    """Plugins F9's fix waits for pool workers and children: an idle pool's worker (a plugin's, as inductor's under
    ``--compile``) ends as Python exits, and a child that ends by itself a second later is still waited for and
    reaped; neither is named in a warning."""
    genzoo = leaving.start("idle")
    finished = leaving.finished()
    code = genzoo.wait(timeout=THREAD_WAIT_S + 30)
    assert code == 0 and time.monotonic() - finished < THREAD_WAIT_S - 1, leaving.stderr_lines()
    assert leaving.pid.read_text() == "done"
    assert not any("warning" in line for line in leaving.stderr_lines()), leaving.stderr_lines()
