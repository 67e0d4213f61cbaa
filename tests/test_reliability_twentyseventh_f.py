"""Files F1 of the twenty-fifth hostile pass: standard error that cannot be written (``2>/dev/full``, a log on a full
disk) ended ``train`` at its first progress line (metrics.jsonl 1 line of 3 epochs, no pictures) and ``eval`` before
it wrote eval.json, exit 1, with no word anywhere. Its lines are dropped now; the work goes on, and the exit code is
the command's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_support import data_root, subprocess_env  # noqa: F401 - data_root is a fixture

SMALL = ["--train-limit", "40", "--test-limit", "20", "--batch-size", "20", "--latent", "2", "--device", "cpu"]


def _genzoo(*args: str) -> subprocess.CompletedProcess[str]:
    with open("/dev/full", "w") as full:
        return subprocess.run([sys.executable, "-m", "genzoo", *args], env=subprocess_env(), stdout=subprocess.PIPE,
                              stderr=full, text=True, timeout=300)


@pytest.mark.parametrize("nproc", ["1", "2"])
def test_train_and_eval_finish_when_standard_error_is_full(data_root: Path, tmp_path: Path, nproc: str) -> None:  # noqa: F811
    run = tmp_path / "run"
    done = _genzoo("train", "vae", "--epochs", "3", *SMALL, "--data-root", str(data_root), "--out", str(run),
                   "--nproc", nproc)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[0] == f"run folder: {run}", done.stdout
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert (run / "samples.png").is_file()
    if nproc == "1":
        done = _genzoo("eval", str(run), "--fid-samples", "0", "--iwae-k", "2", "--data-root", str(data_root))
        assert done.returncode == 0 and (run / "eval.json").is_file(), done.stdout


def test_a_failing_command_keeps_its_exit_code_when_standard_error_is_full(tmp_path: Path) -> None:
    done = _genzoo("eval", str(tmp_path / "no-such-run"))
    assert (done.returncode, done.stdout) == (1, "")
