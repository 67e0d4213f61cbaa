"""Value checks every reader of user files shares: counts and numbers (never ``bool``), and how a bad value is quoted."""

from __future__ import annotations

import math
from typing import Any

from genzoo.errors import GenzooError


def shown(value: Any) -> str:
    """``repr(value)``, cut short: a message quotes a bad value, not a whole file of it."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_count(value: Any, minimum: int = 1) -> bool:
    """An ``int`` (not a ``bool``, which JSON's ``true`` becomes) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_number(value: Any) -> bool:
    """A finite ``int`` or ``float`` (not a ``bool``) that a ``float`` can hold."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int past 1e308
        return False


def require_count(name: str, value: Any, minimum: int = 1) -> None:
    """Refuse anything but an ``int`` of at least ``minimum`` (``True`` included), in one line."""
    if not is_count(value, minimum):
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer of at least {minimum}")
        raise GenzooError(f"{name} must be {kind}, got {shown(value)}")
