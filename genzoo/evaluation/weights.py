"""Feature-extractor weights: find (or download) Inception's, and fingerprint any file.

torch-fidelity would download the Inception weights itself on first use; genzoo looks
for them first, so that offline it can stop with one line that says how to provide
them instead of a network traceback halfway through an evaluation.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from pathlib import Path
from typing import Any

import torch

from genzoo.errors import GenzooError
from genzoo.files import atomic_write

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE


def inception_weights(path: str | Path | None = None, download: bool = True) -> Path:
    """The Inception weights file: ``path``, else torch.hub's checkpoint folder (downloaded if allowed)."""
    if path is not None:
        if not Path(path).is_file():
            raise GenzooError(f"Inception weights not found at {path}")
        return Path(path)
    target = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if target.is_file():
        return target
    how = (f"put {INCEPTION_FILE} in $TORCH_HOME/hub/checkpoints/ (now {target.parent}) "
           f"or pass --inception-weights PATH")
    if not download:
        raise GenzooError(f"Inception weights not found and downloading is off; {how}")
    try:
        print(f"genzoo: downloading Inception weights to {target}", file=sys.stderr)
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(INCEPTION_URL, timeout=30) as response:
            atomic_write(target, lambda f: _copy(response, f))
    except Exception as exc:  # offline, proxy, disk: all end the same way for the user
        reason = str(getattr(exc, "reason", exc)) or type(exc).__name__
        raise GenzooError(f"Inception weights not found and the download failed ({reason}); {how}") from None
    return target


def _copy(source: Any, target: Any) -> None:
    while chunk := source.read(1 << 20):
        target.write(chunk)


_digests: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """First 12 hex digits of a file's sha256, memoised per (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        _digests[key] = h.hexdigest()[:12]
    return _digests[key]
