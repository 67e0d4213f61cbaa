"""Found by the nineteenth hostile pass (files: F7, F8, M4, M5): damage and detours no command noticed.

F8: a checkpoint with 4 KiB of a weight zeroed was evaluated and resumed, other numbers, exit 0: checkpoints now
carry a digest of what they hold, checked by every reader. F7: SIGTERM to ``benchmarks/leaderboard.py`` left
its ``genzoo train`` child training as an orphan. M4: a FIFO, folder or dangling link where the Inception
weights belong was "not found" and a download started. M5: a run's ``tensorboard`` folder replaced by a link
had ``resume`` write event files outside the run. Each test failed before its fix.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from reliability_support import (  # noqa: F401 - data_root and steered are fixtures
    SteeredVAE,
    assert_one_line_error,
    data_root,
    reset_steering,
    run_main,
    snapshot,
    steered,
    subprocess_env,
)
from test_reliability_resume import config

from genzoo.checkpoint import CONTENTS_SHA256, FILENAME, contents_sha256, load_checkpoint, save_checkpoint
from genzoo.errors import GenzooError

TINY = ["--epochs", "1", "--batch-size", "20", "--device", "cpu", "--latent", "2", "--hidden", "16"]
EVAL = ["--test-limit", "20", "--iwae-k", "2", "--device", "cpu", "--fid-samples", "0"]
LEADERBOARD = Path(__file__).resolve().parent.parent / "benchmarks" / "leaderboard.py"
DAMAGED = "is damaged: what it holds does not match the sha256 it was saved with"


@pytest.fixture
def finished_run(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A tiny finished VAE run on the fake MNIST."""
    code, _, err = run_main(["train", "vae", *TINY, "--data-root", str(data_root), "--out", str(tmp_path / "run")],
                            capsys)
    assert code == 0, err
    return tmp_path / "run"


def zero_bytes(checkpoint: Path, record: str = "data/0", count: int = 4096) -> None:
    """Zero ``count`` bytes in the middle of the zip record ``record`` of ``checkpoint``, as a bad sector would:
    the record's CRC-32 no longer matches, which torch's reader does not check."""
    with zipfile.ZipFile(checkpoint) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(f"/{record}"))
    blob = bytearray(checkpoint.read_bytes())
    at = info.header_offset
    start = at + 30 + int.from_bytes(blob[at + 26:at + 28], "little") + int.from_bytes(blob[at + 28:at + 30], "little")
    middle = start + max(0, (info.file_size - count) // 2)
    blob[middle:middle + count] = bytes(count)
    checkpoint.write_bytes(bytes(blob))


# -- F8: a checkpoint's bytes damaged --------------------------------------------------------------------------


def test_a_checkpoint_with_weight_bytes_zeroed_is_refused_by_every_reader(
        finished_run: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """F8. Before: ``eval`` exit 0 with another NELBO; ``resume``, ``sample``, ``export`` and ``latent`` took it."""
    zero_bytes(finished_run / FILENAME)
    before = snapshot(finished_run)
    data = ["--data-root", str(data_root)]
    commands = {
        "eval": ["eval", str(finished_run), *EVAL, *data],
        "resume": ["resume", str(finished_run), *data],
        "sample": ["sample", str(finished_run), "-n", "4", "--out", str(tmp_path / "s.png"), *data],
        "export": ["export", str(finished_run), "--format", "safetensors", "--out", str(tmp_path / "x")],
        "latent": ["latent", str(finished_run), "--pairs", "2", "--test-limit", "20", "--device", "cpu",
                   "--out", str(tmp_path / "latent"), *data],
    }
    for args in commands.values():
        code, _, err = run_main(args, capsys)
        assert_one_line_error(code, err, f"{finished_run / FILENAME} {DAMAGED}")
    assert snapshot(finished_run) == before
    assert not [p for p in tmp_path.iterdir() if p.name in ("s.png", "x", "latent")]


def test_a_damaged_optimiser_or_plain_field_is_refused_too(tmp_path: Path) -> None:
    """F8, unit: the digest covers every tensor (the optimiser's, the RNG's) and every plain value, not only the
    weights; a ``meta`` or sparse tensor where a real one was saved is its line; nesting past the recursion
    limit is digested without a traceback."""
    path = tmp_path / FILENAME
    state = {"model_state": {"w": torch.arange(6.0).reshape(2, 3), "s": torch.eye(3).to_sparse()},
             "optimizers": {"adam": {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 1e-3}]}},
             "position": {"epoch": 1, "seconds": 2.5}}
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert CONTENTS_SHA256 not in loaded and torch.equal(loaded["model_state"]["w"], state["model_state"]["w"])
    deep: list[object] = []
    for _ in range(sys.getrecursionlimit() + 10):
        deep = [deep]
    changes = [lambda s: s["optimizers"]["adam"]["state"][0].__setitem__("exp_avg", torch.zeros(3)),
               lambda s: s["optimizers"]["adam"]["param_groups"][0].__setitem__("lr", 1e-2),
               lambda s: s["position"].__setitem__("seconds", 2.0),
               lambda s: s["model_state"].__setitem__("w", torch.empty(2, 3, device="meta")),
               lambda s: s["model_state"].__setitem__("s", torch.zeros(3, 3).to_sparse())]
    for change in changes:
        sealed = torch.load(path, weights_only=True)
        change(sealed)
        torch.save(sealed, path)  # the old digest kept, as damage leaves it
        with pytest.raises(GenzooError, match=DAMAGED):
            load_checkpoint(path)
        save_checkpoint(path, state)
    # torch.save cannot write such nesting, but its weights-only reader builds it from a pickle made by hand.
    assert len(contents_sha256({"position": deep})) == 64


def test_a_checkpoint_from_before_digests_still_loads(finished_run: Path, data_root: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """F8: a checkpoint written before digests has none; it loads as before (its bytes cannot be checked)."""
    path = finished_run / FILENAME
    state = torch.load(path, weights_only=True)
    assert state[CONTENTS_SHA256] == contents_sha256({k: v for k, v in state.items() if k != CONTENTS_SHA256})
    del state[CONTENTS_SHA256]
    torch.save(state, path)
    code, _, err = run_main(["eval", str(finished_run), *EVAL, "--data-root", str(data_root)], capsys)
    assert code == 0, err


# -- M4: something other than a file where the Inception weights belong ----------------------------------------


@pytest.mark.parametrize("kind, words", [("fifo", "a FIFO"), ("folder", "a folder"),
                                         ("dangling", "a link to nothing")])
def test_no_file_at_the_inception_weights_path_is_one_line_and_no_download(
        kind: str, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """M4. Before: "Inception weights not found", and a download started (to be moved over the FIFO or link)."""
    from genzoo.evaluation import weights

    target = tmp_path / "hub" / "checkpoints" / weights.INCEPTION_FILE
    target.parent.mkdir(parents=True)
    {"fifo": lambda: os.mkfifo(target), "folder": target.mkdir,
     "dangling": lambda: target.symlink_to(tmp_path / "gone.pth")}[kind]()

    def download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was started")

    monkeypatch.setattr(weights, "inception_target", lambda: target)
    monkeypatch.setattr(weights, "download_file", download)
    with pytest.raises(GenzooError) as info:
        weights.inception_weights()
    assert str(info.value) == (f"Inception weights not a regular file at {target} ({words}); move it away to have "
                               "genzoo download them there, or pass --inception-weights PATH")
    target.unlink() if kind != "folder" else target.rmdir()
    (tmp_path / "real.pth").write_bytes(b"x")
    target.symlink_to(tmp_path / "real.pth")  # a link to a file is taken, as before
    assert weights.inception_weights() == target


# -- M5: a run's tensorboard folder replaced by a link -----------------------------------------------------------


def test_a_tensorboard_folder_replaced_by_a_link_is_refused_on_resume(
        steered: object, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """M5. Before: ``resume`` exit 0 and its event file written into the folder the link points to."""
    pytest.importorskip("tensorboard")
    from genzoo.trainer import Interrupted
    from genzoo.training import start_run

    run, outside = tmp_path / "run", tmp_path / "outside"
    SteeredVAE.interrupt_at = 17  # mid-epoch 2 (of 12 steps each)
    with pytest.raises(Interrupted):
        start_run(config("steered-vae", data_root), {"latent": 2, "hidden": 16}, out=run, loggers=["tensorboard"])
    reset_steering()
    shutil.rmtree(run / "tensorboard")
    outside.mkdir()
    (run / "tensorboard").symlink_to(outside)
    before = snapshot(run)
    code, _, err = run_main(["resume", str(run)], capsys)
    assert_one_line_error(code, err, f"{run / 'tensorboard'} is a symbolic link; genzoo only writes regular files "
                                     "inside a run folder")
    assert list(outside.iterdir()) == []
    assert snapshot(run) == before


# -- F7: SIGTERM to the leaderboard ----------------------------------------------------------------------------


@pytest.mark.usefixtures("mnist_root")
def test_sigterm_to_the_leaderboard_stops_its_genzoo_child_with_a_checkpoint(tmp_path: Path) -> None:
    """F7. Before: the leaderboard exited 143 at once, and its ``genzoo train`` child trained on as an orphan."""
    out = tmp_path / "lb"
    board = subprocess.Popen(
        [sys.executable, str(LEADERBOARD), "--out", str(out), "--markdown", str(tmp_path / "lb.md"),
         "--only", "vae+normal", "--epochs", "50", "--train-limit", "2000", "--test-limit", "100",
         "--features", "mnist", "--fid-samples", "20", "--iwae-k", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    deadline = time.monotonic() + 120
    while not (out / "runs" / "vae" / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # training, past its first epoch
    children = Path(f"/proc/{board.pid}/task/{board.pid}/children").read_text().split()
    assert len(children) == 1, children
    board.send_signal(signal.SIGTERM)  # the leaderboard alone, as kill PID or a supervisor sends it
    _, err = board.communicate(timeout=120)
    assert board.returncode == 143, err
    assert not Path(f"/proc/{children[0]}").exists()  # waited for, not left training
    assert "checkpoint saved to" in err and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"leaderboard: stopped by SIGTERM during `genzoo train vae --epochs 50 --seed 0 --out {out / 'runs' / 'vae'} "
        "--train-limit 2000 --test-limit 100` (exit 143); rerun the same command to continue: finished work is kept")
    assert load_checkpoint(out / "runs" / "vae" / FILENAME)["position"]["epoch"] < 50
