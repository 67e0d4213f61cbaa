"""Where ``--compile`` keeps the code torch generates, checked so that only this user can have put code there.

torch imports the Python files of inductor's code cache on a hit, loads the libraries it
builds there, and includes the precompiled headers it keeps in its own default folder in
every compiled kernel; on CUDA, Triton loads the kernels and imports the launcher modules
kept in its own cache. Whoever can write any of them, or swap a folder or a link on the
way to them, runs code in the next compiled run.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from genzoo.data import cache_root
from genzoo.errors import GenzooError
from genzoo.files import open_to_others, passed_on_to_others, private_folder

#: Where inductor keeps compiled code, which it imports as Python on a cache hit.
COMPILE_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
#: Where Triton keeps the CUDA kernels it compiles (loaded on a hit) and the launcher modules it builds and imports.
#: Unset, Triton uses ``$TRITON_HOME/.triton/cache`` (``~/.triton/cache``), and torch sets it to a folder in
#: inductor's cache only when it first loads a kernel (``torch._inductor.runtime.cache_dir_utils.triton_cache_dir``).
TRITON_CACHE_ENV = "TRITON_CACHE_DIR"


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

    Triton's kernel cache (``TRITON_CACHE_DIR``, which torch uses whatever inductor's folder
    is) is checked the same way when the variable names a folder; else it is set to
    ``triton`` in inductor's checked cache, so Triton never reads ``$TRITON_HOME/.triton/cache``
    unchecked (fifteenth hostile pass, F15). Triton's dump and override folders
    are read only with its debugging switches (``TRITON_KERNEL_DUMP``, ``TRITON_KERNEL_OVERRIDE``).
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
    triton = os.environ.get(TRITON_CACHE_ENV)  # empty: Triton would take the current folder
    os.environ[TRITON_CACHE_ENV] = str(path / "triton" if not triton else _private_folder(
        Path(triton), f"Triton's kernel cache {TRITON_CACHE_ENV}={triton}",
        f"point {TRITON_CACHE_ENV} at a new folder only you can write, or unset it for one in inductor's cache"))
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
        path, problem = private_folder(given)
        if problem is None:  # everything in it too: torch imports the code kept there
            problem = _not_private(path, uid)
    except OSError as exc:
        raise GenzooError(f"--compile: cannot make {what}: {exc.strerror or exc}") from exc
    if problem is not None:
        raise GenzooError(f"--compile: {what} {problem}; torch runs the code kept there, so another user could "
                          f"run code in this run: {remedy}")
    return path


def _not_private(path: Path, uid: int) -> str | None:
    """What makes anything in the folder ``path`` (checked itself by :func:`private_folder`) changeable by another
    user, if anything does."""
    for folder, folders, files in os.walk(path):  # links are listed, never followed
        for name in (*folders, *files):
            entry = Path(folder) / name
            info = os.lstat(entry)
            if stat.S_ISLNK(info.st_mode):
                return f"holds a link, {entry}"
            if info.st_uid != uid:
                return f"holds {entry}, which belongs to another user (uid {info.st_uid})"
            why = open_to_others(entry, info) or (passed_on_to_others(entry) if stat.S_ISDIR(info.st_mode)
                                                   else None)
            if why is not None:
                return f"holds {entry}, which others can write ({why})"
    return None
