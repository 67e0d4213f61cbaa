"""MNIST and Fashion-MNIST, found or downloaded by torchvision and held in memory.

Files live in torchvision's layout, ``<data root>/<MNIST|FashionMNIST>/raw``. Missing
files are downloaded by torchvision (with its progress bar) unless downloading is off;
Fashion-MNIST is first looked for in Debian's ``dataset-fashion-mnist`` package.
"""

from __future__ import annotations

import gzip
import importlib
import shutil
from pathlib import Path
from typing import ClassVar

from genzoo import Dataset, GenzooError, TensorSplit
from genzoo.files import atomic_write
from genzoo_plugins.datasets.idx import check_idx

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
        return getattr(importlib.import_module("torchvision.datasets"), self.torchvision_name)

    def load(self, split: str) -> TensorSplit:
        if split not in FILES:
            raise GenzooError(f"unknown split {split!r}; use train or test")
        if not self._complete():
            self._copy_from_system()
        if not self._complete():
            self._download(split)
        paths = [self.raw_dir / name for name in FILES[split]]
        count = check_idx(paths[0], ndim=3)
        check_idx(paths[1], ndim=1, count=count)
        try:
            data = self.torchvision_class(str(self.root), train=split == "train", download=False)
        except Exception as exc:
            raise GenzooError(f"torchvision could not read {self.raw_dir}: {type(exc).__name__}: {exc}") from None
        images = data.data.unsqueeze(1).float().div_(255)
        return TensorSplit(images, data.targets.clone())

    def _complete(self) -> bool:
        return all((self.raw_dir / name).exists() for name in ALL_FILES)

    def _copy_from_system(self) -> None:
        """Unpack a system package's gzipped files into torchvision's folder."""
        for folder in self.system_dirs:
            sources = [folder / f"{name}.gz" for name in ALL_FILES]
            if all(s.is_file() for s in sources):
                self.raw_dir.mkdir(parents=True, exist_ok=True)
                for source, name in zip(sources, ALL_FILES):
                    target = self.raw_dir / name
                    if not target.exists():
                        with gzip.open(source, "rb") as src:
                            atomic_write(target, lambda f: shutil.copyfileobj(src, f))
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
