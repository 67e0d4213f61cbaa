"""SIGXCPU (a soft CPU-time limit) sent to a ``--nproc 2`` launch's launcher printed ``Interrupted: checkpoint saved``
and then ``Aborted.``, which says the opposite (twenty-sixth hostile pass, files F1): torch's launcher passes on only
SIGTERM, SIGINT, SIGHUP and SIGQUIT, and genzoo's stop-at-once handler took SIGXCPU in the launcher."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from reliability_support import data_root, subprocess_env  # noqa: F401 - data_root is a fixture

from genzoo.checkpoint import FILENAME


def test_sigxcpu_to_an_nproc_launcher_is_a_stop_with_a_checkpoint(data_root, tmp_path: Path) -> None:  # noqa: F811
    run, log = tmp_path / "run", tmp_path / "log"
    with open(log, "w") as out:
        launch = subprocess.Popen(
            [sys.executable, "-m", "genzoo", "train", "vae", "--nproc", "2", "--data-root", str(data_root),
             "--epochs", "500", "--batch-size", "20", "--latent", "2", "--train-limit", "120", "--test-limit", "20",
             "--device", "cpu", "--checkpoint-every", "3", "--out", str(run)],
            stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(), start_new_session=True)
        deadline = time.monotonic() + 300
        while not (run / FILENAME).exists() and launch.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert launch.poll() is None, log.read_text()
        launch.send_signal(signal.SIGXCPU)
        code = launch.wait(timeout=300)
    lines = [line for line in log.read_text().splitlines() if line.strip() and "━" not in line]
    assert code == 128 + signal.SIGXCPU, (code, lines)
    assert "Aborted." not in lines, lines
    assert lines[-1] == f"Interrupted: checkpoint saved to {run / FILENAME}; resume with: genzoo resume {run}", lines
