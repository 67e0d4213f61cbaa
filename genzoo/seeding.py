"""Seeded, forked random streams for evaluation and pictures.

Inside :func:`seeded` torch draws the same numbers on every call, and on leaving it
the global stream is back where it was, so evaluating never changes what is trained.
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
