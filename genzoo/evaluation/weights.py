"""Feature-extractor weights: find (or download) Inception's, load any weights safely, fingerprint files.

torch-fidelity would download the Inception weights itself on first use; genzoo looks
for them first, so that offline it can stop with one line that says how to provide
them instead of a network traceback halfway through an evaluation. torch-fidelity also
opens a weights file with a full unpickler (``torch.load(weights_only=False)``), which
runs whatever code the file asks for; genzoo therefore reads every weights file itself
with ``weights_only=True`` and hands torch-fidelity only the tensors.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import sys
from pathlib import Path
from typing import Any

import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from genzoo.checkpoint import MAX_WEIGHTS_BYTES, load_weights_only
from genzoo.checks import all_finite, data_problem, printable
from genzoo.data import download_file, mirror_url
from genzoo.errors import GenzooError
from genzoo.files import open_regular, remove_made

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
#: The start of the published file's sha256, which torch.hub's naming convention puts in its name.
INCEPTION_SHA256_PREFIX = "6726825d"
#: The published file is 95,733,403 bytes; a download larger than this is not it.
INCEPTION_MAX_BYTES = 100_000_000


def inception_url() -> str:
    """Where the weights come from: torch-fidelity's release, or ``$GENZOO_MIRROR/<file>``."""
    mirror = mirror_url()
    return f"{mirror}{INCEPTION_FILE}" if mirror else INCEPTION_URL


def inception_target() -> Path:
    """Where torch-fidelity (through torch.hub) looks for the weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def inception_weights(path: str | Path | None = None, download: bool = True) -> Path:
    """The Inception weights file: ``path``, else torch.hub's checkpoint folder (downloaded if allowed)."""
    if path is not None:
        if not Path(path).is_file():
            found = "not found" if not os.path.lexists(path) else "not a regular file"
            raise GenzooError(f"Inception weights {found} at {printable(str(path))}")
        return Path(path)
    target = inception_target()
    if target.is_file():
        return target
    standing = not_a_file(target)
    if standing is not None:  # a download would be moved over a FIFO or link, or fail on a folder after 95 MB
        raise GenzooError(f"Inception weights not a regular file at {printable(str(target))} ({standing}); move "
                          "it away to have genzoo download them there, or pass --inception-weights PATH")
    how = (f"put {INCEPTION_FILE} in $TORCH_HOME/hub/checkpoints/ (now {target.parent}) "
           f"or pass --inception-weights PATH")
    if not download:
        raise GenzooError(f"Inception weights not found and downloading is off; {how}")
    url = inception_url()
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    try:
        print(f"genzoo: downloading Inception weights from {url} to {target}", file=sys.stderr)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Bounded in time and size (torch.hub's downloader, which torch-fidelity uses, is not); it writes to a
        # temporary file, checks the hash and moves it in, or deletes it.
        download_file(url, target, INCEPTION_MAX_BYTES, sha256_prefix=INCEPTION_SHA256_PREFIX)
    except BaseException as exc:  # offline, proxy, disk, checksum, timeout: all end the same way for the user
        remove_made(created)  # no empty folders left behind, also after Ctrl-C or SIGTERM
        if not isinstance(exc, Exception):
            raise
        reason = str(getattr(exc, "reason", exc)).strip().splitlines()[-1:] or [type(exc).__name__]
        raise GenzooError(f"Inception weights not found and the download failed ({reason[0]}; from {url}); "
                          f"{how}") from None
    return target


def not_a_file(path: Path) -> str | None:
    """What stands at ``path`` where a file belongs, in words, or None: nothing, or a regular file (or a link to
    one). A FIFO, a folder or a link to nothing there was called "not found" and a download started (nineteenth
    hostile pass, M4); ``genzoo data check`` called it "missing" (twentieth hostile pass, files M3)."""
    try:
        if not os.path.lexists(path) or path.is_file():
            return None
        if not path.exists():
            return "a link to nothing"
        mode = path.stat().st_mode
    except OSError as exc:  # a folder on the way that cannot be looked into
        return f"not readable ({exc.strerror or exc})"
    what = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a socket or a device"
    return f"a link to {what}" if path.is_symlink() else what


_digests: dict[tuple[str, int, int], str] = {}


def _check_size(path: Path, size: int) -> None:
    """Inception's weights are 91 MB, the MNIST classifier's under 1 MB: a file over genzoo's one limit for
    weights is not weights, and hashing a sparse 200 GB file would take hours."""
    if size > MAX_WEIGHTS_BYTES:
        raise GenzooError(f"weights file {path} is {size:,} bytes, more than the {MAX_WEIGHTS_BYTES:,} genzoo "
                          "opens; it is not a weights file")


def file_sha256(path: Path) -> str:
    """A file's sha256 (hex), memoised per (path, size, mtime): a weights file is hashed once."""
    stat = path.stat()
    _check_size(path, stat.st_size)
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        _digests[key] = h.hexdigest()
    return _digests[key]


def file_digest(path: Path) -> str:
    """First 12 hex digits of a file's sha256: enough to tell weights files apart in a folder name."""
    return file_sha256(path)[:12]


def load_weights(path: Path) -> tuple[dict[str, Any], str]:
    """A weights file's contents through ``torch.load(weights_only=True)``, and the sha256 of the bytes read.

    Loaded from the open file (never read whole into memory first), then hashed from
    the same open file. A pickle that asks for anything beyond tensors and plain
    containers is refused before any of it runs.
    """
    path = Path(path)
    try:
        with open_regular(path) as f:
            _check_size(path, os.fstat(f.fileno()).st_size)
            state = load_weights_only(f, path, "a weights file")
            f.seek(0)
            h = hashlib.sha256()
            while chunk := f.read(1 << 22):
                h.update(chunk)
            digest = h.hexdigest()
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError) as exc:
        raise GenzooError(f"cannot read weights file {path}: {exc.strerror or exc}") from exc
    if not isinstance(state, dict):
        raise GenzooError(f"{path} is not a weights file (it holds a {type(state).__name__}, not a dict)")
    return state, digest


def inception_extractor(path: Path, feature_layer: str, sha256: str | None = None) -> FeatureExtractorInceptionV3:
    """torch-fidelity's ``inception-v3-compat`` extractor with the weights in ``path``, loaded safely.

    torch-fidelity only takes weights as something it passes to ``torch.load`` with a full
    unpickler; it gets an in-memory copy that genzoo serialised from the tensors it
    loaded weights-only, never the file. ``sha256``, when given, is the digest the
    caller named its cache after: a file changed since then is refused.
    """
    state, digest = load_weights(path)
    if sha256 is not None and digest != sha256:
        raise GenzooError(f"Inception weights {path} changed while genzoo was using them; run again")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise GenzooError(f"{path} does not hold Inception weights (not a state dict of tensors)")
    # Before any arithmetic on them: a meta tensor (a shape without data) passed every check to the NaN check
    # below, which was torch's traceback (nineteenth hostile pass, F2); a sparse one failed in load_state_dict.
    unusable = next(((k, problem) for k, v in state.items() if (problem := data_problem(v)) is not None), None)
    if unusable is not None:
        raise GenzooError(f"{path} does not hold Inception weights (tensor {unusable[0]} is {unusable[1]})")
    # NaN weights would give NaN features, and FID would fail later with a message about
    # the statistics; the fault is the weights file's, so it is named here. The 1008-way
    # classifier (``fc.*``) feeds only the logits layers, never the pooled features FID
    # uses, and the offline copy of the weights leaves it NaN (no softmax in its source).
    used = {k: v for k, v in state.items() if feature_layer.startswith("logits") or not k.startswith("fc.")}
    broken = next((k for k, v in used.items() if not all_finite(v)), None)
    if broken is not None:
        raise GenzooError(f"Inception weights {path} are damaged: tensor {broken} is not finite (NaN or infinite); "
                          f"replace the file (genzoo downloads {INCEPTION_FILE} when it is missing)")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        return FeatureExtractorInceptionV3("inception-v3-compat", [feature_layer],
                                           feature_extractor_weights_path=buffer)
    except RuntimeError as exc:  # load_state_dict(strict=True): missing, unexpected or misshapen tensors
        raise GenzooError(f"{path} does not hold Inception weights (its tensors do not match the layers "
                          "of torch-fidelity's inception-v3-compat)") from exc
