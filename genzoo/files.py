"""Reading and writing files safely: atomic writes, and reads that take only regular files of bounded size."""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO, Callable, Iterator

from genzoo.errors import GenzooError, one_line


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Read once at import: ``os.umask`` can only be read by setting it, which is racy later.
_UMASK = _umask()


#: ``atomic_write``'s temporary names: ``.`` + the file's name + ``.`` + mkstemp's 8 characters + ``.tmp``.
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one :func:`atomic_write` gives its temporary files (a killed write leaves one)."""
    return _TEMPORARY.fullmatch(name) is not None


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through ``write(f)`` into a temporary file beside ``path``, then rename.

    The temporary file is flushed and fsynced before ``os.replace``, so readers see
    either the old file or the complete new one, never a torn one. The new file gets
    the old one's permissions (or the umask's), not ``mkstemp``'s private 0600. An
    ``OSError`` (disk full, no permission) becomes a :class:`GenzooError` naming the
    file; the temporary file is removed and the previous file is left as it was.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise GenzooError(
            f"could not write {path}: {exc.strerror or exc}; the previous version, if any, is intact"
        ) from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX only; elsewhere the rename has to do)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


#: The largest JSON run file genzoo reads into memory (``config.json``, ``metrics.jsonl``,
#: ``eval.json``, ``compare.json``): real ones are kilobytes (a metric line is ~400 bytes, so
#: this is over 100,000 epochs); a bigger one is damaged or planted, and reading a sparse
#: 200 GB file whole would end in ``MemoryError``.
MAX_JSON_BYTES = 64 * 2**20


@contextmanager
def open_regular(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading, refusing anything that is not a regular file.

    Opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open file (no race
    between a check and the open): a FIFO would otherwise block the reader forever,
    and ``/dev/zero`` never end. ``FileNotFoundError`` is left to the caller, who
    knows what a missing file means. Readers of big files (checkpoints, weights)
    read from the open file rather than all of it into memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as exc:
        raise GenzooError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise GenzooError(f"{path} is not a regular file ({_kind(mode)}); genzoo reads only regular files "
                              "in a run folder")
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except OSError as exc:
        os.close(fd)
        raise GenzooError(f"cannot read {path}: {exc.strerror or exc}") from None
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_regular(path: Path, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of ``path`` (a regular file, see :func:`open_regular`) of at most ``limit`` bytes."""
    with open_regular(path) as f:
        try:
            data = f.read(limit + 1)  # never more: the size fstat gives may grow while reading
        except OSError as exc:
            raise GenzooError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise GenzooError(f"{path} is over {limit:,} bytes, more than genzoo reads from such a file; "
                          "it is damaged or not a genzoo file")
    return data


def parse_json(data: bytes) -> Any:
    """``data`` as UTF-8 JSON; ``ValueError`` saying why not, for every way it can fail.

    Besides bad syntax, Python's parser refuses integers of over 4300 digits with a
    plain ``ValueError`` and nesting deeper than the stack with ``RecursionError``.
    """
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("not usable JSON: nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"not usable JSON: {one_line(str(exc))}") from None


def read_json(path: Path) -> Any:
    """A JSON file's value (a regular file, UTF-8), or one line saying why not."""
    try:
        return parse_json(read_regular(path))
    except ValueError as exc:
        raise GenzooError(f"{path} is {exc}") from None
