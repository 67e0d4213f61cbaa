"""matplotlib imported so that nothing in the current folder or the user's matplotlib folders can hang or change it.

``import matplotlib`` reads ``./matplotlibrc`` and the user's rc files and font list: files another user of a shared
folder may have planted. genzoo imports it here, before any plugin's code could import it unprotected (a plugin's own
``import matplotlib`` at import re-opened the hang: twenty-sixth hostile pass, plugins F12).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from genzoo.errors import GenzooError
from genzoo.files import private_folder


def import_matplotlib() -> None:
    """``import matplotlib`` from ``/``, with matplotlib's own default rc file and a checked folder (Agg backend);
    nothing if it is imported already."""
    if "matplotlib" in sys.modules:
        return
    with own_matplotlib_files(), outside_the_current_folder(), stops_held():  # the folder found from the current one
        import matplotlib

        matplotlib.use("Agg")


#: The signals genzoo stops on (``process_settings.STOP_SIGNALS``, which imports torch).
_STOPS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU}


@contextmanager
def stops_held() -> Iterator[None]:
    """Hold the stop signals back while matplotlib's C extensions initialise, and take them after: genzoo's handler
    raising inside ``ft2font``'s initialisation was a ``Fatal Python error``, exit 134, or an ``ImportError``
    traceback, where the stop should be ``Aborted.`` and 143 (twenty-sixth hostile pass, files F2 and F4)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # one that came meanwhile is handled here


@contextmanager
def outside_the_current_folder() -> Iterator[None]:
    """Run the block in ``/``, then come back to the current folder (by descriptor: it may have moved).

    ``import matplotlib`` reads ``./matplotlibrc``: another user's file in a shared current folder,
    a FIFO, hung every command before its first word, and a link to /dev/zero filled the memory
    (eleventh hostile pass, F2). Only root can put a file in ``/``.
    """
    here = os.open(".", getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY)
    try:
        os.chdir("/")
        yield
    finally:
        os.fchdir(here)
        os.close(here)


#: matplotlib's own default rc file, found without importing matplotlib.
_DEFAULT_RC = os.path.join(importlib.util.find_spec("matplotlib").submodule_search_locations[0],  # type: ignore
                           "mpl-data", "matplotlibrc")


def _matplotlib_folder() -> str:
    """The folder matplotlib keeps its font list in (and reads styles from), checked; where there can be none (a
    file in the way, no home), a private temporary folder for this process, as matplotlib itself would use.

    matplotlib reads its config and cache folders while it is imported: a FIFO planted in a
    shared ``MPLCONFIGDIR`` (``/tmp``, as matplotlib's own warning suggests) hung every drawing
    command, and its font list there names the files it parses as fonts (twelfth hostile pass, F1).
    One folder serves both: ``$MPLCONFIGDIR``, else matplotlib's cache folder. One another user
    could change is one line. A relative one is the user's, in the current folder: it is made absolute here,
    before matplotlib is imported from ``/`` (thirteenth hostile pass: ``MPLCONFIGDIR=relmpl`` made ``/relmpl``).
    """
    given = os.environ.get("MPLCONFIGDIR")
    source = "MPLCONFIGDIR" if given else "matplotlib's cache folder"
    folder = Path(given or os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"))
    folder = folder if given else folder / "matplotlib"
    try:
        folder = Path(os.path.abspath(folder))  # no current folder (removed): as no home
        path, problem = private_folder(folder)
        usable = os.path.isdir(path)
    except OSError:  # no home to make it in
        problem, usable = "cannot be made", False
    if problem is None:
        return str(path)
    if usable:
        raise GenzooError(f"matplotlib's folder {folder} ({source}) {problem}, so another user could hang or change "
                          "every picture (matplotlib reads its files there); set MPLCONFIGDIR to a folder only you "
                          "can write")
    temporary = tempfile.mkdtemp(prefix="matplotlib-")  # a file in the way, or no home
    atexit.register(shutil.rmtree, temporary, True)
    return temporary


@contextmanager
def own_matplotlib_files() -> Iterator[None]:
    """matplotlib's default rc file and a checked folder while it is imported; the environment as it was after.

    No rc file of the user's is read: every picture is drawn under matplotlib's defaults anyway
    (:func:`drawing`), and ``$MATPLOTLIBRC``, ``$MPLCONFIGDIR/matplotlibrc`` and
    ``$XDG_CONFIG_HOME/matplotlib/matplotlibrc`` may be files another user planted.
    matplotlib keeps the folders it chose for the process.
    """
    kept = {name: os.environ.get(name) for name in ("MATPLOTLIBRC", "MPLCONFIGDIR")}
    os.environ["MPLCONFIGDIR"] = _matplotlib_folder()
    os.environ["MATPLOTLIBRC"] = _DEFAULT_RC
    try:
        yield
    finally:
        for name, value in kept.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
