"""The Logger interface: where a run streams what it does besides its own files (TensorBoard, MLflow, W&B).

A plugin registers a subclass with the ``register_loggers`` hook; ``genzoo train --log
NAME`` makes one for the run, and ``genzoo resume`` makes one again (the names are kept in
the run's ``config.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from genzoo.errors import GenzooError

if TYPE_CHECKING:
    import torch


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

    def folder(self, name: str) -> Path:
        """``RUN/name``, a folder for this logger's files, refused in one line when it is a symbolic link.

        Files written through a link land outside the run folder, which genzoo never writes
        into: a resumed run whose ``tensorboard`` folder had been replaced by a link wrote its
        event files wherever the link pointed, without a word (nineteenth hostile pass, M5).
        Raised from ``__init__``, the line stops the session before its first step.
        """
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
