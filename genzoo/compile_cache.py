"""Where ``--compile`` keeps the code torch generates, checked so that only this user can have put code there.

torch imports the Python files of inductor's code cache on a hit, loads the libraries it
builds there, and includes the precompiled headers it keeps in its own default folder in
every compiled kernel. Whoever can write any of them, or swap a folder or a link on the
way to them, runs code in the next compiled run.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path

from genzoo.data import cache_root
from genzoo.errors import GenzooError

#: Where inductor keeps compiled code, which it imports as Python on a cache hit.
COMPILE_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"

#: POSIX ACL entry tags (linux/posix_acl_xattr.h): the owner, a named user, the owning group, a named group,
#: the mask that bounds the three before it, and everyone else.
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_WRITE = 0o2
#: How many links a path may pass through (Linux's own limit), so that a loop ends.
_MAX_LINKS = 40


def private_compile_cache() -> Path:
    """Point inductor's code cache at a folder only this user can write, before anything compiles.

    torch's default, ``/tmp/torchinductor_<user>``, is made with ``exist_ok`` and no check:
    another user of the machine who made that folder first would run code in every
    compiled run. genzoo uses ``$GENZOO_CACHE/inductor`` (made 0700) unless
    ``TORCHINDUCTOR_CACHE_DIR`` names one (torch's own default, which importing torchvision
    writes into that variable, is not a choice). torch also keeps precompiled headers in its
    default folder whatever that variable says, so that folder is checked too. Each is
    refused in one line unless it and everything in it is this user's and closed to others'
    writes (mode bits and ACLs), on a path no one else can change: every folder and link on
    the way, as written and as resolved (torch builds its header folder from the path as
    written). Inductor gets the resolved path of its cache.
    """
    torchs = Path(os.path.abspath(_torch_default_cache()))
    given = os.environ.get(COMPILE_CACHE_ENV)
    if given is not None and Path(os.path.abspath(given)) == torchs:
        given = None
    where = f"{COMPILE_CACHE_ENV}={given}" if given else f"genzoo's ({cache_root() / 'inductor'})"
    remedy = f"point {COMPILE_CACHE_ENV} at a new folder only you can write, or unset it for genzoo's own"
    chosen = Path(given) if given else cache_root() / "inductor"
    path = _private_folder(chosen, f"inductor's code cache {where}", remedy)
    _private_folder(torchs, f"torch's own cache folder {torchs} (its precompiled headers, used whatever "
                    f"{COMPILE_CACHE_ENV} says)", "remove it, or set TMPDIR to a folder only you can write")
    os.environ[COMPILE_CACHE_ENV] = str(path)
    return path


def _torch_default_cache() -> str:
    """torch's default inductor folder (``$TMPDIR/torchinductor_<user>``), asked of torch where it says."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # another torch: the rule it has followed since inductor came
        import getpass
        import tempfile

        return os.path.join(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}")
    return str(default_cache_dir())


def _private_folder(given: Path, what: str, remedy: str) -> Path:
    """``given`` with its links resolved, made (0700) if missing; one line unless only this user can change it."""
    uid = os.getuid()
    try:
        path, problem = _way_to(given, uid)
        if problem is None and not os.path.lexists(path):
            path.mkdir(parents=True, mode=0o700)
            path, problem = _way_to(given, uid)  # as it is now that it exists
        if problem is None:
            problem = _not_private(path, uid)
    except OSError as exc:
        raise GenzooError(f"--compile: cannot make {what}: {exc.strerror or exc}") from exc
    if problem is not None:
        raise GenzooError(f"--compile: {what} {problem}; torch runs the code kept there, so another user could "
                          f"run code in this run: {remedy}")
    return path


def _way_to(given: Path, uid: int) -> tuple[Path, str | None]:
    """``given`` resolved component by component, and what on the way another user could change, if anything.

    Every folder passed through must be this user's or root's and closed to others' writes
    unless sticky (as /tmp is), and every link must be this user's or root's: a link of
    another user's, even in a sticky folder, is theirs to point elsewhere after the check.
    Where the path stops existing, this user makes the rest.
    """
    here = Path("/")
    todo = list(Path(os.path.abspath(given)).parts[1:])
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
            return Path(here, part, *todo), None
        if not stat.S_ISLNK(info.st_mode):
            here = step
            continue
        links += 1
        if links > _MAX_LINKS:
            return step, f"is reached through more than {_MAX_LINKS} links (a loop?)"
        if info.st_uid not in (uid, 0):
            return step, f"is reached through {step}, a link of another user's (uid {info.st_uid})"
        target = Path(os.readlink(step))
        if target.is_absolute():
            here = Path("/")
        todo = [*target.parts[1 if target.is_absolute() else 0:], *todo]
    return here, None


def _changeable_folder(folder: Path, uid: int) -> str | None:
    """What lets another user rename or replace what is in ``folder``, a folder on the way, if anything."""
    info = os.lstat(folder)
    if info.st_uid not in (uid, 0):
        return f"is in {folder}, which belongs to another user (uid {info.st_uid})"
    why = _open_to_others(folder, info)
    if why is not None and not info.st_mode & stat.S_ISVTX:
        return f"is in {folder}, which others can write ({why})"
    return None


def _not_private(path: Path, uid: int) -> str | None:
    """What makes the folder ``path`` or anything in it changeable by another user, if anything does."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return "is not a folder"
    if info.st_uid != uid:
        return f"belongs to another user (uid {info.st_uid})"
    why = _open_to_others(path, info) or _passed_on_to_others(path)
    if why is not None:
        return f"can be written by others ({why})"
    for folder, folders, files in os.walk(path):  # links are listed, never followed
        for name in (*folders, *files):
            entry = Path(folder) / name
            info = os.lstat(entry)
            if stat.S_ISLNK(info.st_mode):
                return f"holds a link, {entry}"
            if info.st_uid != uid:
                return f"holds {entry}, which belongs to another user (uid {info.st_uid})"
            why = _open_to_others(entry, info) or (_passed_on_to_others(entry) if stat.S_ISDIR(info.st_mode)
                                                   else None)
            if why is not None:
                return f"holds {entry}, which others can write ({why})"
    return None


def _open_to_others(path: Path, info: os.stat_result) -> str | None:
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


def _passed_on_to_others(folder: Path) -> str | None:
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
