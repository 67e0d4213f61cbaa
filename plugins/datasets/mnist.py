"""MNIST and Fashion-MNIST, found or downloaded by torchvision and held in memory.

Files live in torchvision's layout, ``<data root>/<MNIST|FashionMNIST>/raw``. Missing
files are unpacked from a ``NAME.gz`` beside them, else downloaded (bounded in time
and size by :func:`genzoo.download_file`) from torchvision's mirrors, or from ``$GENZOO_MIRROR/<MNIST|FashionMNIST>/``,
unless downloading is off; Fashion-MNIST is first looked for in Debian's
``dataset-fashion-mnist`` package.

A download is kept only when a checksum vouches for it: the ``.gz`` file's MD5 that
torchvision publishes, or else the SHA-256 of the unpacked file recorded below (a mirror
may re-compress, as Debian's package did, which changes the ``.gz`` but not its content).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import os
import sys
import tempfile
import zlib
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar

import torch
from genzoo_plugins.datasets.idx import check_idx, not_regular, read_header, read_idx, require_regular_file

from genzoo import Dataset, FileCheck, GenzooError, TensorSplit, atomic_write, download_file, mirror_url

if TYPE_CHECKING:
    from torchvision.datasets import MNIST as TorchvisionMNIST

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: torchvision insists on all four files before it reads either split.
ALL_FILES = FILES["train"] + FILES["test"]


class IdxSplit(TensorSplit):
    """A split of checked IDX files (images, labels) read only as far as it is used.

    ``take(n)`` reads the first ``n`` images and labels; anything else reads the whole
    split, once. ``genzoo train vae --train-limit 100`` so reads 100 of MNIST's 60,000
    training images, not all of them (about 0.15 s of a tiny run's start: issue 15).
    """

    def __init__(self, images: Path, labels: Path, count: int, classes: int) -> None:  # nothing is read yet
        self.image_file, self.label_file, self.count, self.classes = images, labels, count, classes

    def __len__(self) -> int:
        return self.count

    def _read(self, n: int) -> TensorSplit:
        try:
            images, labels = read_idx(self.image_file, 3, n), read_idx(self.label_file, 1, n)
        except OSError as exc:
            raise GenzooError(f"cannot read {self.image_file.parent}: {exc.strerror or exc}") from None
        unknown = (labels >= self.classes).nonzero()
        if len(unknown):  # a damaged file: labels 10 and 255 were drawn as classes in latent.png (M2)
            item = int(unknown[0])
            raise GenzooError(f"{self.label_file} holds the label {int(labels[item])} at item {item}, and the "
                              f"labels are 0 to {self.classes - 1}: a damaged file (genzoo data check compares "
                              "it with the published one)")
        return TensorSplit(images.unsqueeze(1).float().div_(255), labels.long())

    @cached_property
    def _whole(self) -> TensorSplit:
        return self._read(self.count)

    # TensorSplit's plain attributes, read when first used.
    @property
    def images(self) -> torch.Tensor:  # type: ignore[override]
        return self._whole.images

    @property
    def labels(self) -> torch.Tensor | None:  # type: ignore[override]
        return self._whole.labels

    def take(self, n: int) -> TensorSplit:
        return self._read(max(0, min(n, self.count)))


class TorchvisionIDX(Dataset):
    """A 28x28 grey-level IDX dataset that torchvision knows how to fetch and read."""

    sample_shape = (1, 28, 28)
    #: The ``torchvision.datasets`` class that reads (and downloads) the files, by name:
    #: torchvision is imported when data are loaded, not when plugins are.
    torchvision_name: ClassVar[str] = "MNIST"
    #: Folders of gzipped IDX files installed by a system package, looked at first.
    system_dirs: ClassVar[tuple[Path, ...]] = ()
    #: SHA-256 of each canonical unpacked file, for downloads whose ``.gz`` was re-compressed.
    content_sha256: ClassVar[dict[str, str]] = {}
    #: The largest file a ``.gz`` unpacks to (60,000 images of 28x28 and their header): an
    #: archive that declares more is refused before it is unpacked.
    max_file_bytes: ClassVar[int] = 16 + 60_000 * 28 * 28
    #: How many classes the labels name (0 to ``classes - 1``).
    classes: ClassVar[int] = 10

    @property
    def raw_dir(self) -> Path:
        return self.root / self.torchvision_name / "raw"

    @property
    def torchvision_class(self) -> type[TorchvisionMNIST]:
        cls: type[TorchvisionMNIST] = getattr(importlib.import_module("torchvision.datasets"), self.torchvision_name)
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
        for path in paths:
            self.refuse_changeable(path)
        count = check_idx(paths[0], ndim=3, item_shape=self.sample_shape[1:], dataset=self.name)
        check_idx(paths[1], ndim=1, count=count)
        # The files just checked, read directly: torchvision's dataset class would prefer
        # legacy ``processed/*.pt`` files beside them, unchecked (pixels outside 0-255).
        return IdxSplit(paths[0], paths[1], count, self.classes)

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
                self.refuse_changeable(source)
                require_regular_file(source)
                _gunzip(source, self.raw_dir / name, self.max_file_bytes, self.name)

    def _copy_from_system(self) -> None:
        """Unpack a system package's gzipped files into torchvision's folder."""
        for folder in self.system_dirs:
            sources = [folder / f"{name}.gz" for name in ALL_FILES]
            if all(s.is_file() for s in sources):
                self.raw_dir.mkdir(parents=True, exist_ok=True)
                for source, name in zip(sources, ALL_FILES):
                    target = self.raw_dir / name
                    if not target.exists():
                        _gunzip(source, target, self.max_file_bytes, self.name)
                return

    def _download(self, split: str) -> None:
        missing = [name for name in ALL_FILES if not (self.raw_dir / name).exists()]
        where = f"{self.name} files not found in {self.raw_dir} (missing {', '.join(missing)})"
        hint = ("put the IDX files there, or point genzoo at a folder that holds "
                f"{self.torchvision_name}/raw/ with --data-root DIR or GENZOO_DATA=DIR")
        if not self.download:
            raise GenzooError(f"{where} and downloading is off; {hint}")
        try:
            self.fetch()
        except GenzooError as exc:
            raise GenzooError(f"{where} and {exc}; {hint}") from None

    def _mirrors(self) -> list[str]:
        mirror = mirror_url()
        if mirror:
            return [f"{mirror}{self.torchvision_name}/"]
        return list(self.torchvision_class.mirrors)

    def fetch(self) -> None:
        """Download each missing file with :func:`genzoo.download_file`; keep it only when a checksum vouches for it.

        Each file is downloaded into a temporary folder inside ``raw/`` and moved in when
        verified, so an interrupted or refused download leaves no partial file, and the
        folders it had to create are removed again when it fails.
        """
        created = [p for p in (self.raw_dir, *self.raw_dir.parents) if not p.exists()]
        try:
            self.raw_dir.mkdir(parents=True, exist_ok=True)
            for archive, md5 in self.torchvision_class.resources:
                name = archive.removesuffix(".gz")
                if not os.path.lexists(self.raw_dir / name):
                    self._fetch_file(archive, md5)
        except BaseException as exc:
            for folder in created:  # deepest first; a folder something else wrote into stays
                try:
                    folder.rmdir()
                except OSError:
                    break
            if isinstance(exc, OSError):  # a data folder that cannot be written: disk, permissions, a file
                raise GenzooError(f"cannot write into {self.raw_dir}: {exc.strerror or exc}") from None
            raise

    def _fetch_file(self, archive: str, md5: str) -> None:
        name = archive.removesuffix(".gz")
        failures = []
        with tempfile.TemporaryDirectory(dir=self.raw_dir, prefix=".download-") as staging:
            for mirror in self._mirrors():
                url = f"{mirror}{archive}"
                downloaded = Path(staging) / archive
                downloaded.unlink(missing_ok=True)
                try:
                    print(f"Downloading {url}", file=sys.stderr, flush=True)
                    # Bounded in time and size: no gzip of a file up to max_file_bytes is larger than this.
                    download_file(url, downloaded, self.max_file_bytes + self.max_file_bytes // 1000 + 1024)
                except Exception as exc:  # offline, HTTP errors, disk: each mirror in turn
                    reason = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]  # one line
                    failures.append(f"{url}: {reason[0].strip()}")
                    continue
                refused = self._verify(downloaded, url, md5, Path(staging) / name)
                if refused:
                    failures.append(refused)
                    continue
                os.replace(downloaded, self.raw_dir / archive)
                os.replace(Path(staging) / name, self.raw_dir / name)
                return
        raise GenzooError(f"the download failed ({'; '.join(failures) or f'no mirror for {archive}'})")

    def _verify(self, archive: Path, url: str, md5: str, unpacked: Path) -> str | None:
        """Unpack ``archive`` to ``unpacked``; ``None`` if a checksum matches, else why it was refused."""
        got = _digest(archive, "md5")
        try:
            _gunzip(archive, unpacked, self.max_file_bytes, self.name)
        except GenzooError:
            return f"{url} failed the checksum (md5 {got}, published {md5}, and it does not unpack); it was not kept"
        if got == md5:
            return None
        expected = self.content_sha256.get(unpacked.name)
        if expected is not None and _digest(unpacked, "sha256") == expected:
            return None
        return (f"{url} failed the checksum (md5 {got}, published {md5}, and its content is not the "
                f"canonical {unpacked.name}); it was not kept")

    def check(self) -> list[FileCheck]:
        """Each of the four files: the ``.gz`` against torchvision's MD5, the unpacked file against its SHA-256."""
        published = {archive.removesuffix(".gz"): md5 for archive, md5 in self.torchvision_class.resources}
        checks = []
        for name in ALL_FILES:
            path, archive = self.raw_dir / name, self.raw_dir / f"{name}.gz"
            notes: list[str] = []
            ok: bool | None = None
            if archive.is_file():
                matched = _digest(archive, "md5") == published[name]
                ok = matched
                notes.append(f".gz md5 {'matches' if matched else 'differs from'} torchvision's published md5")
            elif (odd := not_regular(archive)) is not None:  # as train refuses it, not "missing"
                notes.append(f"{archive.name} is not a regular file ({odd})")
            if path.is_file():
                expected = self.content_sha256.get(name)
                if expected is not None:
                    matched = _digest(path, "sha256") == expected
                    ok = matched if ok is None else ok or matched
                    notes.append(f"content {'matches' if matched else 'differs from'} the canonical sha256")
                else:
                    notes.append("present, no published checksum")
            elif (odd := not_regular(path)) is not None:
                notes.append(f"not a regular file ({odd})")
            elif not notes:
                notes.append("missing")
            checks.append(FileCheck(path, ok, "; ".join(notes)))
        return checks


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _gunzip(source: Path, target: Path, limit: int, dataset: str) -> None:
    """Unpack ``source`` into ``target`` atomically; a broken archive is named, ``target`` left absent.

    Only as far as the IDX header inside declares, and never past ``limit`` bytes (the
    dataset's largest file): a small archive can unpack to terabytes, so one that
    declares more, or holds more than it declares, is refused and nothing is left. One
    that holds less is refused too: unpacked, the short file was left beside it and
    blamed, and every later command read that file, never the archive again (twentieth
    hostile pass, files M2).
    """
    def copy(f: IO[bytes]) -> None:
        try:
            with gzip.open(source, "rb") as src:
                header, declared = read_header(src.read)
                if declared > limit:
                    raise GenzooError(f"{source} declares {declared:,} bytes unpacked, more than the {limit:,} of "
                                      f"any {dataset} file; delete it or replace it with a complete download")
                f.write(header)
                left = declared - len(header)
                while left > 0 and (chunk := src.read(min(left, 1 << 22))):
                    f.write(chunk)
                    left -= len(chunk)
                if left > 0:
                    raise GenzooError(f"{source} holds {declared - left:,} of the {declared:,} bytes its IDX header "
                                      "declares (cut short); delete it or replace it with a complete download")
                if src.read(1):
                    raise GenzooError(f"{source} holds more than the {declared:,} bytes its IDX header declares; "
                                      "delete it or replace it with a complete download")
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise GenzooError(f"cannot unpack {source}: {exc or type(exc).__name__}; "
                              "delete it or replace it with a complete download") from None

    atomic_write(target, copy)


class MNIST(TorchvisionIDX):
    """LeCun et al.'s handwritten digits: 60,000 training and 10,000 test images."""

    name = "mnist"
    description = "handwritten digits, 28x28 grey (torchvision MNIST)"
    content_sha256 = {  # the canonical files, whose .gz had torchvision's MD5s
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }


class FashionMNIST(TorchvisionIDX):
    """Zalando's Fashion-MNIST: ten clothing classes in MNIST's format and sizes."""

    name = "fashion-mnist"
    description = "clothing images, 28x28 grey (torchvision FashionMNIST)"
    torchvision_name = "FashionMNIST"
    system_dirs = (Path("/usr/share/datasets/fashion-mnist"),)
    content_sha256 = {  # as Debian's dataset-fashion-mnist package unpacks them
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    }
