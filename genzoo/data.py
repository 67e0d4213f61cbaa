"""The Dataset interface, in-memory splits, and where data lives on disk."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
import time
import urllib.request
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Protocol

import torch

from genzoo.checks import printable
from genzoo.errors import GenzooError
from genzoo.files import others_can_change, others_can_change_under, plain_path

DATA_ENV = "GENZOO_DATA"
DEFAULT_DATA_ROOT = Path("data")
#: A base URL that replaces every upstream download location (an internal mirror, a test server).
MIRROR_ENV = "GENZOO_MIRROR"


CACHE_ENV = "GENZOO_CACHE"


def cache_root() -> Path:
    """genzoo's per-user cache: ``$GENZOO_CACHE``, else ``$XDG_CACHE_HOME/genzoo``, else ``~/.cache/genzoo``.

    Without its ``..`` (:func:`~genzoo.files.plain_path`), as every ``--out``: ``RUN/new/..`` is ``RUN``. Taken as
    given, the cache folder was made where the kernel resolves it (``RUN/fid``), then written through the path as
    typed, which the kernel refuses while ``new`` is missing: the cache was refused and ``RUN/fid`` left behind
    (twentieth hostile pass, files M1).
    """
    if os.environ.get(CACHE_ENV):
        return plain_path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME")
    return plain_path((Path(base) if base else Path.home() / ".cache") / "genzoo")


def user_data_dir() -> Path:
    """Downloads land in ``<cache>/data`` when no folder is named: one per user, whatever the working directory."""
    return cache_root() / "data"


def data_roots(given: str | os.PathLike[str] | None = None) -> list[tuple[str, Path | None]]:
    """Every place a data folder can come from, in precedence order; ``None`` where unset or absent."""
    env = os.environ.get(DATA_ENV)
    return [("--data-root", Path(given) if given else None),
            (f"${DATA_ENV}", Path(env) if env else None),
            (f"./{DEFAULT_DATA_ROOT}", DEFAULT_DATA_ROOT if DEFAULT_DATA_ROOT.is_dir() else None),
            ("user cache", user_data_dir())]


def resolve_data_root(given: str | os.PathLike[str] | None = None, recorded_in: Path | None = None) -> Path:
    """``--data-root`` wins over ``$GENZOO_DATA``, over an existing ``./data``, over the user cache.

    One that another user could change (theirs, or writable by others without the sticky bit,
    or reached through such a folder) is refused: a ``./data`` planted in a shared folder would
    otherwise be trained and scored on, unchecked. A folder the user names may be a
    colleague's (a shared dataset): its owner is trusted, others' writes are not. One named in
    a file, ``recorded_in`` (a run's ``config.json``, which another user may have written), is
    not the user's choice: its owner is not trusted.
    """
    source, path = next((source, path) for source, path in data_roots(given) if path is not None)
    if source == "--data-root" and recorded_in is not None:
        source = f"named in {recorded_in}"
    if path.exists() and not path.is_dir():  # (/dev/null): each of its files would be "missing", not the root
        raise GenzooError(f"data folder {printable(str(path))} ({source}) is not a folder; name a folder with "
                          f"--data-root or ${DATA_ENV}")
    problem = others_can_change(path, owner_trusted=source in ("--data-root", f"${DATA_ENV}"))
    if problem is not None:
        remedy = f"remove {path}" if recorded_in is None else "name it with --data-root if you trust it"
        raise GenzooError(f"data folder {path} ({source}) {problem}, so another user could change the data genzoo "
                          "trains and scores on; name a folder only you can write with --data-root or "
                          f"${DATA_ENV}, or {remedy}")
    return path


def mirror_url() -> str | None:
    """``$GENZOO_MIRROR`` with one trailing slash, or ``None`` for the upstream locations."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return mirror.rstrip("/") + "/" if mirror else None


#: Seconds a download may wait for a connection or for its next bytes before it gives up:
#: long beside any working server's pauses, short beside a user waiting on a dead one.
DOWNLOAD_TIMEOUT = 30.0


@contextmanager
def download_timeout() -> Iterator[None]:
    """Every socket opened inside waits at most :data:`DOWNLOAD_TIMEOUT` seconds of silence, then times out.

    A server that accepts the connection and never answers would hang a download for
    ever. :func:`download_file` runs inside it, and so can a third-party dataset's own
    downloader (torchvision's ``download_url`` takes no timeout): sockets opened with the
    default timeout get this one for as long as the download runs. A timeout (raw, or
    inside urllib's ``URLError``) comes out as one ``TimeoutError`` that says so.
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        yield
    except OSError as exc:
        if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
            raise TimeoutError(f"the download timed out: the server sent nothing for {DOWNLOAD_TIMEOUT:g} s") \
                from None
        raise
    finally:
        socket.setdefaulttimeout(previous)


#: Seconds a download may run before its average rate is checked: connecting, redirects and
#: a slow start are allowed for, a trickle is not.
DOWNLOAD_GRACE = 60.0
#: Bytes per second a download must average once past :data:`DOWNLOAD_GRACE`: a slow but
#: working link passes (10 MB in under 17 minutes), a server sending a byte every few seconds does not.
DOWNLOAD_MIN_RATE = 10_000.0
#: Seconds a server may take to connect and send its complete response headers: the rate
#: check starts only with the body, and a server trickling its headers is never silent.
DOWNLOAD_HEADER_DEADLINE = 60.0


@contextmanager
def _header_deadline() -> Iterator[None]:
    """Give up the connection and header phase as a whole after :data:`DOWNLOAD_HEADER_DEADLINE` seconds.

    A timer signal interrupts the blocking reads, which a socket timeout (per read) cannot
    bound; signals reach the main thread only, so elsewhere only the silence timeout holds.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise GenzooError(f"the server sent no complete response headers within {DOWNLOAD_HEADER_DEADLINE:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, DOWNLOAD_HEADER_DEADLINE)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def download_file(url: str, target: Path, max_bytes: int, sha256_prefix: str | None = None) -> None:
    """Download ``url`` to ``target``, bounded in time and size; ``target`` appears only when complete and verified.

    torchvision's and torch.hub's downloaders can be bounded only by the silence timeout,
    so a trickling server hung them and an endless one filled the disk. Here a declared
    ``Content-Length`` over ``max_bytes`` is refused before reading, reading stops at
    ``max_bytes``, a download averaging under :data:`DOWNLOAD_MIN_RATE` after
    :data:`DOWNLOAD_GRACE` seconds is given up, and a short read or a sha256 that does not
    start with ``sha256_prefix`` is refused. The bytes go to a hidden file beside
    ``target``, removed on any failure (also Ctrl-C), then renamed. Failures raise one
    ``GenzooError`` (a timeout: ``TimeoutError``) that says why.
    """
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "genzoo"})
        with download_timeout():
            with _header_deadline():
                response = urllib.request.urlopen(request)
            with response, open(partial, "wb") as f:
                declared = response.headers.get("Content-Length", "")
                length = int(declared) if declared.strip().isdigit() else None
                if length is not None and length > max_bytes:
                    raise GenzooError(f"the server declares {length:,} bytes, more than the {max_bytes:,} this file "
                                      "can be; nothing was read")
                digest, got, start = hashlib.sha256(), 0, time.monotonic()
                while chunk := response.read1(min(1 << 16, max_bytes + 1 - got)):
                    got += len(chunk)
                    if got > max_bytes:
                        raise GenzooError(f"the server sent more than the {max_bytes:,} bytes this file can be; "
                                          "it was cut off and not kept")
                    f.write(chunk)
                    digest.update(chunk)
                    elapsed = time.monotonic() - start
                    if elapsed > DOWNLOAD_GRACE and got < DOWNLOAD_MIN_RATE * elapsed:
                        raise GenzooError(f"too slow: {got:,} bytes in {elapsed:.0f} s, under the "
                                          f"{DOWNLOAD_MIN_RATE:,.0f} bytes/s a download must average after "
                                          f"{DOWNLOAD_GRACE:g} s")
        if length is not None and got != length:
            raise GenzooError(f"the connection closed after {got:,} of the {length:,} bytes the server declared")
        if sha256_prefix is not None and not digest.hexdigest().startswith(sha256_prefix):
            raise GenzooError(f"failed the checksum (sha256 {digest.hexdigest()[:12]}..., expected "
                              f"{sha256_prefix}...); it was not kept")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class FileCheck:
    """One file of a dataset on disk as ``genzoo data check`` reports it.

    ``ok`` is True when a checksum matched, False when one did not, None when the
    file is missing or nothing published can vouch for it.
    """

    path: Path
    ok: bool | None
    detail: str


class Split(Protocol):
    """One split of a dataset, as the trainer consumes it.

    :class:`TensorSplit` keeps it in memory; a dataset too big for memory can return
    any object with these methods that streams batches from disk instead.
    """

    def __len__(self) -> int: ...

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        skip: int = 0,
    ) -> Iterator[torch.Tensor]: ...

    def to(self, device: torch.device | str) -> "Split": ...

    def take(self, n: int) -> "Split": ...


class TensorSplit:
    """A split held as one float tensor in [0, 1] on the training device.

    Batches are slices of a shuffled index, so an epoch costs one ``randperm`` and
    one gather per batch instead of a per-image decode pipeline. ``labels`` are
    optional and never read by training or the metrics (only by pictures that colour codes by
    label, ``genzoo latent``); they travel with the images
    through :meth:`take` and :meth:`to`, so they must have one row per image. Images that
    require grad (made from a tensor being trained) are kept detached: they are data, and
    each training step would otherwise add gradients into the whole split.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        one_per_image = isinstance(labels, torch.Tensor) and labels.dim() > 0 and labels.shape[0] == images.shape[0]
        if labels is not None and not one_per_image:
            got = (f"labels of shape {tuple(labels.shape)}" if isinstance(labels, torch.Tensor)
                   else f"labels of type {type(labels).__name__}")
            raise GenzooError(f"TensorSplit got {images.shape[0]} images but {got}; labels must be None "
                              "or a tensor with one row per image")
        self.images = images.detach() if isinstance(images, torch.Tensor) else images
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        skip: int = 0,
    ) -> Iterator[torch.Tensor]:
        """Yield batches in order, or in a random order drawn from ``generator``.

        ``skip`` drops the first batches of that order, so a run resumed mid-epoch
        sees exactly the batches it had not yet seen. Each batch is a copy, never a view
        of the split: a model that edits its input in place (``x.round_()``) must not
        change the images every later pass and model reads (tenth hostile pass, F1).
        """
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=generator).to(self.images.device)
            for start in range(skip * batch_size, n, batch_size):
                yield self.images[order[start : start + batch_size]]
        else:
            for start in range(skip * batch_size, n, batch_size):
                yield self.images[start : start + batch_size].clone()

    def to(self, device: torch.device | str) -> "TensorSplit":
        labels = None if self.labels is None else self.labels.to(device)
        return TensorSplit(self.images.to(device), labels)

    def take(self, n: int) -> "TensorSplit":
        """The first ``n`` images: small, fixed subsets for tests and quick runs."""
        labels = None if self.labels is None else self.labels[:n]
        return TensorSplit(self.images[:n], labels)


class Dataset(ABC):
    """A named dataset plugin: its sample shape and a loader for each split."""

    name: ClassVar[str]
    sample_shape: ClassVar[tuple[int, ...]]
    description: ClassVar[str] = ""

    def __init__(self, root: Path, download: bool = True) -> None:
        self.root = Path(root)
        self.download = download

    @abstractmethod
    def load(self, split: str) -> Split:
        """Load ``"train"`` or ``"test"``; raise :class:`genzoo.GenzooError` when unavailable."""

    def fetch(self) -> None:
        """Download every missing file, checksums verified (``genzoo data download``)."""
        raise GenzooError(f"dataset {self.name} has no download; put its files under {self.root}")

    def check(self) -> list[FileCheck]:
        """Each file this dataset reads, present or not, and whether its checksum matches (``genzoo data check``)."""
        return []

    def refuse_changeable(self, path: Path) -> None:
        """Refuse ``path``, a file or folder under :attr:`root` that :meth:`load` reads, if another user could
        change it: the root's rule (:func:`resolve_data_root`) applied to each file read, not the root alone."""
        problem = others_can_change_under(self.root, path)
        if problem is not None:
            raise GenzooError(f"data file {path} {problem}, so another user could change the data genzoo trains "
                              f"and scores on; make it and the folders above it writable by you alone")
