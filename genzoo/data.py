"""The Dataset interface, in-memory splits, and where data lives on disk."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Iterator, Protocol

import torch

from genzoo.errors import GenzooError

DATA_ENV = "GENZOO_DATA"
DEFAULT_DATA_ROOT = Path("data")


def resolve_data_root(given: str | os.PathLike[str] | None = None) -> Path:
    """``--data-root`` wins over ``$GENZOO_DATA``, which wins over ``./data``."""
    if given:
        return Path(given)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else DEFAULT_DATA_ROOT


class Split(Protocol):
    """One split of a dataset, as the trainer consumes it.

    :class:`TensorSplit` keeps it in memory; a dataset too big for memory can return
    any object with these methods that streams batches from disk instead.
    """

    def __len__(self) -> int: ...

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        skip: int = 0,
    ) -> Iterator[torch.Tensor]: ...

    def to(self, device: torch.device | str) -> "Split": ...

    def take(self, n: int) -> "Split": ...


class TensorSplit:
    """A split held as one float tensor in [0, 1] on the training device.

    Batches are slices of a shuffled index, so an epoch costs one ``randperm`` and
    one gather per batch instead of a per-image decode pipeline. ``labels`` are
    optional and never read by training or evaluation; they travel with the images
    through :meth:`take` and :meth:`to`, so they must have one row per image.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        one_per_image = isinstance(labels, torch.Tensor) and labels.dim() > 0 and labels.shape[0] == images.shape[0]
        if labels is not None and not one_per_image:
            got = (f"labels of shape {tuple(labels.shape)}" if isinstance(labels, torch.Tensor)
                   else f"labels of type {type(labels).__name__}")
            raise GenzooError(f"TensorSplit got {images.shape[0]} images but {got}; labels must be None "
                              "or a tensor with one row per image")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        skip: int = 0,
    ) -> Iterator[torch.Tensor]:
        """Yield batches in order, or in a random order drawn from ``generator``.

        ``skip`` drops the first batches of that order, so a run resumed mid-epoch
        sees exactly the batches it had not yet seen.
        """
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=generator).to(self.images.device)
            for start in range(skip * batch_size, n, batch_size):
                yield self.images[order[start : start + batch_size]]
        else:
            for start in range(skip * batch_size, n, batch_size):
                yield self.images[start : start + batch_size]

    def to(self, device: torch.device | str) -> "TensorSplit":
        labels = None if self.labels is None else self.labels.to(device)
        return TensorSplit(self.images.to(device), labels)

    def take(self, n: int) -> "TensorSplit":
        """The first ``n`` images: small, fixed subsets for tests and quick runs."""
        labels = None if self.labels is None else self.labels[:n]
        return TensorSplit(self.images[:n], labels)


class Dataset(ABC):
    """A named dataset plugin: its sample shape and a loader for each split."""

    name: ClassVar[str]
    sample_shape: ClassVar[tuple[int, ...]]
    description: ClassVar[str] = ""

    def __init__(self, root: Path, download: bool = True) -> None:
        self.root = Path(root)
        self.download = download

    @abstractmethod
    def load(self, split: str) -> Split:
        """Load ``"train"`` or ``"test"``; raise :class:`genzoo.GenzooError` when unavailable."""
