"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

``weights_only`` means a checkpoint can hold tensors and plain containers but can
never make ``torch.load`` run code, so a checkpoint from a stranger is safe to open.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from genzoo.errors import GenzooError
from genzoo.files import atomic_write
from genzoo.runfiles import read_regular, shown

FORMAT = "genzoo-checkpoint"
VERSION = 1
FILENAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save ``state`` (tensors, numbers, strings and containers of them) atomically."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    atomic_write(Path(path), lambda f: torch.save(payload, f))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a genzoo checkpoint, refusing anything that is not one.

    A pickle that asks for anything beyond tensors and plain containers (a function
    to call, a class to build) is refused by ``weights_only`` before any of it runs.
    """
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    try:
        data = read_regular(path)  # refuses a FIFO or a device rather than blocking on it
    except (FileNotFoundError, NotADirectoryError):
        raise GenzooError(f"no checkpoint at {path}") from None
    try:
        with warnings.catch_warnings():
            # torch warns about foreign pickle protocols before refusing them: noise here.
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise GenzooError(f"{path} is corrupt or not a checkpoint (unpickling failed)") from exc
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise GenzooError(
                f"refusing to load {path}: it asks for {found.group(1)} while being loaded, "
                "which could run code; genzoo loads weights only"
            ) from exc
        raise GenzooError(
            f"refusing to load {path}: it is not a plain-weights checkpoint (torch's "
            "weights-only loader rejected it), and anything else could run code"
        ) from exc
    except Exception as exc:  # torch reports a torn or foreign file in many ways
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


#: Training settings that say where a run trains, not what it trains: free to differ.
LOCAL_SETTINGS = ("device", "data_root")


def check_matches(
    state: dict[str, Any],
    model: str,
    config: dict[str, Any],
    path: Path,
    train_config: dict[str, Any] | None = None,
    sample_shape: list[int] | None = None,
) -> None:
    """Fail with what differs when a checkpoint is for another model or config.

    With ``train_config`` (a resume or an evaluation), the training settings must
    match too: a checkpoint's position means nothing under another batch size or
    data subset, and a checkpoint that records none cannot be checked at all.
    """
    if not _same(state.get("model"), model):
        raise GenzooError(
            f"{path} holds a {shown(state.get('model'))} model, not {model!r}"
        )
    saved = state.get("model_config", {})
    diffs = _differences(saved if isinstance(saved, dict) else {}, config)
    if diffs:
        raise GenzooError(
            f"{path} was saved with another {model} config (checkpoint vs requested): "
            + ", ".join(diffs)
        )
    if sample_shape is not None and not _same(state.get("sample_shape"), list(sample_shape)):
        raise GenzooError(f"{path} holds images of shape {shown(state.get('sample_shape'))}, "
                          f"not {list(sample_shape)!r} as its run")
    saved_training = state.get("train_config")
    if train_config is not None and not isinstance(saved_training, dict):
        raise GenzooError(f"{path} records no training settings, so it cannot be checked against its run")
    if train_config is not None and isinstance(saved_training, dict):
        diffs = _differences(saved_training, train_config, ignore=LOCAL_SETTINGS)
        if diffs:
            raise GenzooError(
                f"{path} was saved with other training settings (checkpoint vs run "
                "config): " + ", ".join(diffs)
            )


def _differences(saved: dict[str, Any], wanted: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    def value(where: dict[str, Any], key: Any) -> str:
        return shown(where[key]) if key in where else "(none)"

    return [
        f"{key if isinstance(key, str) else shown(key)} {value(saved, key)} vs {value(wanted, key)}"
        for key in sorted(set(saved) | set(wanted), key=repr)
        if key not in ignore and (key not in saved or key not in wanted or not _same(saved[key], wanted[key]))
    ]


def _same(saved: Any, wanted: Any) -> bool:
    """``saved == wanted`` for plain values; a tensor (``weights_only`` allows one anywhere) is never equal.

    Comparing a tensor with a list gives a tensor, whose truth is an error; the
    identity fields a checkpoint records are plain JSON-like values.
    """
    def plain(value: Any) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str))

    return plain(saved) and saved == wanted
