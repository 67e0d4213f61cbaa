"""Every bad input: one line on stderr, a non-zero exit, no traceback, nothing written.

Each case runs ``genzoo`` through ``genzoo.cli.main`` in a temporary working folder
holding small fake MNIST files, and compares every file there before and after.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
import torch
from reliability_support import TRAIN_IMAGES, idx_bytes, one_thread, run_main, snapshot, write_fake_mnist  # noqa: F401

from genzoo import GenzooError
from genzoo.checkpoint import FILENAME
from genzoo.run_folder import CONFIG

RAW = Path("data") / "MNIST" / "raw"


@pytest.fixture
def workdir(chdir_tmp: Path) -> Path:
    """The working folder, with fake MNIST under ``data/``: default run folders land here."""
    write_fake_mnist(chdir_tmp / "data")
    return chdir_tmp


def refused(args: list[str], workdir: Path, capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """Run genzoo; check the one-line error, the exit status, and that no file changed."""
    before = snapshot(workdir)
    code, out, err = run_main(args, capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert snapshot(workdir) == before
    assert not (workdir / "runs").exists()
    return lines[0]


def train(*options: str) -> list[str]:
    return ["train", "vae", "--data-root", "data", "--epochs", "1", "--batch-size", "10", *options]


@pytest.mark.parametrize("args,needles", [
    # unknown names, with the closest
    (["train", "vea", "--data-root", "data"], ["unknown model 'vea'", "did you mean 'vae'", "available: ae, conv-ae, conv-vae, dcgan, gan, vae"]),
    (train("--dataset", "mnits"), ["unknown dataset 'mnits'", "did you mean 'mnist'"]),
    (train("--loss", "bce"), ["unknown loss 'bce'", "did you mean 'bce-sum'"]),
    (train("--loss", "kl-normal"), ["loss 'kl-normal' is of kind 'divergence', not 'reconstruction'"]),
    # --latent 0, negative, not an integer
    (train("--latent", "0"), ["--latent", "0 is not in the range x>=1"]),
    (train("--latent", "-3"), ["--latent", "-3 is not in the range x>=1"]),
    (train("--latent", "2.5"), ["--latent", "'2.5' is not a valid integer"]),
    (train("--latent", "four"), ["--latent", "'four' is not a valid integer"]),
    # --epochs < 1
    (["train", "vae", "--data-root", "data", "--epochs", "0"], ["--epochs", "0 is not in the range 1<=x<="]),
    (["train", "vae", "--data-root", "data", "--epochs", "-2"], ["--epochs", "-2 is not in the range 1<=x<="]),
    # --batch-size < 1 or larger than the dataset
    (train("--batch-size", "0"), ["--batch-size", "0 is not in the range x>=1"]),
    (train("--batch-size", "500"), [f"batch size 500 is larger than the training split ({TRAIN_IMAGES} images)"]),
    (train("--batch-size", "100", "--train-limit", "50"), ["batch size 100 is larger than the training split (50 images)"]),
    # --lr <= 0 or NaN
    (train("--lr", "0"), ["--lr", "must be a finite number above 0"]),
    (train("--lr", "-0.001"), ["--lr", "must be a finite number above 0"]),
    (train("--lr", "nan"), ["--lr", "must be a finite number above 0"]),
    (train("--lr", "inf"), ["--lr", "must be a finite number above 0"]),
    (train("--lr", "fast"), ["--lr", "'fast' is not a number"]),
    # other counts
    (train("--checkpoint-every", "0"), ["--checkpoint-every", "0 is not in the range x>=1"]),
    (train("--train-limit", "-5"), ["--train-limit"]),
    # an unknown device
    (train("--device", "tpu"), ["unknown device 'tpu'; use auto, cpu or cuda"]),
])
def test_bad_training_options(args, needles, workdir, capsys):
    refused(args, workdir, capsys, *needles)


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu(device, workdir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without one
    refused(train("--device", device), workdir, capsys, f"--device {device} was requested but no CUDA GPU is available")


# -- data files --------------------------------------------------------------------------


def remove_all(raw: Path) -> None:
    for path in raw.iterdir():
        path.unlink()


def empty(raw: Path) -> None:
    (raw / "train-images-idx3-ubyte").write_bytes(b"")


def truncate(raw: Path) -> None:
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-784 * 3 - 5])


def foreign(raw: Path) -> None:
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"<html><body>404 Not Found</body></html>")


def too_long(raw: Path) -> None:
    path = raw / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\0" * 7)


def header_only(raw: Path) -> None:
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00\x00")


def labels_for_other_images(raw: Path) -> None:
    (raw / "train-labels-idx1-ubyte").write_bytes(idx_bytes(torch.zeros(TRAIN_IMAGES - 20, dtype=torch.uint8)))


@pytest.mark.parametrize("damage,needles", [
    (remove_all, ["mnist files not found in data/MNIST/raw", "downloading is off", "--data-root", "GENZOO_DATA"]),
    (empty, ["data/MNIST/raw/train-images-idx3-ubyte is empty"]),
    (truncate, ["train-images-idx3-ubyte is truncated:", "expected 94096 for shape (120, 28, 28)"]),
    (foreign, ["t10k-images-idx3-ubyte is not a 3-d unsigned-byte IDX file (magic number 0x3c68746d, "
               "expected 0x00000803)"]),
    (too_long, ["train-labels-idx1-ubyte is longer than its header says"]),
    (header_only, ["train-images-idx3-ubyte is truncated inside its header"]),
    (labels_for_other_images, ["train-labels-idx1-ubyte holds 100 items, expected 120"]),
])
def test_missing_empty_truncated_or_corrupt_data_files(damage: Callable[[Path], None], needles, workdir, capsys):
    damage(workdir / RAW)
    download = ["--no-download"] if damage is remove_all else []  # the others never reach a download
    refused(train(*download), workdir, capsys, *needles)


# -- checkpoints -------------------------------------------------------------------------


@pytest.fixture
def run(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A finished one-epoch run in ``workdir/run``."""
    code, _, err = run_main(train("--latent", "2", "--test-limit", "20", "--out", "run"), capsys)
    assert code == 0, err
    return workdir / "run"


def test_resume_with_the_checkpoint_missing(run, workdir, capsys):
    (run / FILENAME).unlink()
    refused(["resume", "run"], workdir, capsys, f"no checkpoint at run/{FILENAME}")


def test_resume_with_a_truncated_checkpoint(run, workdir, capsys):
    data = (run / FILENAME).read_bytes()
    (run / FILENAME).write_bytes(data[: len(data) // 2])
    refused(["resume", "run"], workdir, capsys, f"run/{FILENAME} is truncated or not a checkpoint")


NOISE = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


@pytest.mark.parametrize("content", [b"", b"these are my notes, not weights\n", NOISE.numpy().tobytes()],
                         ids=["empty", "text", "noise"])
def test_resume_with_something_that_is_not_a_checkpoint(content, run, workdir, capsys):
    (run / FILENAME).write_bytes(content)
    line = refused(["resume", "run"], workdir, capsys, f"run/{FILENAME}")
    assert "not a checkpoint" in line or "not a plain-weights checkpoint" in line


@pytest.mark.parametrize("folder,needle", [
    ("nowhere", "nowhere is not a genzoo run folder (no config.json)"),
    ("data", "data is not a genzoo run folder (no config.json)"),
])
def test_resume_of_something_that_is_not_a_run(folder, needle, workdir, capsys):
    refused(["resume", folder], workdir, capsys, needle)


def test_resume_with_a_broken_config(run, workdir, capsys):
    (run / CONFIG).write_text('{"model": "vae", "model_con')
    refused(["resume", "run"], workdir, capsys, f"run/{CONFIG} is not valid JSON")


# -- the output folder -------------------------------------------------------------------


def test_an_output_folder_inside_a_file(workdir, capsys):
    """Unwritable for root too: no one can make a folder inside a regular file."""
    (workdir / "notes.txt").write_text("mine")
    refused(train("--out", "notes.txt/run"), workdir, capsys, "cannot create run folder notes.txt/run")


def test_a_default_runs_folder_that_is_a_file(workdir, capsys):
    (workdir / "runs").write_text("not a folder")
    before = snapshot(workdir)
    code, out, err = run_main(train(), capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("Error: cannot create run folder runs/vae-")
    assert snapshot(workdir) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root may write into any folder, whatever its permissions say")
def test_an_output_folder_without_write_permission(workdir, capsys):
    locked = workdir / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        refused(train("--out", "locked/run"), workdir, capsys, "cannot create run folder locked/run")
    finally:
        locked.chmod(0o700)


# -- --debug -------------------------------------------------------------------------------


def test_debug_shows_the_traceback_instead(workdir):
    from genzoo.cli import main

    with pytest.raises(GenzooError, match="unknown model 'vea'"):
        main(["--debug", "train", "vea"])
