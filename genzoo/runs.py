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
from genzoo.files import atomic_write_json, atomic_write_text

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
    path = Path(run_dir) / CONFIG
    try:
        config = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise GenzooError(f"{run_dir} is not a genzoo run folder (no {CONFIG})") from None
    except OSError as exc:
        raise GenzooError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenzooError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise GenzooError(f"{path} is not a genzoo run configuration (not a JSON object)")
    return config


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one JSON line, written whole and fsynced, so a crash cannot tear it.

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
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(28, "short write (disk full?)")
        os.fsync(fd)
    except OSError as exc:
        raise GenzooError(f"could not append to {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete line of ``metrics.jsonl`` (a torn last line is ignored)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def keep_metrics_through(run_dir: Path, epoch: int) -> None:
    """On resume: keep the records of epochs up to ``epoch``, drop later or torn ones.

    A record written after the checkpoint the run resumes from is dropped: that epoch
    is trained again and its line written again, so no epoch is ever listed twice.
    """
    records = [r for r in read_metrics(run_dir) if r.get("epoch", 0) <= epoch]
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    atomic_write_text(Path(run_dir) / METRICS, text)


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
