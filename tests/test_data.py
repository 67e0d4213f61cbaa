"""Datasets: where data is looked for, how it loads, and what a bad file says."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from genzoo_plugins.datasets import mnist as mnist_plugin
from genzoo_plugins.datasets.mnist import FILES, MNIST, FashionMNIST

from genzoo import Dataset, GenzooError, TensorSplit
from genzoo.data import resolve_data_root


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("GENZOO_DATA", "/from/env")
    assert resolve_data_root("/given") == Path("/given")
    assert resolve_data_root(None) == Path("/from/env")
    monkeypatch.delenv("GENZOO_DATA")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    assert resolve_data_root(None) == tmp_path / "cache" / "data"  # no ./data: the user cache
    (tmp_path / "data").mkdir()
    assert resolve_data_root(None) == Path("data")


def test_mnist_splits_are_in_memory_tensors_in_unit_range(mnist):
    train, test = mnist["train"], mnist["test"]
    assert train.images.shape == (60000, 1, 28, 28) and len(test) == 10000
    assert train.images.dtype == torch.float32
    assert 0.0 == float(train.images.min()) and float(train.images.max()) == 1.0
    assert float(train.images.mean()) == pytest.approx(0.1307, abs=1e-4)
    assert not torch.equal(train.images[:100], test.images[:100])


def test_shuffled_batches_cover_the_split_once_and_skip_resumes_the_same_order():
    split = TensorSplit(torch.arange(10.0).view(10, 1, 1, 1))
    batches = list(split.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    seen = torch.cat(batches).flatten()
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    rest = list(split.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0), skip=1))
    assert torch.equal(torch.cat(rest), torch.cat(batches[1:]))


def write_idx(path: Path, array: torch.Tensor, opener=open) -> None:
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with opener(path, "wb") as f:
        f.write(header + array.to(torch.uint8).numpy().tobytes())


def fake_files(folder: Path, opener=open, suffix: str = "", n: int = 30) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split in FILES.values():
        write_idx(folder / f"{split[0]}{suffix}", torch.randint(0, 256, (n, 28, 28)), opener)
        write_idx(folder / f"{split[1]}{suffix}", torch.randint(0, 10, (n,)), opener)


def test_fashion_mnist_reads_the_debian_package_files(tmp_path, monkeypatch):
    system = tmp_path / "usr-share-datasets"
    fake_files(system, gzip.open, ".gz")
    monkeypatch.setattr(FashionMNIST, "system_dirs", (system,))
    split = FashionMNIST(tmp_path / "root", download=False).load("test")
    assert split.images.shape == (30, 1, 28, 28)
    assert (tmp_path / "root" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_truncated_file_is_a_clear_error_not_a_numpy_traceback(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    fake_files(raw)
    images = raw / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(GenzooError, match="train-images-idx3-ubyte is truncated"):
        MNIST(tmp_path, download=False).load("train")


def test_foreign_file_is_refused_by_its_magic_number(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    fake_files(raw)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"<html>not found</html>")
    with pytest.raises(GenzooError, match="not a 1-d unsigned-byte IDX file"):
        MNIST(tmp_path, download=False).load("test")


def test_failed_download_says_where_it_looked_and_how_to_point_at_files(tmp_path, monkeypatch):
    def offline(url, target, max_bytes, sha256_prefix=None):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\n<urlopen error no network>")

    monkeypatch.setattr(mnist_plugin, "download_file", offline)
    with pytest.raises(GenzooError) as info:
        MNIST(tmp_path, download=True).load("train")
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "MNIST" / "raw") in message and "download failed" in message
    assert "--data-root" in message and "GENZOO_DATA" in message


@pytest.mark.parametrize("labels,why", [
    (torch.zeros(9, dtype=torch.int64), "labels of shape (9,)"),
    (torch.tensor(3), "labels of shape ()"),
    ([0] * 10, "labels of type list"),
])
def test_tensor_split_labels_must_have_one_row_per_image(labels, why):
    """They were taken as given: ``take`` then cut images and labels out of step, silently."""
    with pytest.raises(GenzooError) as info:
        TensorSplit(torch.zeros(10, 1, 2, 2), labels)
    assert str(info.value) == (f"TensorSplit got 10 images but {why}; labels must be None or a tensor "
                               "with one row per image")


def test_tensor_split_labels_travel_with_their_images():
    split = TensorSplit(torch.arange(6.0).view(6, 1, 1, 1), torch.arange(6) * 10).take(4).to("cpu")
    assert split.labels.tolist() == [0, 10, 20, 30] and len(split) == 4
    assert all(batch.dim() == 4 for batch in split.batches(3))  # images only, never (image, label) pairs


def test_a_dataset_without_its_own_init_keeps_root_and_download(tmp_path):
    class Plain(Dataset):
        name, sample_shape = "plain", (1, 2, 2)

        def load(self, split):
            return TensorSplit(torch.zeros(3, 1, 2, 2))

    dataset = Plain(str(tmp_path), download=False)  # as genzoo creates it
    assert dataset.root == tmp_path and dataset.download is False
