"""Plugins F3 of the twenty-fourth hostile pass, fixed by the twenty-sixth look: a logger that deleted or overwrote
the run's ``checkpoint.pt``.

An "upload, then free the disk" cleanup in a logger's ``close()``, or a file of its own written as ``checkpoint.pt``
in ``log_epoch``, left a run that had trained to the end (exit 0, no warning) with no weights: ``eval`` and
``resume`` refused it for ever. The checkpoint is now kept as ``config.json`` and ``metrics.jsonl`` are: put back
after the call, the logger named in one warning and dropped. Each case failed before its fix.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import data_root, run_main  # noqa: F401 - data_root is a fixture

from genzoo import Logger, hookimpl
from genzoo.checkpoint import load_checkpoint
from genzoo.run_folder import read_metrics

TINY = ["--epochs", "2", "--batch-size", "16", "--train-limit", "64", "--test-limit", "32", "--latent", "2",
        "--device", "cpu"]


class CleaningLogger(Logger):
    """Deletes or overwrites the run's checkpoint, when and as :attr:`how` says."""

    how = ""

    def log_epoch(self, record: dict[str, Any], samples: torch.Tensor | None) -> None:
        if self.how == "overwrite":
            (self.run_dir / "checkpoint.pt").write_bytes(b"uploaded")

    def close(self) -> None:
        if self.how == "delete":
            for path in self.run_dir.glob("*.pt"):
                path.unlink()


@pytest.mark.parametrize(("how", "while_"), [("overwrite", "logging epoch 1"), ("delete", "closing")])
def test_a_logger_that_deletes_or_overwrites_the_checkpoint_has_it_put_back(genzoo_register, data_root, tmp_path,  # noqa: F811
                                                                            capsys, monkeypatch, how, while_) -> None:
    """Before: exit 0 with no warning, then ``Error: no checkpoint at RUN/checkpoint.pt`` (deleted) or ``RUN/
    checkpoint.pt is truncated or not a checkpoint`` (overwritten) from ``eval`` and ``resume``."""
    monkeypatch.setattr(CleaningLogger, "how", how)

    @hookimpl
    def register_loggers(register: Any) -> None:
        register("cleaning26", CleaningLogger)

    genzoo_register(types.SimpleNamespace(register_loggers=register_loggers), "cleaning26", "test-cleaning26")
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", *TINY, "--log", "cleaning26", "--data-root", str(data_root), "--out",
                             str(run)], capsys)
    assert code == 0, err
    assert [line for line in err.splitlines() if line.startswith("genzoo: warning:")] == [
        f"genzoo: warning: logger 'cleaning26' changed genzoo's own {run / 'checkpoint.pt'} while {while_}; it is "
        "put back (the Logger contract: a logger writes its files only in a folder of its own, Logger.folder(NAME)), "
        "and it logs no more of this session"]
    assert load_checkpoint(run / "checkpoint.pt")["position"]["epoch"] == 2
    assert [record["epoch"] for record in read_metrics(run)] == [1, 2]
    assert sorted(path.name for path in Path(run).iterdir() if path.name.startswith(".")) == []  # no copy left
    code, _, err = run_main(["eval", str(run), "--test-limit", "32", "--fid-samples", "0", "--iwae-k", "2"], capsys)
    assert code == 0, err
