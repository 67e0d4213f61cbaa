"""Seeded, forked random streams for evaluation and pictures.

Inside :func:`seeded` torch draws the same numbers on every call, and on leaving it
the global stream is back where it was, so evaluating never changes what is trained.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Fork torch's RNG (and ``device``'s, when it is a GPU) and seed it with ``seed``."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
