"""Files F2 of the twenty-fifth hostile pass: two processes launched as torchrun launches them, given other
``--epochs`` (a job script building each rank's command line), hung before the first epoch with no word, deaf to
SIGTERM and SIGINT; other ``--lr`` was blamed on the model. The processes compare their settings as they join."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from reliability_support import subprocess_env, write_fake_mnist
from test_reliability_fifth_b import free_port


def _launch(tmp_path: Path, per_rank: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    data, port = write_fake_mnist(tmp_path / "data"), free_port()
    processes = []
    for rank, extra in enumerate(per_rank):
        env = subprocess_env(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                             MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GENZOO_JOIN_TIMEOUT="120")
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "genzoo", "train", "vae", "--batch-size", "20", "--latent", "2", "--train-limit",
             "40", "--test-limit", "20", "--device", "cpu", "--data-root", str(data), "--no-download", "--out",
             str(tmp_path / "run"), *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=240)
            done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return done


@pytest.mark.parametrize("named, rank1", [("--epochs", ["--epochs", "3"]), ("--lr", ["--lr", "0.01"])])
def test_ranks_given_other_settings_each_say_so_before_any_folder(tmp_path: Path, named: str,
                                                                  rank1: list[str]) -> None:
    done = _launch(tmp_path, [[], rank1])
    for process in done:
        assert process.returncode == 1, process.stderr[-3000:]
        assert process.stderr.strip().splitlines()[-1] == (
            f"Error: process 1 of 2 was given other settings than process 0 ({named}): every process of a launch "
            "runs the same command (only --data-root and --device may differ)"), process.stderr[-3000:]
    assert not (tmp_path / "run").exists()
