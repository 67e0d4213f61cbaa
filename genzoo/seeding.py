"""Seeded, forked random streams for evaluation and pictures; forked ones for plugin code beside training.

Inside :func:`seeded` torch draws the same numbers on every call, and on leaving it
the global stream is back where it was, so evaluating never changes what is trained.
Inside :func:`forked` plugin code (a logger) may draw from or seed torch's streams:
on leaving it every stream a checkpoint holds is back where it was.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from genzoo.checks import is_count, shown
from genzoo.errors import GenzooError

#: The largest seed genzoo takes. torch accepts seeds in [-2**63, 2**64) and the trainer
#: seeds each epoch's evaluation with ``seed + epoch``; torch-fidelity hands the FID seed
#: to numpy's ``RandomState``, which accepts only [0, 2**32): the narrowest range wins,
#: so one seed works for train, eval and compare alike.
MAX_SEED = 2**32 - 1


def check_seed(seed: object) -> None:
    """Refuse a seed that some use of it would reject later (after a run folder exists)."""
    if not (isinstance(seed, int) and is_count(seed, minimum=0) and seed <= MAX_SEED):
        raise GenzooError(f"seed must be an integer from 0 to {MAX_SEED}, got {shown(seed)}")


@contextmanager
def seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Fork torch's RNG (and ``device``'s, when it is a GPU) and seed it with ``seed``."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextmanager
def forked() -> Iterator[None]:
    """Fork every random stream a checkpoint holds (torch's, and each GPU's, as ``Trainer.save`` keeps them).

    For plugin code called between the steps of a run (a logger picking which samples to upload, or seeding
    torch for picks of its own): its draws must not move the run's streams, or a run killed after a
    checkpoint and resumed would differ from the one never interrupted (eighteenth hostile pass, F1).
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield
