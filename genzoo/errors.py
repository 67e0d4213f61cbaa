"""The one exception type the CLI turns into a one-line message instead of a traceback."""

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class GenzooError(Exception):
    """A problem the user can fix: bad input, missing data, a faulty plugin."""


class RefusedOptions(GenzooError):
    """A config refused the options it was built from: whoever gave them is to blame (a sampler's come from the
    model's ``sampler_options``, not the user)."""


def one_line(message: str) -> str:
    """Join a multi-line message (some come from torch or plugins) into one line, :func:`escaped`."""
    return escaped(" ".join(line.strip() for line in message.splitlines() if line.strip()))


def escaped(text: str) -> str:
    """``text`` with each character that is not printable escaped (``\\x1b``), as :func:`genzoo.checks.printable`
    escapes a name: the one place every error and warning line passes, so that a path given (a run folder
    named with an OSC sequence set the terminal's title; seventeenth hostile pass, M2), a plugin's or torch's
    text, never reaches the terminal as a control sequence, nor loses characters to one (click strips CSI
    sequences when stderr is no terminal: folder ``x\\x1b[31my`` was named ``xy``)."""
    return "".join(ascii(char)[1:-1] if _CONTROLS.match(char) else char for char in text)


#: What :func:`escaped` escapes: control characters (C0, DEL, C1), lone surrogates and the bidirectional overrides
#: and isolates that reorder what a terminal shows; no-break and thin spaces, joiners and the soft hyphen of
#: real names stay as they are.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def first_line(text: str) -> str:
    """The first non-blank line of a message (torch's errors often add pages of detail below it)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


#: What an allocator's failure says: torch's CPU allocator, CUDA's, and Python's own MemoryError.
_OUT_OF_MEMORY = ("can't allocate memory", "out of memory")


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure to allocate memory (Python's ``MemoryError``, torch's ``OutOfMemoryError`` or
    its CPU allocator's ``RuntimeError``), not a fault of the file or code being run."""
    if isinstance(exc, MemoryError):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    try:
        text = str(exc)
    except Exception:  # a plugin's exception whose str() raises
        return False
    return any(words in text for words in _OUT_OF_MEMORY)


def memory_line(exc: BaseException) -> str:
    """The line for an allocator's failure: which allocation, in torch's words, when it says."""
    said = first_line(describe(exc))
    found = re.search(r"(you tried to allocate \d+ bytes|Tried to allocate [\d.]+ \w+)", said)
    return f"out of memory{f' ({found.group(1)})' if found else ''}: this machine (or this process's limit) has not " \
           "enough free memory for it; what genzoo had written before stays as it was"


def warn(message: str) -> None:
    """One ``genzoo: warning:`` line on stderr, even when the message (a plugin's, torch's) spans several."""
    print(f"genzoo: warning: {one_line(message)}", file=sys.stderr)


def says_aborted() -> bool:
    """Whether a stop signal that ends this process before it saved anything prints ``Aborted.``.

    A launch's ranks are stopped together (by the user, or by the launcher when one rank
    failed): local rank 0 speaks for each machine, the others end without a word.
    """
    return os.environ.get("LOCAL_RANK", "0") == "0"


#: What plugin code may raise that must not end genzoo: every exception (a stray ``sys.exit()`` in a plugin
#: would otherwise end every command silently; an ``asyncio.CancelledError`` from a tracking client's upload, or a
#: library's own ``BaseException``, ended it in a traceback: nineteenth hostile pass on plugins, F8) but the user's
#: Ctrl-C and genzoo's stop signals (``KeyboardInterrupt``: SIGTERM is raised as one), which keep their meaning.
#: Python cannot catch all but one type, so each ``except PLUGIN_FAULTS`` has an ``except KeyboardInterrupt:
#: raise`` (alone, or with genzoo's own errors) before it; a test of the sources holds every guard to that.
PLUGIN_FAULTS = BaseException


def describe(exc: BaseException) -> str:
    """``Type: message`` for a message line, even for a (plugin's) exception whose ``str()`` itself raises; ``Type``
    alone for one with no message (``StopIteration:;`` read as a cut line: twenty-fourth hostile pass, plugins M3)."""
    text = message(exc)
    return f"{type(exc).__name__}: {text}" if text.strip() else type(exc).__name__


def message(exc: BaseException) -> str:
    """``str(exc)``, or what says that it cannot be shown: a plugin's ``GenzooError`` whose ``__str__`` raised was a
    traceback from genzoo's own ``Error:`` line (twenty-fourth hostile pass, plugins F9)."""
    try:
        return str(exc)
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS as inner:
        return f"(its message cannot be shown: {type(inner).__name__})"


def can_show(exc: BaseException) -> bool:
    """Whether ``str(exc)`` gives a message."""
    try:
        str(exc)
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS:
        return False
    return True


class PluginFault(GenzooError):
    """A plugin's own code raised (a model's ``loss``, a dataset's ``check``): the line names it and what it raised."""


@contextmanager
def blamed(who: str, what: str | None = None, passes: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Run plugin code, ``who`` (``VAE.loss``, ``dataset 'x' from plugin ...``), in the block.

    What it raises is one :class:`PluginFault` line naming ``who`` (and ``what`` it was
    doing), chained to the original, which ``--debug`` shows; genzoo's own lines, the
    exceptions in ``passes`` (a disk's ``OSError`` for a dataset) and Ctrl-C pass as they are.
    """
    doing = f"failed while {what}:" if what else "raised"
    try:
        yield
    except GenzooError as exc:
        if not can_show(exc):  # its text cannot be shown: every later line with it would raise
            raise PluginFault(f"{who} {doing} {first_line(describe(exc))}") from exc
        raise
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS as exc:
        if isinstance(exc, passes):
            raise
        raise PluginFault(f"{who} {doing} {first_line(describe(exc))}") from exc
