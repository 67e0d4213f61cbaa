"""Found by the thirteenth look (twelfth hostile pass), fixed by the lead.

F8: ``genzoo train ... --nproc 2 > /dev/full`` finished its run, then gave two lines that
contradict each other: rank 0's "only the printing failed", then the launcher's "training
process 0 of 2 exited with code 1; ... genzoo resume RUN continues it". Failed before its fix.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from reliability_support import subprocess_env, write_fake_mnist
from test_distributed import genzoo_train

from genzoo.run_folder import read_metrics


def test_a_launch_whose_printing_fails_says_so_once(tmp_path: Path) -> None:
    data = str(write_fake_mnist(tmp_path / "data"))
    with open("/dev/full", "w") as full:
        done = subprocess.run(genzoo_train(data, tmp_path / "run", "--nproc", "2"), env=subprocess_env(),
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=600)
    lines = [line for line in done.stderr.splitlines() if line.startswith(("Error:", "Aborted."))]
    assert done.returncode == 1, done.stderr[-3000:]
    assert len(lines) == 1 and "only the printing failed" in lines[0], done.stderr[-3000:]
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2]  # the work is done
