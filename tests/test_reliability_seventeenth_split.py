"""Found by the sixteenth look (fifteenth hostile pass, F8 and F9): the Split protocol's ``skip`` and ``generator``.

F8: a split that ignores ``batches(skip=...)`` passed every check before training; a resume trained the epoch's
first batches again, saved them over the run's checkpoint and failed at the epoch's end, on every resume.
F9: a split that shuffles with torch's global stream instead of the ``generator`` it is given trained and
resumed to exit 0, and the resumed run differed from an uninterrupted one. Each test failed before its fix
(docs/reliability.md, "Found by the sixteenth look").
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from genzoo_plugins.datasets.mnist import MNIST
from reliability_support import (  # noqa: F401 - data_root, one_thread and steered are fixtures
    SteeredVAE,
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    snapshot,
    steered,
)
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from genzoo import GenzooError, TensorSplit, hookimpl
from genzoo.building import _checked_split
from genzoo.sampler import CopiedSplit


class Streamed:
    """A streaming split over a TensorSplit's images; each subclass makes one honest mistake when
    ``mistaken`` (a test turns it off to make a sound run first, as a plugin's older version would)."""

    mistaken = True

    def __init__(self, split: TensorSplit) -> None:
        self.s = split

    def __len__(self) -> int:
        return len(self.s)

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                skip: int = 0) -> Iterator[torch.Tensor]:
        return self.s.batches(batch_size, shuffle=shuffle, generator=generator, skip=skip)

    def take(self, n: int) -> Any:
        return type(self)(self.s.take(n))

    def to(self, device: Any) -> Any:
        return type(self)(self.s.to(device))


class NoSkip(Streamed):
    """F8's DataLoader-style wrapper: honours shuffle, forgets skip."""

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                skip: int = 0) -> Iterator[torch.Tensor]:
        return super().batches(batch_size, shuffle=shuffle, generator=generator, skip=0 if self.mistaken else skip)


class ShardSkip(Streamed):
    """Seeks to ``skip`` within its first shard of 100 images only; a skip past it is forgotten."""

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                skip: int = 0) -> Iterator[torch.Tensor]:
        forgotten = self.mistaken and skip * batch_size >= 100
        return super().batches(batch_size, shuffle=shuffle, generator=generator, skip=0 if forgotten else skip)


class GlobalShuffle(Streamed):
    """F9's split: ``torch.randperm(n)``, the generator forgotten."""

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                skip: int = 0) -> Iterator[torch.Tensor]:
        n = len(self)
        order = torch.randperm(n, generator=None if self.mistaken else generator) if shuffle else torch.arange(n)
        for start in range(skip * batch_size, n, batch_size):
            yield self.s.images[order[start:start + batch_size]].clone()


class OwnGenerator(Streamed):
    """Shuffles with a generator of its own, seeded once: each pass draws the next order of its stream."""

    def __init__(self, split: TensorSplit) -> None:
        super().__init__(split)
        self.rng = torch.Generator().manual_seed(0)

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                skip: int = 0) -> Iterator[torch.Tensor]:
        return super().batches(batch_size, shuffle=shuffle, generator=self.rng if self.mistaken else generator,
                               skip=skip)


class Loader(Streamed):
    """Shuffles through a DataLoader whose RandomSampler gets the generator; the DataLoader itself draws a
    base seed from torch's global stream on every pass, so a resumed run's models draw other noise."""

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                skip: int = 0) -> Iterator[torch.Tensor]:
        data = TensorDataset(self.s.images)
        sampler = RandomSampler(data, generator=generator) if shuffle else None
        loader = DataLoader(data, batch_size=batch_size, sampler=sampler,
                            generator=None if self.mistaken else generator)
        return (x for i, (x,) in enumerate(loader) if i >= skip)


class Sound(Streamed):
    """A streaming split without mistakes: it passes every check."""


SPLITS: dict[str, type[Streamed]] = {"noskip": NoSkip, "shardskip": ShardSkip, "globshuf": GlobalShuffle,
                                     "owngen": OwnGenerator, "loader": Loader, "sound": Sound}


def streaming(name: str, kind: type[Streamed]) -> type[MNIST]:
    def load(self: MNIST, split: str) -> Any:
        return kind(MNIST.load(self, split))

    return type(name, (MNIST,), {"load": load})


@hookimpl
def register_datasets(register: Any) -> None:
    for name, kind in SPLITS.items():
        register(name, streaming(name, kind))


@pytest.fixture
def splits(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_datasets=register_datasets), "seventeenth-split",
                    "test-seventeenth-split")


def train_args(dataset: str, data: Path, out: Path, model: str = "vae") -> list[str]:
    return ["train", model, "--dataset", dataset, "--data-root", str(data), "--epochs", "1", "--batch-size", "10",
            "--test-limit", "20", "--latent", "2", "--hidden", "16", "--device", "cpu", "--out", str(out)]


@pytest.mark.parametrize(("dataset", "needles"), [
    ("noskip", ["dataset 'noskip'", "train split's batches(32, shuffle=True, skip=2)", "did not start with batch 3",
                "drops that order's first k batches"]),
    ("globshuf", ["dataset 'globshuf'", "train split's batches(32, shuffle=True)", "torch's global random stream",
                  "generator=generator"]),
    ("owngen", ["dataset 'owngen'", "train split's batches(32, shuffle=True)", "gave other batches",
                "two generators in the same state", "generator=generator"]),
    ("loader", ["dataset 'loader'", "torch's global random stream", "DataLoader"]),
])
def test_a_split_that_ignores_skip_or_generator_is_one_line_before_any_run_folder(
        splits: None, data_root: Path, tmp_path: Path, dataset: str, needles: list[str],
        capsys: pytest.CaptureFixture) -> None:
    """F8, F9: before, each trained to exit 0; a resume then retrained the epoch's first batches (noskip), or went
    on with another order (globshuf, owngen) or other model noise (loader) than the run it continued."""
    code, _, err = run_main(train_args(dataset, data_root, tmp_path / "run"), capsys)
    assert_one_line_error(code, err, *needles, "a resumed run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("dataset", "needles"), [
    ("noskip", ["dataset 'noskip'", "skip=2", "did not start with batch 3"]),  # refused as the splits load
    ("globshuf", ["dataset 'globshuf'", "torch's global random stream"]),
    # Skips within 100 images: the check at load passes, the trainer's at the resumed step does not.
    ("shardskip", ["training split broke the Split protocol in epoch 1", "batches(10, shuffle=True, skip=10)",
                   "did not start with batch 11", "the checkpoint is kept"]),
])
def test_a_resume_with_a_split_that_breaks_skip_or_generator_is_refused_and_keeps_the_checkpoint(
        splits: None, steered: None, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        dataset: str, needles: list[str], capsys: pytest.CaptureFixture) -> None:
    """F8: before, the resume trained steps 11 and 12 on the epoch's first batches, saved that over the step-10
    checkpoint (--checkpoint-every 1) and failed at the epoch's end, as would every later resume. Now nothing
    trains: the run folder is as the interrupted run left it, so the split, once mended, resumes it."""
    run = tmp_path / "run"
    monkeypatch.setattr(SPLITS[dataset], "mistaken", False)  # the split as the run was started with
    SteeredVAE.interrupt_at = 10
    code, _, err = run_main([*train_args(dataset, data_root, run, "steered-vae"), "--checkpoint-every", "1"], capsys)
    assert code == 130, err
    SteeredVAE.interrupt_at = None
    monkeypatch.setattr(SPLITS[dataset], "mistaken", True)
    before, steps = snapshot(run), SteeredVAE.steps
    code, _, err = run_main(["resume", str(run)], capsys)
    assert_one_line_error(code, err, *needles)
    assert SteeredVAE.steps == steps  # no step trained on the wrong batches
    assert snapshot(run) == before


@pytest.mark.parametrize("images", [1, 2, 3, 7, 95, 96, 97, 100_000])
def test_sound_splits_pass_the_shuffle_checks_at_any_length(images: int) -> None:
    """No false refusal: a TensorSplit, a streaming split that passes the options on, and a sampler's copy."""
    split = TensorSplit(torch.rand(images, 1, 2, 2))
    for sound in (split, Sound(split), CopiedSplit(split)):
        assert len(_checked_split("any", "train", sound, (1, 2, 2), None, torch.device("cpu"))) == images


@pytest.mark.parametrize("kind", [NoSkip, GlobalShuffle, OwnGenerator, Loader])
def test_the_checks_see_each_mistake_from_three_images(kind: type[Streamed]) -> None:
    """The smallest split that can be resumed past a batch with a skip of two."""
    with pytest.raises(GenzooError, match="a resumed run"):
        _checked_split("any", "train", kind(TensorSplit(torch.rand(3, 1, 2, 2))), (1, 2, 2), None,
                       torch.device("cpu"))
