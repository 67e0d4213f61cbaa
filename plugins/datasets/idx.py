"""Checks of IDX files (the MNIST format) before torchvision parses them.

torchvision reads a truncated or foreign file with a numpy or assertion traceback;
these checks turn that into one sentence naming the file and what is wrong.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Callable

import torch

from genzoo import GenzooError

UBYTE = 0x08


#: What a path that is not a regular file is, for the message that refuses it.
KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def require_regular_file(path: Path) -> None:
    """Refuse a data path that is not a regular file (after symbolic links), naming what it is.

    Opening a FIFO blocks until someone writes to it, and a device such as ``/dev/zero``
    never ends: either would hang a run with no output, so neither is ever opened.
    """
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise GenzooError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise GenzooError(f"{path} is not a regular file ({_kind(mode)}); replace it with the IDX file")


def not_regular(path: Path) -> str | None:
    """What stands at ``path`` in words (``a FIFO``) when it is there but no regular file, after links; None when
    nothing is there or a regular file is. ``genzoo data check`` called a FIFO "missing" where ``train`` refuses it
    as not a regular file (twentieth hostile pass, files M3): both say what it is now."""
    if not os.path.lexists(path) or path.is_file():
        return None
    try:
        return _kind(path.stat().st_mode)
    except FileNotFoundError:
        return "a link to nothing"
    except OSError as exc:  # a loop of links, a folder that cannot be looked into
        return f"not readable: {exc.strerror or exc}"


def _kind(mode: int) -> str:
    return next((name for test, name in KINDS if test(mode)), "not a file")


def read_header(read: Callable[[int], bytes]) -> tuple[bytes, int]:
    """Read an IDX header through ``read`` (a stream's): its bytes and the file size it declares (header included).

    The magic number's last byte is the number of dimensions, each a 4-byte size. A
    header cut short declares only itself: what follows it is not known to belong.
    """
    header = read(4)
    ndim = header[3] if len(header) == 4 else 0
    header += read(4 * ndim)
    if len(header) < 4 + 4 * ndim:
        return header, len(header)
    return header, len(header) + math.prod(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def check_idx(path: Path, ndim: int, count: int | None = None, item_shape: tuple[int, ...] | None = None,
              dataset: str = "the dataset") -> int:
    """Check the header and size of an unsigned-byte IDX file; return its item count.

    ``item_shape`` is the shape each item must have (``(28, 28)`` for MNIST's images):
    a file of other images would pass every other check and fail only inside a model.
    """
    require_regular_file(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            header = f.read(4 + 4 * ndim)
    except OSError as exc:
        raise GenzooError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise GenzooError(f"{path} is empty; delete it so it can be downloaded again")
    magic = int.from_bytes(header[:4], "big") if len(header) >= 4 else None
    expected_magic = (UBYTE << 8) | ndim
    if magic != expected_magic:
        found = "a too short header" if magic is None else f"magic number 0x{magic:08x}"
        raise GenzooError(
            f"{path} is not a {ndim}-d unsigned-byte IDX file ({found}, expected 0x{expected_magic:08x})"
        )
    if len(header) < 4 + 4 * ndim:
        raise GenzooError(f"{path} is truncated inside its header")
    dims = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + math.prod(dims)
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise GenzooError(f"{path} is {state}: {size} bytes, expected {expected} for shape {tuple(dims)}")
    if count is not None and dims[0] != count:
        raise GenzooError(f"{path} holds {dims[0]} items, expected {count}")
    if item_shape is not None and tuple(dims[1:]) != tuple(item_shape):
        raise GenzooError(f"{path} holds images of shape {tuple(dims[1:])}, but {dataset}'s are {tuple(item_shape)}")
    return dims[0]


def read_idx(path: Path, ndim: int, count: int | None = None) -> torch.Tensor:
    """The unsigned bytes of an IDX file that :func:`check_idx` passed, as a tensor of its declared shape;
    its first ``count`` items only, when given (the rest of the file is not read).

    What torchvision's ``read_image_file`` returns, read here because importing
    torchvision imports torch's compiler, over a second of every run's start.
    """
    with open(path, "rb") as f:
        header = f.read(4 + 4 * ndim)
        shape = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        if count is not None:
            if len(header) < 4 + 4 * ndim or count > shape[0]:  # replaced since check_idx passed it
                raise GenzooError(f"{path} changed while it was read: it no longer holds {count} items")
            shape[0] = count
        data = bytearray(f.read() if count is None else f.read(math.prod(shape)))
    if len(data) != math.prod(shape):
        raise GenzooError(f"{path} changed while it was read: {len(data)} bytes of items, not {math.prod(shape)}")
    if not data:  # a file of no items: frombuffer refuses an empty buffer
        return torch.empty(shape, dtype=torch.uint8)
    return torch.frombuffer(data, dtype=torch.uint8).view(shape)
