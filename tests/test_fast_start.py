"""Fast start: a training run does not import torchvision.

torchvision's package import loads its models and ops (and with them torch's compiler
front end); its two uses on a run's way (the picture grid, the IDX reader) are done by
genzoo itself, with the same results.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from genzoo_plugins.datasets.idx import read_idx
from genzoo_plugins.datasets.mnist import FILES, MNIST
from test_data import fake_files, write_idx
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.utils import make_grid

from genzoo import GenzooError
from genzoo.figures import grid_image


@pytest.mark.parametrize("n, channels, nrow", [(1, 1, 8), (3, 1, 8), (10, 1, 4), (8, 3, 8), (5, 3, 2)])
def test_the_picture_grid_is_torchvisions(n, channels, nrow):
    images = torch.rand(n, channels, 5, 7, generator=torch.Generator().manual_seed(n))
    expected = make_grid(images, nrow=nrow, padding=2, pad_value=1.0).permute(1, 2, 0).numpy()
    got = grid_image(images, nrow)
    assert got.shape == expected.shape and (got == expected).all()


def test_idx_files_read_as_torchvision_reads_them(tmp_path):
    images, labels = torch.randint(0, 256, (6, 28, 28)), torch.randint(0, 10, (6,))
    write_idx(tmp_path / "images", images)
    write_idx(tmp_path / "labels", labels)
    assert torch.equal(read_idx(tmp_path / "images", 3), read_image_file(str(tmp_path / "images")))
    assert torch.equal(read_idx(tmp_path / "labels", 1), read_label_file(str(tmp_path / "labels")))
    write_idx(tmp_path / "none", torch.zeros(0, 28, 28))
    assert read_idx(tmp_path / "none", 3).shape == (0, 28, 28)


def test_a_training_run_imports_no_torchvision(tmp_path):
    fake_files(tmp_path / "MNIST" / "raw", n=20)
    assert set(FILES) == {"train", "test"} and MNIST.torchvision_name == "MNIST"
    script = ("import sys; from genzoo.cli import main; sys.argv = ['genzoo', 'train', 'vae', '--epochs', '1', "
              f"'--batch-size', '10', '--data-root', {str(tmp_path)!r}, '--out', {str(tmp_path / 'run')!r}, "
              "'--no-download']\ntry:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
              "print(sorted(m for m in sys.modules if m.startswith('torchvision')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert (Path(tmp_path) / "run" / "samples.png").is_file()


def test_a_limited_split_reads_only_the_images_it_takes(tmp_path, monkeypatch):
    """``--train-limit 100`` reads 100 images and labels of the IDX files, not the whole split (issue 15's fast
    start); the images taken and the whole split are those the files hold, as torchvision reads them."""
    import genzoo_plugins.datasets.mnist as mnist

    raw = tmp_path / "MNIST" / "raw"
    fake_files(raw, n=50)
    counts = []

    def spy(path, ndim, count=None):
        counts.append(count)
        return read_idx(path, ndim, count)

    monkeypatch.setattr(mnist, "read_idx", spy)
    split = MNIST(tmp_path, download=False).load("train")
    assert len(split) == 50 and counts == []  # nothing read yet
    taken = split.take(7)
    assert counts == [7, 7]
    whole = read_image_file(str(raw / FILES["train"][0]))
    assert torch.equal(taken.images, whole[:7].unsqueeze(1).float() / 255)
    assert torch.equal(taken.labels, read_label_file(str(raw / FILES["train"][1]))[:7])
    assert torch.equal(split.images, whole.unsqueeze(1).float() / 255) and counts == [7, 7, 50, 50]
    assert torch.equal(split.to("cpu").images, split.images) and counts == [7, 7, 50, 50]  # the whole, read once


def test_a_file_cut_short_after_its_check_is_one_line(tmp_path):
    """A file truncated between the check and the read: genzoo's one line, not a torch error."""
    raw = tmp_path / "MNIST" / "raw"
    fake_files(raw, n=20)
    split = MNIST(tmp_path, download=False).load("test")
    path = raw / FILES["test"][0]
    path.write_bytes(path.read_bytes()[:-100])
    assert split.take(3).images.shape == (3, 1, 28, 28)
    with pytest.raises(GenzooError, match="changed while it was read"):
        split.take(20)
