"""The Logger interface: where a run streams what it does besides its own files (TensorBoard, MLflow, W&B).

A plugin registers a subclass with the ``register_loggers`` hook; ``genzoo train --log
NAME`` makes one for the run, and ``genzoo resume`` makes one again (the names are kept in
the run's ``config.json``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from genzoo.checks import shown
from genzoo.errors import GenzooError
from genzoo.files import is_temporary

if TYPE_CHECKING:
    import torch

#: Every name genzoo gives a file of a run folder (``genzoo.run_folder``, ``genzoo.checkpoint`` and the evaluation
#: name them; a test holds them to this): :meth:`Logger.folder` gives a logger none of them.
GENZOO_FILES = frozenset({"config.json", "metrics.jsonl", "fid_curve.jsonl", "checkpoint.pt", "eval.json",
                          "samples.png", "reconstructions.png", "loss.png"})


class Logger:
    """One training session's logger; every method but ``__init__`` does nothing unless overridden.

    ``__init__(run_dir, start_epoch)`` gets the run folder (a logger that writes files
    writes them inside it) and the epochs already finished (0 for a new run; a resumed
    run's later epochs are logged again, as its ``metrics.jsonl`` drops them).
    """

    description: ClassVar[str] = ""

    @classmethod
    def check(cls) -> None:
        """Raise :class:`genzoo.GenzooError` if the logger cannot work here (its library is missing).

        Called before a run folder exists, so a run that could not log is refused whole.
        """

    def __init__(self, run_dir: Path, start_epoch: int) -> None:
        self.run_dir = Path(run_dir)
        self.start_epoch = start_epoch

    def folder(self, name: str | os.PathLike[str]) -> Path:
        """``RUN/name``, a folder for this logger's files, refused in one line when it is a symbolic link, when
        ``name`` is not one plain name (``..``, ``/``, an absolute path: files outside the run), or when it is one
        genzoo gives its own files (``metrics.jsonl``; twentieth hostile pass, plugins F8).

        Files written through a link land outside the run folder, which genzoo never writes
        into: a resumed run whose ``tensorboard`` folder had been replaced by a link wrote its
        event files wherever the link pointed, without a word (nineteenth hostile pass, M5).
        Raised from ``__init__``, the line stops the session before its first step.
        """
        name = os.fspath(name) if isinstance(name, os.PathLike) else name  # Path("tb") as "tb"
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or os.sep in name or "\0" in name:
            raise GenzooError(f"{type(self).__name__}.folder was given {shown(name)}, not the name of one folder "
                              "inside the run folder (no '/', '..' or absolute path)")
        if name in GENZOO_FILES or is_temporary(name):
            raise GenzooError(f"{type(self).__name__}.folder was given {shown(name)}, a name genzoo gives a file "
                              "of its own in the run folder; give the logger's files a name of their own")
        path = self.run_dir / name
        if path.is_symlink():
            raise GenzooError(f"{path} is a symbolic link; genzoo only writes regular files inside a run folder "
                              "(remove the link, or move the folder it points to there)")
        return path

    def log_hyperparameters(self, description: dict[str, Any]) -> None:
        """The new run's ``config.json`` (``model``, ``model_config``, ``train_config``, ...), once."""

    def log_epoch(self, record: dict[str, Any], samples: torch.Tensor | None) -> None:
        """A finished epoch: its ``metrics.jsonl`` line and, from a model that can sample now, 64 samples.

        ``samples`` is ``(64, *sample_shape)`` in [0, 1], drawn under one fixed seed each
        epoch (as ``samples.png``), so the grids show the model change, not the noise.
        """

    def close(self) -> None:
        """Flush and let go; called once the session ends, also when it ends in an error."""
