"""genzoo from Python, in one line each, as timm and torchvision offer.

``list_models()``, ``get_model(name, ...)``, ``load_model(run_dir)`` and
``open_run(run_dir)`` are thin: they go through the same registry, checks and
validating readers as the command line, so a model built or loaded here is the one
``genzoo train`` and ``genzoo eval`` would build or load, and a damaged run folder is
the same one-line :class:`~genzoo.GenzooError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genzoo.checks import is_count
from genzoo.errors import GenzooError
from genzoo.plugin_registry import registry

if TYPE_CHECKING:
    from genzoo.model import Model
    from genzoo.run_folder import RunDescription


def list_models() -> list[str]:
    """The names of every registered model, sorted: the built-ins and each loaded plugin's."""
    return registry().names("model")


def get_model(name: str, *, dataset: str | None = None, sample_shape: Sequence[int] | None = None,
              **options: Any) -> Model:
    """A new, untrained model ``name``, built as ``genzoo train`` builds it.

    ``options`` are its config's fields (``latent=8``, a plugin's ``beta=4.0``;
    ``loss=`` sets the field ``--loss`` sets), checked as the command line checks
    them. The model is built for the images of ``dataset`` (a registered dataset) or
    of ``sample_shape``; with neither, for ``genzoo train``'s default dataset (MNIST,
    ``(1, 28, 28)``). Its initial weights come from torch's global random stream:
    call ``torch.manual_seed`` first for a repeatable model.
    """
    from genzoo.train_config import TrainConfig

    reg = registry()
    reg.entry("model", name)  # an unknown name fails first, with the registry's suggestions
    if dataset is not None and sample_shape is not None:
        raise GenzooError("give get_model a dataset or a sample_shape, not both")
    if sample_shape is None:
        shape = tuple(reg.dataset(TrainConfig.dataset if dataset is None else dataset).sample_shape)
    else:
        # A list or tuple (torch.Size is one): a string, bytes or a dict would iterate into a shape.
        shape = tuple(sample_shape) if isinstance(sample_shape, (list, tuple)) else ()
        if not shape or not all(is_count(n) for n in shape):
            raise GenzooError(f"sample_shape must be a sequence of positive integers, got {sample_shape!r}")
    return reg.build_model(name, shape, **options)


def load_model(run_dir: str | Path, device: str = "cpu") -> Model:
    """The trained model of the finished run in ``run_dir``, in eval mode, on ``device``.

    ``device`` is ``cpu``, ``cuda`` (``cuda:N``) or ``auto``. The run is checked as
    ``genzoo eval`` checks it: its files must be valid and of one run, and its
    checkpoint (loaded weights-only) must hold the last epoch.
    """
    from genzoo.building import load_model as load

    return load(_run_path(run_dir), device)


class Run:
    """A run folder: its settings, metrics, evaluation and trained model.

    Made by :func:`open_run`, which reads and checks ``config.json``. ``metrics`` and
    ``evaluation`` read their files on each access, so a run still training shows
    its latest epoch.
    """

    def __init__(self, path: Path, description: RunDescription) -> None:
        self.path = path
        self._description = description

    @property
    def config(self) -> dict[str, Any]:
        """The whole ``config.json``: ``model``, ``model_config``, ``train_config``, ``sample_shape``, versions."""
        return self._description.raw

    @property
    def model_name(self) -> str:
        """The registered name of the run's model."""
        return self._description.model

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """One dict per finished epoch from ``metrics.jsonl`` (``epoch``, ``step``, ``train_*``, ``test_*``): the
        run's own lines, another run's left out with a warning (:func:`genzoo.run_folder.read_metrics`)."""
        from genzoo.run_folder import read_metrics

        return read_metrics(self.path, self._description.run_id)

    @property
    def evaluation(self) -> dict[str, Any] | None:
        """What ``genzoo eval`` wrote to ``eval.json``, or None before it has run."""
        from genzoo.evaluation.run_evaluation import earlier_evaluation

        return earlier_evaluation(self.path)

    def model(self, device: str = "cpu") -> Model:
        """The trained model, as :func:`load_model` gives it (the run must be finished)."""
        from genzoo.building import load_model as load

        return load(self.path, device, description=self._description.raw)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, model={self.model_name!r})"


def open_run(run_dir: str | Path) -> Run:
    """The run in ``run_dir``; one line of :class:`~genzoo.GenzooError` if it is not a valid run folder."""
    from genzoo.run_folder import read_run

    path = _run_path(run_dir)
    return Run(path, read_run(path))


def _run_path(run_dir: Any) -> Path:
    """``run_dir`` as a Path, or one GenzooError saying what a run folder argument must be."""
    path = os.fspath(run_dir) if isinstance(run_dir, (str, os.PathLike)) else None
    if not isinstance(path, str):  # None, a number, bytes (which Path refuses with a TypeError)
        raise GenzooError(f"run_dir must be a path (str or os.PathLike), got {run_dir!r:.60}")
    if "\x00" in path:
        raise GenzooError(f"run_dir must not contain a NUL character, got {path!r:.60}")
    return Path(path)
