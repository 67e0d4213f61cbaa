"""Bad data files and output paths: named in one line, never a hang, never a run folder.

A FIFO, a folder or a device where an IDX file belongs, images of another shape than
the dataset declares, data present only gzipped, and an ``--out`` that is a broken
symbolic link. Tests that put a FIFO in the way run genzoo in a subprocess with a
timeout, so a regression hangs nothing.
"""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

import pytest
import torch
from reliability_support import TRAIN_IMAGES, idx_bytes, one_thread, run_main, script_command, snapshot, subprocess_env  # noqa: F401
from test_bad_input import RAW, refused, train, workdir  # noqa: F401

from genzoo import GenzooError
from genzoo.building import load_split

IMAGES = "train-images-idx3-ubyte"


# -- files that are not regular files ------------------------------------------------------


def test_a_fifo_in_place_of_a_data_file_is_refused_not_waited_on(workdir):
    (workdir / RAW / IMAGES).unlink()
    os.mkfifo(workdir / RAW / IMAGES)
    before = snapshot(workdir)  # regular files only: it never opens the FIFO
    done = subprocess.run(script_command(*train("--no-download")), cwd=workdir, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"Error: data/MNIST/raw/{IMAGES} is not a regular file (a FIFO)"), lines
    assert snapshot(workdir) == before and not (workdir / "runs").exists()


def a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


def a_link_to_dev_zero(path: Path) -> None:
    path.unlink()
    path.symlink_to("/dev/zero")


@pytest.mark.parametrize("make,what", [(a_folder, "a folder"), (a_link_to_dev_zero, "a character device")])
@pytest.mark.parametrize("name", [IMAGES, "t10k-labels-idx1-ubyte"])
def test_a_data_file_that_is_a_folder_or_a_device_is_named(make, what, name, workdir, capsys):
    """Even the other split's file: torchvision would say only "Dataset not found"."""
    make(workdir / RAW / name)
    refused(train("--no-download"), workdir, capsys, f"data/MNIST/raw/{name} is not a regular file ({what})")


# -- images of another shape ----------------------------------------------------------------


def small_images(raw: Path) -> None:
    (raw / IMAGES).write_bytes(idx_bytes(torch.zeros(TRAIN_IMAGES, 10, 10, dtype=torch.uint8)))


def test_idx_images_of_another_size_are_refused_before_a_run_folder(workdir, capsys):
    small_images(workdir / RAW)
    refused(train(), workdir, capsys, f"data/MNIST/raw/{IMAGES} holds images of shape (10, 10)",
            "mnist's are (28, 28)")


def test_a_dataset_plugin_whose_images_contradict_its_shape_is_refused(genzoo_register, tmp_path):
    """The loader checks every split against ``sample_shape``, for third-party datasets too."""
    from genzoo import Dataset, TensorSplit, hookimpl

    class Wrong(Dataset):
        name = "wrong"
        sample_shape = (1, 28, 28)

        def load(self, split):
            return TensorSplit(torch.zeros(5, 1, 10, 10))

    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            register("wrong", Wrong)

    genzoo_register(Plugin(), "wrong")
    with pytest.raises(GenzooError, match=r"dataset 'wrong' gave train images of shape \(1, 10, 10\), "
                                          r"but it declares \(1, 28, 28\)"):
        load_split("wrong", "train", str(tmp_path), None, torch.device("cpu"))


# -- only gzipped files ----------------------------------------------------------------------


def gzip_all(raw: Path) -> dict[str, bytes]:
    """Replace every IDX file by its ``.gz``, as a manual download leaves them."""
    originals = {}
    for path in sorted(raw.iterdir()):
        originals[path.name] = path.read_bytes()
        (raw / f"{path.name}.gz").write_bytes(gzip.compress(originals[path.name]))
        path.unlink()
    return originals


def test_only_gzipped_data_files_are_unpacked_and_read(workdir, capsys):
    originals = gzip_all(workdir / RAW)
    code, _, err = run_main(train("--no-download", "--latent", "2", "--out", "run"), capsys)
    assert code == 0, err
    for name, data in originals.items():
        assert (workdir / RAW / name).read_bytes() == data


def test_a_broken_gzipped_data_file_is_named(workdir, capsys):
    gzip_all(workdir / RAW)
    packed = workdir / RAW / f"{IMAGES}.gz"
    packed.write_bytes(packed.read_bytes()[:200])
    refused(train("--no-download"), workdir, capsys, f"cannot unpack data/MNIST/raw/{IMAGES}.gz")


# -- --out that is a broken symbolic link ---------------------------------------------------


@pytest.mark.parametrize("target,needle", [
    ("nowhere", "out is a symbolic link to nowhere, which does not exist"),
    ("out", "out is a symbolic link loop"),
])
@pytest.mark.parametrize("out", ["out", "out/run"])
def test_an_out_that_is_a_broken_symbolic_link_says_so(target, needle, out, workdir, capsys):
    (workdir / "out").symlink_to(target)
    refused(train("--out", out), workdir, capsys, needle)
