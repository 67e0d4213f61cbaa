"""Reading and writing files safely: atomic writes, reads that take only regular files of bounded size, and whether
another user could change a folder genzoo keeps files in."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import struct
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


def close_umask() -> None:
    """Add group and other write to the process umask (the command line's first step), so that nothing genzoo,
    torch or matplotlib makes is writable by others, whatever umask (000) the shell had."""
    global _UMASK
    _UMASK = os.umask(0o022) | 0o022
    os.umask(_UMASK)


#: ``atomic_write``'s temporary names: ``.`` + the file's name + ``.`` + mkstemp's 8 characters + ``.tmp``.
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one :func:`atomic_write` gives its temporary files (a killed write leaves one)."""
    return _TEMPORARY.fullmatch(name) is not None


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through ``write(f)`` into a temporary file beside ``path``, then rename.

    The temporary file is flushed and fsynced before ``os.replace``, so readers see
    either the old file or the complete new one, never a torn one. The new file gets
    the old one's permissions (or 0644 less the umask's), not ``mkstemp``'s private 0600. An
    ``OSError`` (disk full, no permission) becomes a :class:`GenzooError` naming the
    file, as does an error ``write`` raised while handling one, unless it is a
    :class:`GenzooError` of its own (:func:`_os_error_under`);
    the temporary file is removed and the previous file is left as it was.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644 & ~_UMASK  # never others' or the group's write, whatever the umask (000)
        # mkstemp takes ``LINK/..`` lexically: the folder the kernel finds, where os.replace puts the file.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=os.path.realpath(path.parent))
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except Exception as exc:
        cause = _os_error_under(exc)
        if cause is None:
            raise
        raise GenzooError(
            f"could not write {path}: {cause.strerror or cause}; the previous version, if any, is intact"
        ) from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def _os_error_under(exc: BaseException) -> OSError | None:
    """The ``OSError`` that ``exc`` is, or that it was raised while handling (its ``__context__`` chain).

    A full disk under ``torch.save`` reaches :func:`atomic_write` as torch's zip writer's ``RuntimeError``
    (``unexpected pos ...``), raised in its ``__exit__`` while the file's ``write`` failed with the disk's
    ``OSError``; it is that disk fault, and the user's line says what the disk said (eighteenth hostile pass,
    files F3). An error with no ``OSError`` under it (a writer's own bug) is left to propagate, and so is a
    :class:`GenzooError`: the writer's own line, which says what went wrong. ``gzip.BadGzipFile`` is an ``OSError``,
    and the line of an archive that is no gzip, raised while handling it, read "could not write" the file it unpacks
    to (twentieth hostile pass, files M2).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, GenzooError):
            return None
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__context__
    return None


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


def own_copy(path: Path) -> None:
    """Give ``path`` a file of its own when it shares its file with other names (hard links: a ``cp -al`` or rsync
    ``--link-dest`` snapshot of its folder): a copy written afresh and renamed over it (:func:`atomic_write`, the
    mode kept), so that appending to it changes no file outside its folder (eighteenth hostile pass, F5). A missing
    file is the caller's to make; a symbolic link, or a file that is not a regular one, is left to its ``open``,
    which refuses them."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise GenzooError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode) or info.st_nlink < 2:
        return
    with open_regular(path) as source:
        atomic_write(path, lambda f: shutil.copyfileobj(source, f))


def cannot_write(folder: Path, size: int = 0) -> str | None:
    """Why :func:`atomic_write` could not write a file of ``size`` bytes in ``folder`` (None when it can): a probe
    file made, filled, fsynced and removed there, as it makes its temporary, before work whose result goes there
    (mode bits, ACLs and a read-only mount alike: ``os.access`` is not the kernel's answer to the write itself). The
    bytes matter: a full disk takes an empty file and refuses its first block (eighteenth hostile pass, M4)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe-", suffix=".tmp", dir=os.path.realpath(folder))
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        _fill(fd, size)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        os.close(fd)
        os.unlink(probe)
    return None


def _fill(fd: int, size: int) -> None:
    """Write ``size`` bytes to ``fd`` and fsync them (a file system that allocates late says so at the fsync)."""
    block = bytes(min(size, 2**16))
    left = size
    while left:
        written = os.write(fd, block[:left])
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        left -= written
    if size:
        os.fsync(fd)


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
            # run files, caches and weights alike: "in a run folder" called a planted cache file a run's (M1)
            raise GenzooError(f"{path} is not a regular file ({_kind(mode)}); genzoo reads only regular files")
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


#: POSIX ACL entry tags (linux/posix_acl_xattr.h) genzoo reads: a named user, the owning group, a named group,
#: the mask that bounds those three, and everyone else (the owner's own entry never matters here).
_USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x02, 0x04, 0x08, 0x10, 0x20
_WRITE = 0o2
#: How many links a path may pass through (Linux's own limit), so that a loop ends.
_MAX_LINKS = 40


def others_can_change(folder: Path, owner_trusted: bool = False) -> str | None:
    """What would let another user rename, swap or replace what genzoo keeps in ``folder`` (made or not yet), if
    anything: the folder itself, or a folder or link on the way to it (the compile cache's rule, :func:`way_to`).

    ``owner_trusted``: a folder the user named, which may be a colleague's (a shared dataset):
    its owner counts as the user, everyone else does not. A path that cannot be looked at
    (through a file, or a folder this user may not enter) is left to the caller's own
    ``mkdir`` or ``open``, which fail on it with their own words.
    """
    uid = os.getuid()
    try:
        if owner_trusted and os.path.isdir(folder):
            uid = os.stat(folder).st_uid
        path, problem = way_to(folder, uid)
        if problem is None and os.path.isdir(path):
            problem = _changeable_folder(path, uid)
    except OSError:
        return None
    return problem


def others_can_change_under(root: Path, path: Path) -> str | None:
    """What would let another user change ``path``, a file or folder read under the data folder ``root``, if
    anything: the folders and links on the way (:func:`way_to`), and ``path`` itself, by owner, mode and ACLs.

    ``root`` passed :func:`others_can_change` already; its owner (a colleague's shared dataset)
    is trusted below it as there. What cannot be looked at is left to the reader's ``open``.
    """
    try:
        owner = os.stat(root).st_uid
        uid = owner if owner != 0 else os.getuid()
        real, problem = way_to(path, uid)
        if problem is not None or not os.path.lexists(real):
            return problem
        info = os.lstat(real)
        if stat.S_ISDIR(info.st_mode):
            return _changeable_folder(real, uid)
        if info.st_uid not in (uid, 0):
            return f"belongs to another user (uid {info.st_uid})"
        why = open_to_others(real, info)
    except OSError:
        return None
    return None if why is None else f"can be written by others ({why})"


def way_to(given: Path, uid: int) -> tuple[Path, str | None]:
    """``given`` resolved component by component, and what on the way another user could change, if anything.

    Every folder passed through must be this user's or root's and closed to others' writes
    unless sticky (as /tmp is), and every link must be this user's or root's: a link of
    another user's, even in a sticky folder, is theirs to point elsewhere after the check.
    Where the path stops existing, this user makes the rest. A ``..`` after a link goes to
    the parent of the link's target, as the kernel goes, not back over the link's name.
    """
    here = Path("/")
    given = Path(given)  # not normalised: the kernel goes to ``..`` after following the link before it
    todo = list((given if given.is_absolute() else Path(os.getcwd(), given)).parts[1:])
    links = 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            here = here.parent
            continue
        problem = _changeable_folder(here, uid)
        if problem is not None:
            return here, problem
        step = here / part
        try:
            info = os.lstat(step)
        except FileNotFoundError:
            if ".." not in todo:
                return Path(here, part, *todo), None
            todo = list(Path(os.path.normpath(Path(part, *todo))).parts)  # made by this user: no links in it
            continue
        if not stat.S_ISLNK(info.st_mode):
            here = step
            continue
        links += 1
        if links > _MAX_LINKS:
            return step, f"is reached through more than {_MAX_LINKS} links (a loop?)"
        if info.st_uid not in (uid, os.getuid(), 0):
            return step, f"is reached through {step}, a link of another user's (uid {info.st_uid})"
        target = Path(os.readlink(step))
        if target.is_absolute():
            here = Path("/")
        todo = [*target.parts[1 if target.is_absolute() else 0:], *todo]
    return here, None


def plain_path(given: str | os.PathLike[str]) -> Path:
    """``given`` without its ``..``: each taken where the kernel takes it once the folders before it exist, so that
    the checks of an output path (new, empty, nobody else's) look at what is written in the end.

    ``RUN/new/..`` is ``RUN``: checked as given, the missing ``new`` made it look new, ``mkdir(parents=True)`` made
    ``new``, and the run was written over the finished ``RUN`` (nineteenth hostile pass, files F5). Where no link
    comes before a ``..`` it is taken lexically and the path stays as typed, relative or not; after a link it is the
    parent of the link's target, as for the kernel, and the path is the real, absolute one. A path without ``..``
    is returned as it is.
    """
    path = Path(given)
    if ".." not in path.parts:
        return path
    last = len(path.parts) - path.parts[::-1].index("..")  # the parts up to the last ``..``, then the rest
    head = Path(*path.parts[:last])
    real, lexical = os.path.realpath(head), os.path.normpath(head)
    return Path(lexical if os.path.abspath(lexical) == real else real, *path.parts[last:])


def missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first: what making it makes."""
    return [p for p in (path, *path.parents) if not os.path.lexists(p)]


def remove_made(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first), made by a command that failed: one something else wrote into stays,
    and so do those above it."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def private_folder(given: Path, mode: int = 0o700) -> tuple[Path, str | None]:
    """``given`` with its links resolved, made (each missing folder ``mode``) if missing, and what would let
    another user change what genzoo keeps in it, if anything: a folder or link on the way (:func:`way_to`), its
    owner, its mode bits and ACLs, and a default ACL passing write on to what is made in it. Folders it made for
    a folder it refuses are removed. A cache folder made with a plain ``mkdir`` under a parent's default ACL came
    out writable by another user, who swapped a sampler fit in (twelfth hostile pass, F2).
    """
    uid = os.getuid()
    path, problem = way_to(given, uid)
    made: list[Path] = []
    if problem is None and not os.path.lexists(path):
        made = missing_folders(path)
        for folder in reversed(made):
            os.mkdir(folder, mode)  # parents too: mkdir(parents=True) makes them as the umask says
        path, problem = way_to(given, uid)  # as it is now that it exists
    if problem is None:
        info = os.lstat(path)
        why = open_to_others(path, info) or passed_on_to_others(path)
        problem = ("is not a folder" if not stat.S_ISDIR(info.st_mode)
                   else f"belongs to another user (uid {info.st_uid})" if info.st_uid != uid
                   else None if why is None else f"can be written by others ({why})")
    if problem is not None:
        remove_made(made)
    return path, problem


def _changeable_folder(folder: Path, uid: int) -> str | None:
    """What lets another user rename or replace what is in ``folder``, a folder on the way, if anything.

    ``uid`` (a colleague who owns a named data folder), this user and root are trusted: the user's own
    folder and link on the way to a colleague's dataset are theirs (twelfth hostile pass, F7).
    """
    info = os.lstat(folder)
    if info.st_uid not in (uid, os.getuid(), 0):
        return f"is in {folder}, which belongs to another user (uid {info.st_uid})"
    why = open_to_others(folder, info)
    if why is not None and not info.st_mode & stat.S_ISVTX:
        return f"is in {folder}, which others can write ({why})"
    return None


def open_to_others(path: Path, info: os.stat_result) -> str | None:
    """Why users other than this one may write ``path``, if they may: its mode bits, or its access ACL.

    With an ACL, the group bits of the mode are the ACL's mask, and the users and groups it
    names hold their own rights under that mask: a file that shows ``rw-rw----`` may be
    writable by a colleague the ACL names.
    """
    mode = f"mode {stat.S_IMODE(info.st_mode):o}"
    if info.st_mode & 0o002:
        return mode
    entries = _acl(path, "access")
    if not entries:
        return mode if info.st_mode & 0o020 and _shared_group(info.st_gid) else None
    mask = next((perm for tag, perm, _ in entries if tag == _MASK), 0o7)
    for tag, perm, who in entries:
        if not perm & mask & _WRITE:
            continue
        if tag == _USER and who != os.getuid():
            return f"an ACL lets uid {who} write it"
        if tag == _GROUP and _shared_group(who):
            return f"an ACL lets gid {who} write it"
        if tag == _GROUP_OBJ and _shared_group(info.st_gid):
            return mode
    return None


def passed_on_to_others(folder: Path) -> str | None:
    """Why what is made in ``folder`` would be writable by others, if it would: its default ACL, which new
    files and folders inherit (torch makes them while it compiles, after this check)."""
    entries = _acl(folder, "default")
    mask = next((perm for tag, perm, _ in entries if tag == _MASK), 0o7)
    for tag, perm, who in entries:
        if (tag == _OTHER and perm & _WRITE or tag == _USER and who != os.getuid() and perm & mask & _WRITE
                or tag in (_GROUP, _GROUP_OBJ) and perm & mask & _WRITE):
            return "its default ACL lets others write what is made in it"
    return None


def _acl(path: Path, kind: str) -> list[tuple[int, int, int]]:
    """The entries (tag, permissions, id) of ``path``'s POSIX ACL ``kind`` ("access" or "default"); none where it
    has none or its file system keeps none. One that cannot be read is taken as letting everyone write."""
    try:
        raw = os.getxattr(path, f"system.posix_acl_{kind}", follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise
    except AttributeError:  # no extended attributes on this system (not Linux)
        return []
    if len(raw) < 4 or (len(raw) - 4) % 8:
        return [(_OTHER, 0o7, 0)]
    return [(tag, perm, who) for tag, perm, who in struct.iter_unpack("<HHI", raw[4:])]


def _shared_group(gid: int) -> bool:
    """Whether group ``gid`` may hold users other than this one: it is not this user's own group, or it names
    other members, or it is another account's primary group (which the group file does not list as members: a
    ``users`` group every account starts in); an unknown group is taken as shared."""
    import grp
    import pwd

    try:
        group, me = grp.getgrgid(gid), pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return True
    if gid != os.getgid() or set(group.gr_mem) - {me}:
        return True
    return any(account.pw_gid == gid and account.pw_name != me for account in pwd.getpwall())
