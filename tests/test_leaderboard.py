"""``benchmarks/leaderboard.py``: trains, evaluates and tabulates beside the published numbers; resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "leaderboard.py"
QUICK = ["--only", "ae+gmm,vae+normal", "--epochs", "1", "--train-limit", "200", "--test-limit", "100",
         "--features", "mnist", "--fid-samples", "50", "--iwae-k", "2"]


def leaderboard(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--markdown", str(out / "lb.md"),
                           *QUICK, *extra], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.usefixtures("mnist_root")
def test_the_leaderboard_measures_each_entry_once_and_sets_it_beside_the_paper(tmp_path: Path) -> None:
    out = tmp_path / "lb"
    done = leaderboard(out)
    assert done.returncode == 0, done.stderr[-3000:]
    board = json.loads((out / "leaderboard.json").read_text())
    assert list(board["entries"]) == ["ae+gmm", "vae+normal"]
    for name, sampler in (("ae+gmm", "gmm"), ("vae+normal", "normal")):
        row = board["entries"][name]
        evaluation = json.loads((Path(row["run"]) / "eval.json").read_text())
        assert row["fid"] == evaluation["fid"][f"mnist/{sampler}"]["fid"]  # the run's own measurement
        assert row["fid_samples"] == 50 and row["epochs"] == 1
    assert board["entries"]["ae+gmm"]["published"] == 10.66
    assert board["protocol"]["paper"] is False
    table = (out / "lb.md").read_text()
    assert "NOT the paper protocol" in table and "the first 100 test images" in table
    assert f"| ae+gmm | gmm | {board['entries']['ae+gmm']['fid']:.2f} | 10.66 | Ghosh et al. 2020" in table
    assert "[1/2] ae+gmm: trained, FID measured" in done.stdout

    # Rerun after "a crash" that lost the VAE's FID: nothing is trained again, the AE's FID is not re-measured.
    checkpoints = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/checkpoint.pt")}
    ae_eval = (out / "runs" / "ae" / "eval.json").stat().st_mtime_ns
    (out / "runs" / "vae" / "eval.json").unlink()
    again = leaderboard(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[1/2] ae+gmm: trained before, FID measured before" in again.stdout
    assert "[2/2] vae+normal: trained before, FID measured:" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints
    assert (out / "runs" / "ae" / "eval.json").stat().st_mtime_ns == ae_eval
    assert "genzoo train" not in again.stdout

    # One entry again: the other row stays. Another protocol: the rows of this one go, none is mixed in.
    once = leaderboard(out, "--only", "vae+normal")
    assert once.returncode == 0, once.stderr[-3000:]
    assert list(json.loads((out / "leaderboard.json").read_text())["entries"]) == ["ae+gmm", "vae+normal"]
    other = leaderboard(out, "--only", "vae+normal", "--fid-samples", "40")
    assert other.returncode == 0, other.stderr[-3000:]
    rows = json.loads((out / "leaderboard.json").read_text())["entries"]
    assert list(rows) == ["vae+normal"] and rows["vae+normal"]["fid_samples"] == 40


def test_a_run_folder_of_another_budget_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "lb"
    (out / "runs" / "ae").mkdir(parents=True)
    (out / "runs" / "ae" / "config.json").write_text(json.dumps({"model": "ae", "train_config": {"epochs": 7}}))
    done = leaderboard(out)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"leaderboard: {out / 'runs' / 'ae'} holds a ae run of epochs 7, seed None, "
                                   "train_limit None, test_limit None, not ae for epochs 1, seed 0, train_limit 200, "
                                   "test_limit 100; give another --out or move it away")
