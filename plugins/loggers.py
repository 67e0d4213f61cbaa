"""The built-in loggers: ``tensorboard`` (per-epoch scalars, a sample grid per epoch, the hyper-parameters).

Event files go to ``RUN/tensorboard/`` (``tensorboard --logdir RUN``). The ``tensorboard``
package is an optional extra; without it ``--log tensorboard`` is refused in one line.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from genzoo import GenzooError, Logger, Register, hookimpl

#: The folder inside the run that holds the event files.
FOLDER = "tensorboard"


def _flat(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """Hyper-parameters as TensorBoard shows them: numbers, strings and booleans; anything else as text."""
    return {f"{prefix}{key}": value if isinstance(value, (bool, int, float, str)) else str(value)
            for key, value in values.items()}


class TensorBoardLogger(Logger):
    """Writes TensorBoard event files into the run folder, one file per training session."""

    description = "TensorBoard event files in RUN/tensorboard: scalars, sample grids, hyper-parameters"

    #: The new run's hyper-parameters until the first epoch names its test metrics.
    hyperparameters: dict[str, Any] | None = None

    @classmethod
    def check(cls) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise GenzooError("--log tensorboard needs the tensorboard package: pip install 'genzoo[tensorboard]'")

    def __init__(self, run_dir: Path, start_epoch: int) -> None:
        super().__init__(run_dir, start_epoch)
        from torch.utils.tensorboard import SummaryWriter

        # A resumed session redoes the epochs after ``start_epoch``: TensorBoard drops what an
        # earlier session logged from there on (the purge step), as metrics.jsonl does.
        self.writer = SummaryWriter(str(self.folder(FOLDER)), purge_step=start_epoch + 1 if start_epoch else None)

    def log_hyperparameters(self, description: dict[str, Any]) -> None:
        """The session's hyper-parameters now; the experiment, which names the metrics, with the first epoch."""
        from torch.utils.tensorboard.summary import hparams

        values = {"model": description["model"], **_flat("", description["model_config"]),
                  **_flat("train.", description["train_config"])}
        _, start, end = hparams(values, {})  # what SummaryWriter.add_hparams writes, minus its extra folder
        self._write(start, end)
        self.hyperparameters = values

    def _write(self, *summaries: Any) -> None:
        for summary in summaries:
            self.writer._get_file_writer().add_summary(summary)

    def log_epoch(self, record: dict[str, Any], samples: torch.Tensor | None) -> None:
        from torch.utils.tensorboard.summary import hparams

        epoch = record["epoch"]
        if self.hyperparameters is not None:  # the HParams dashboard shows these metrics beside each run
            metrics = {f"test/{key[5:]}": value for key, value in record.items() if key.startswith("test_")}
            self._write(hparams(self.hyperparameters, metrics)[0])
            self.hyperparameters = None
        for key, value in record.items():
            split, _, name = key.partition("_")
            if key not in ("epoch", "step") and value is not None:
                self.writer.add_scalar(f"{split}/{name}" if name else key, value, epoch)
        if samples is not None:
            self.writer.add_images("samples", samples.detach().float().cpu().clamp(0, 1), epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@hookimpl
def register_loggers(register: Register) -> None:
    register("tensorboard", TensorBoardLogger)
