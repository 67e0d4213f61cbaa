"""MNIST and Fashion-MNIST, found or downloaded by torchvision and held in memory.

Files live in torchvision's layout, ``<data root>/<MNIST|FashionMNIST>/raw``. Missing
files are unpacked from a ``NAME.gz`` beside them, else downloaded by torchvision (with
its progress bar) unless downloading is off;
Fashion-MNIST is first looked for in Debian's ``dataset-fashion-mnist`` package.
"""

from __future__ import annotations

import gzip
import importlib
import os
import shutil
import zlib
from pathlib import Path
from typing import IO, ClassVar

from genzoo import Dataset, GenzooError, TensorSplit, atomic_write
from genzoo_plugins.datasets.idx import check_idx, require_regular_file

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: torchvision insists on all four files before it reads either split.
ALL_FILES = FILES["train"] + FILES["test"]


class TorchvisionIDX(Dataset):
    """A 28x28 grey-level IDX dataset that torchvision knows how to fetch and read."""

    sample_shape = (1, 28, 28)
    #: The ``torchvision.datasets`` class that reads (and downloads) the files, by name:
    #: torchvision is imported when data are loaded, not when plugins are.
    torchvision_name: ClassVar[str] = "MNIST"
    #: Folders of gzipped IDX files installed by a system package, looked at first.
    system_dirs: ClassVar[tuple[Path, ...]] = ()

    @property
    def raw_dir(self) -> Path:
        return self.root / self.torchvision_name / "raw"

    @property
    def torchvision_class(self) -> type:
        cls: type = getattr(importlib.import_module("torchvision.datasets"), self.torchvision_name)
        return cls

    def load(self, split: str) -> TensorSplit:
        if split not in FILES:
            raise GenzooError(f"unknown split {split!r}; use train or test")
        self._unpack_gzipped()
        if not self._complete():
            self._copy_from_system()
        if not self._complete():
            self._download(split)
        for name in ALL_FILES:  # torchvision would say only "Dataset not found" for any of them
            require_regular_file(self.raw_dir / name)
        paths = [self.raw_dir / name for name in FILES[split]]
        count = check_idx(paths[0], ndim=3, item_shape=self.sample_shape[1:], dataset=self.name)
        check_idx(paths[1], ndim=1, count=count)
        # The files just checked, read directly: torchvision's dataset class would prefer
        # legacy ``processed/*.pt`` files beside them, unchecked (pixels outside 0-255).
        from torchvision.datasets.mnist import read_image_file, read_label_file

        try:
            images, labels = read_image_file(str(paths[0])), read_label_file(str(paths[1]))
        except Exception as exc:
            raise GenzooError(f"torchvision could not read {self.raw_dir}: {type(exc).__name__}: {exc}") from None
        return TensorSplit(images.unsqueeze(1).float().div_(255), labels.long())

    def _complete(self) -> bool:
        return all(os.path.lexists(self.raw_dir / name) for name in ALL_FILES)

    def _unpack_gzipped(self) -> None:
        """Unpack a missing file whose ``.gz`` lies beside it (as a manual download leaves them).

        torchvision would unpack them too, but only on a download with their exact
        checksums: with ``--no-download``, offline, or for other files it says nothing.
        """
        for name in ALL_FILES:
            source = self.raw_dir / f"{name}.gz"
            if not os.path.lexists(self.raw_dir / name) and os.path.lexists(source):
                require_regular_file(source)
                _gunzip(source, self.raw_dir / name)

    def _copy_from_system(self) -> None:
        """Unpack a system package's gzipped files into torchvision's folder."""
        for folder in self.system_dirs:
            sources = [folder / f"{name}.gz" for name in ALL_FILES]
            if all(s.is_file() for s in sources):
                self.raw_dir.mkdir(parents=True, exist_ok=True)
                for source, name in zip(sources, ALL_FILES):
                    target = self.raw_dir / name
                    if not target.exists():
                        _gunzip(source, target)
                return

    def _download(self, split: str) -> None:
        missing = [name for name in ALL_FILES if not (self.raw_dir / name).exists()]
        where = f"{self.name} files not found in {self.raw_dir} (missing {', '.join(missing)})"
        hint = ("put the IDX files there, or point genzoo at a folder that holds "
                f"{self.torchvision_name}/raw/ with --data-root DIR or GENZOO_DATA=DIR")
        if not self.download:
            raise GenzooError(f"{where} and downloading is off; {hint}")
        try:
            self.torchvision_class(str(self.root), train=split == "train", download=True)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
            raise GenzooError(f"{where} and the download failed ({reason}); {hint}") from None


def _gunzip(source: Path, target: Path) -> None:
    """Unpack ``source`` into ``target`` atomically; a broken archive is named, ``target`` left absent."""
    def copy(f: IO[bytes]) -> None:
        try:
            with gzip.open(source, "rb") as src:
                shutil.copyfileobj(src, f)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise GenzooError(f"cannot unpack {source}: {exc or type(exc).__name__}; "
                              "delete it or replace it with a complete download") from None

    atomic_write(target, copy)


class MNIST(TorchvisionIDX):
    """LeCun et al.'s handwritten digits: 60,000 training and 10,000 test images."""

    name = "mnist"
    description = "handwritten digits, 28x28 grey (torchvision MNIST)"


class FashionMNIST(TorchvisionIDX):
    """Zalando's Fashion-MNIST: ten clothing classes in MNIST's format and sizes."""

    name = "fashion-mnist"
    description = "clothing images, 28x28 grey (torchvision FashionMNIST)"
    torchvision_name = "FashionMNIST"
    system_dirs = (Path("/usr/share/datasets/fashion-mnist"),)
