"""Found by the sixteenth look (fourteenth hostile pass, F1 and F5): the ``--nproc`` launcher.

F1: the launch built torchrun's options with torchrun's own parser, which takes every option it
is not given from a ``PET_<OPTION>`` variable: ``PET_MAX_RESTARTS=abc`` was torchrun's 21-line usage,
``PET_MAX_RESTARTS=2`` re-ran the whole command, ``PET_REDIRECTS``/``PET_LOG_DIR`` hid all output and
wrote logs outside the run. F5: after kill -9 of the launcher the ranks trained on as orphans, and
``resume`` said the run was in use. Each test failed before its fix (docs/reliability.md, "Found by the
fifteenth look").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_support import PAUSE_AT, PAUSED_FILE, subprocess_env, write_fake_mnist

from genzoo import distributed
from genzoo.run_folder import read_metrics

#: torchrun's variables a shell may hold; none may change what genzoo launches.
PET = {"PET_MAX_RESTARTS": "2", "PET_REDIRECTS": "3", "PET_TEE": "3", "PET_LOG_DIR": "/nonexistent/genzoo-pet",
       "PET_MONITOR_INTERVAL": "x", "PET_START_METHOD": "fork", "PET_NNODES": "3", "PET_NO_PYTHON": "0"}


def launched_options(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The options :func:`distributed.launch` hands torch's launcher (not run), its port left out."""
    import torch.distributed.run

    seen: list[Any] = []
    monkeypatch.setattr(torch.distributed.run, "run", seen.append)
    distributed.launch(2, ["train", "ae"], lambda: None)
    options = dict(vars(seen[0]))
    options.pop("master_port")
    return options


@pytest.mark.parametrize("bad", ["abc", "-1", ""])
def test_torchruns_pet_variables_change_nothing_in_a_launch(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("PET_")]:
        monkeypatch.delenv(name)
    plain = launched_options(monkeypatch)
    for name, value in {**PET, "PET_MAX_RESTARTS": bad}.items():
        monkeypatch.setenv(name, value)
    assert launched_options(monkeypatch) == plain  # before: torchrun's usage and SystemExit(2) for 'abc'
    assert plain["max_restarts"] == 0 and plain["redirects"] == "0" and plain["log_dir"] is None
    assert os.environ["PET_MAX_RESTARTS"] == bad  # the user's environment is left as it was


@pytest.mark.parametrize("prctl", ["kept", "missing"])
def test_a_rank_whose_launcher_is_already_gone_ends_at_once(prctl: str) -> None:
    """The launcher died before the rank was bound to it (its parent is another process now): killed at once,
    by the check after ``PR_SET_PDEATHSIG``, or by the watching thread where there is no prctl (not Linux)."""
    hide = "import ctypes; ctypes.CDLL = lambda *args, **kwargs: object()\n" if prctl == "missing" else ""
    code = f"from genzoo.distributed import follow_launcher\n{hide}follow_launcher(-1)\nimport time\ntime.sleep(60)\n"
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-4000:]


def _stat(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


PLUGIN = """
from genzoo import hookimpl
from reliability_support import SteeredAE

@hookimpl
def register_models(register):
    register("steered-ae", SteeredAE)
"""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the ranks through Linux's /proc")
def test_ranks_end_with_their_killed_launcher_and_the_run_resumes(tmp_path: Path) -> None:
    """kill -9 of a ``--nproc 2`` launcher while its ranks train (paused in a step): the ranks end within
    seconds (before: orphans training on, the run "in use"), and ``genzoo resume`` finishes the run. The
    launch also has torchrun's PET_* variables set: its output still comes, and no log is written."""
    data = write_fake_mnist(tmp_path / "data")
    site = tmp_path / "site"  # the steered model installed, so the ranks (plain genzoo) find it too
    (site / "genzoo_steered_launch-1.0.dist-info").mkdir(parents=True)
    (site / "genzoo_steered_launch-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: genzoo-steered-launch\nVersion: 1.0\n")
    (site / "genzoo_steered_launch-1.0.dist-info" / "entry_points.txt").write_text(
        "[genzoo]\nsteered_launch = steered_launch\n")
    (site / "steered_launch.py").write_text(PLUGIN)
    path = os.pathsep.join([str(site), str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    run, paused, output = tmp_path / "run", tmp_path / "paused", tmp_path / "output"
    train = ["train", "steered-ae", "--epochs", "2", "--batch-size", "32", "--latent", "4", "--train-limit", "64",
             "--test-limit", "16", "--device", "cpu", "--data-root", str(data), "--no-download",
             "--checkpoint-every", "1", "--out", str(run)]
    env = subprocess_env(PYTHONPATH=path, **{**PET, "PET_LOG_DIR": str(tmp_path / "petlogs"),
                                             "PET_MONITOR_INTERVAL": "0.1", PAUSE_AT: "3", PAUSED_FILE: str(paused)})
    with open(output, "w") as out:  # a file: the ranks, not the launcher, would hold a pipe open
        launcher = subprocess.Popen([sys.executable, "-m", "genzoo", *train, "--nproc", "2"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
    ranks: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not paused.exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert paused.exists(), output.read_text()[-4000:]  # a rank pauses inside step 3 (epoch 2)
        ranks = [int(child) for task in Path(f"/proc/{launcher.pid}/task").iterdir()
                 for child in (task / "children").read_text().split()]
        assert len(ranks) == 2
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        deadline = time.monotonic() + 30  # before: paused for 120 s, then on
        while time.monotonic() < deadline and any(_stat(rank) != "Z" for rank in ranks):
            time.sleep(0.1)
        alive = [rank for rank in ranks if _stat(rank) != "Z"]
    finally:
        for rank in ranks:
            if _stat(rank) != "Z":
                os.kill(rank, signal.SIGKILL)
    assert alive == []
    assert "epoch 1/2" in output.read_text() and not (tmp_path / "petlogs").exists(), output.read_text()[-4000:]
    resumed = subprocess.run([sys.executable, "-m", "genzoo", "resume", str(run)],
                             env=subprocess_env(PYTHONPATH=path), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert [record["epoch"] for record in read_metrics(run)] == [1, 2]
