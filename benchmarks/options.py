"""Command-line counts of the benchmark scripts: one parser, no torch import, so a bad value is refused at once."""

from __future__ import annotations

import argparse
from typing import Callable


def at_least(least: int, most: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``least`` (and at most ``most``), else argparse's one line (``must
    be at least 1, got 0``).

    A count below its least was taken as given: ``--epochs 0`` read as "not given" trained the full budget,
    ``--steps -3`` timed whole epochs and recorded negative work, ``--rounds 0`` ended in the median of nothing.
    ``most`` is the bound a genzoo command enforces, refused here before the work that comes first: the
    leaderboard's ``--iwae-k 20000`` trained every run, then ``genzoo eval`` refused it (nineteenth hostile pass, M1).
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {text}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most:,}, got {text}")
        return value
    return parse
