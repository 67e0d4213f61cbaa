"""Run folders: ``config.json``, ``metrics.jsonl``, the checkpoint and the pictures."""

from __future__ import annotations

import errno
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from genzoo.errors import GenzooError
from genzoo.files import atomic_write, atomic_write_json

CONFIG = "config.json"
METRICS = "metrics.jsonl"


def new_run_dir(model: str, out: str | os.PathLike[str] | None = None, base: Path = Path("runs")) -> Path:
    """Create a fresh run folder; never reuse one that already holds files.

    With ``out`` the user names the folder (it may exist only if empty); otherwise it
    is ``runs/<model>-<timestamp>``, with a numeric suffix if that name is taken.
    """
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise GenzooError(f"{path} already exists and is not an empty folder; "
                              "choose another --out (genzoo never overwrites a run)")
        _make(path, exist_ok=True)
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in range(1000):
        path = base / (f"{model}-{stamp}" + (f"-{suffix}" if suffix else ""))
        try:
            _make(path, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise GenzooError(f"could not find a free run folder name under {base}")


def _make(path: Path, exist_ok: bool) -> None:
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except OSError as exc:
        broken = _broken_link(path)  # mkdir says only "File exists" or "Too many levels ..."
        if broken:
            raise GenzooError(f"cannot create run folder {path}: {broken}") from None
        if isinstance(exc, FileExistsError):
            raise
        raise GenzooError(f"cannot create run folder {path}: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK):
        raise GenzooError(f"run folder {path} is not writable")


def _broken_link(path: Path) -> str | None:
    """Say which of ``path`` and its parents is a symbolic link that leads nowhere, if one is."""
    for part in reversed((path, *path.parents)):
        if not part.is_symlink():
            continue
        try:
            os.stat(part)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return f"{part} is a symbolic link loop"
            return f"{part} is a symbolic link to {os.readlink(part)}, which does not exist"
    return None


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    atomic_write_json(run_dir / CONFIG, config)


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.json`` as written, after :mod:`genzoo.runfiles` has checked every field."""
    from genzoo.runfiles import read_run

    return read_run(run_dir).raw


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one JSON line, written whole and fsynced; a failed write is cut back off.

    A short write (disk full) leaves the file as it was, byte for byte; only a crash
    in the middle of the ``write`` can tear the last line, which readers ignore.

    ``O_NOFOLLOW``: a ``metrics.jsonl`` that is a symbolic link (say, in a run folder
    from someone else) is refused rather than followed to a file outside the run.
    """
    path = Path(run_dir) / METRICS
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise GenzooError(f"cannot append to {path}: {exc.strerror or exc}") from exc
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(28, "short write (disk full?)")
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # a half line now would sit mid-file after the next append
            raise
    except OSError as exc:
        raise GenzooError(f"could not append to {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every metric line, checked by :func:`genzoo.runfiles.read_records` (a torn last line is ignored)."""
    from genzoo.runfiles import read_records

    return read_records(run_dir)


def keep_metrics_through(run_dir: Path, epoch: int) -> None:
    """On resume: keep the records of epochs up to ``epoch``, drop later or torn ones.

    A record written after the checkpoint the run resumes from is dropped: that epoch
    is trained again and its line written again, so no epoch is ever listed twice.
    The file is rewritten (atomically) only when that changes it.
    """
    from genzoo.runfiles import read_regular

    path = Path(run_dir) / METRICS
    records = [r for r in read_metrics(run_dir) if r["epoch"] <= epoch]
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("utf-8")
    try:
        if read_regular(path) == text:
            return
    except FileNotFoundError:
        if not records:
            return
    atomic_write(path, lambda f: f.write(text))


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` while a process trains in it.

    Two processes resuming the same run would interleave their metrics and overwrite
    each other's checkpoints; the second one is refused instead. The lock is
    ``flock`` on the folder itself (no lock file to leave behind) and dies with its
    process, so a run killed with SIGKILL can be resumed at once.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking, as before
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GenzooError(f"{run_dir} is in use by another genzoo process") from None
        yield
    finally:
        os.close(fd)
