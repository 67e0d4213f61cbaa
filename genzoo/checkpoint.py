"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

``weights_only`` means a checkpoint can hold tensors and plain containers but can
never make ``torch.load`` run code, so a checkpoint from a stranger is safe to open.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from genzoo.errors import GenzooError
from genzoo.files import atomic_write

FORMAT = "genzoo-checkpoint"
VERSION = 1
FILENAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save ``state`` (tensors, numbers, strings and containers of them) atomically."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    atomic_write(Path(path), lambda f: torch.save(payload, f))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a genzoo checkpoint, refusing anything that is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise GenzooError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenzooError(
            f"refusing to load {path}: it is not a plain-weights checkpoint "
            f"(weights_only load rejected it: {first})"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise GenzooError(
            f"{path} is truncated or not a checkpoint ({type(exc).__name__})"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise GenzooError(f"{path} is not a genzoo checkpoint")
    if state.get("version") != VERSION:
        raise GenzooError(
            f"{path} has checkpoint format version {state.get('version')!r}; "
            f"this genzoo reads version {VERSION}"
        )
    return state


def check_matches(state: dict[str, Any], model: str, config: dict[str, Any], path: Path) -> None:
    """Fail with what differs when a checkpoint is for another model or config."""
    if state.get("model") != model:
        raise GenzooError(
            f"{path} holds a {state.get('model')!r} model, not {model!r}"
        )
    saved = state.get("model_config", {})
    diffs = [
        f"{key} {saved.get(key)!r} vs {config.get(key)!r}"
        for key in sorted(set(saved) | set(config))
        if saved.get(key) != config.get(key)
    ]
    if diffs:
        raise GenzooError(
            f"{path} was saved with another {model} config (checkpoint vs requested): "
            + ", ".join(diffs)
        )
