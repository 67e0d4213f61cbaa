"""The child processes a finishing ``genzoo`` has left, as its exit watch (``genzoo.cli.ExitWatch``) names them.

Python's exit joins the non-daemon children ``multiprocessing`` started, and no other: a child started through
``subprocess`` or ``os.fork`` (a tracking client's background service) is left running, and if it inherited
genzoo's standard output or error it holds that pipe open, so ``genzoo train ... | tee log`` waited for it with no
word, though genzoo had exited (twenty-second hostile pass, plugins F2). Such children are found through Linux's
``/proc`` (elsewhere none is found, as before).
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")


@dataclass(frozen=True)
class Child:
    """A process this one started (or one of its descendants), by pid and the name the warning gives it."""

    pid: int
    name: str


def multiprocessing_children() -> list[Any]:
    """The ``multiprocessing`` children still running (none if no code imported that module)."""
    if "multiprocessing" not in sys.modules:
        return []
    import multiprocessing

    return list(multiprocessing.active_children())


def output_holders() -> list[Child]:
    """The descendants of this process, but ``multiprocessing``'s children (Python's exit joins or ends those),
    that hold for writing the pipe or socket that is this process's standard output or error: a reader of that
    pipe waits until each of them closes it. None when neither stream is a pipe or socket (a terminal, a file:
    a child holding those keeps no one waiting)."""
    ours = _pipes_of_standard_streams()
    if not ours:
        return []
    joined = {child.pid for child in multiprocessing_children()}
    return [child for child in _descendants() if child.pid not in joined and _holds_for_writing(child.pid, ours)]


def _pipes_of_standard_streams() -> set[tuple[int, int]]:
    """(device, inode) of standard output and error, where each is a pipe or socket."""
    pipes = set()
    for fd in (1, 2):
        try:
            status = os.fstat(fd)
        except OSError:  # closed
            continue
        if stat.S_ISFIFO(status.st_mode) or stat.S_ISSOCK(status.st_mode):
            pipes.add((status.st_dev, status.st_ino))
    return pipes


def _descendants() -> list[Child]:
    """Every running process whose chain of parents reaches this one (a zombie holds no file)."""
    parents: dict[int, list[Child]] = {}
    try:
        entries = [entry for entry in os.listdir(PROC) if entry.isdigit()]
    except OSError:  # no /proc: not Linux
        return []
    for entry in entries:
        try:
            text = (PROC / entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        name, _, rest = text.partition(" (")[2].rpartition(") ")
        fields = rest.split()
        if len(fields) > 1 and fields[0] != "Z" and fields[1].isdigit():
            parents.setdefault(int(fields[1]), []).append(Child(int(entry), name))
    found, todo = [], [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def _holds_for_writing(pid: int, pipes: set[tuple[int, int]]) -> bool:
    """Whether process ``pid`` has one of ``pipes`` open for writing."""
    try:
        fds = os.listdir(PROC / str(pid) / "fd")
    except OSError:  # ended, or not ours to read
        return False
    for fd in fds:
        try:
            status = os.stat(PROC / str(pid) / "fd" / fd)
            if (status.st_dev, status.st_ino) not in pipes:
                continue
            flags = next(line for line in (PROC / str(pid) / "fdinfo" / fd).read_text().splitlines()
                         if line.startswith("flags:"))
        except (OSError, StopIteration):  # closed or ended meanwhile
            continue
        if int(flags.split()[1], 8) & os.O_ACCMODE != os.O_RDONLY:
            return True
    return False
