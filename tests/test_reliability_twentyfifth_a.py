"""Reliability: the twenty-third hostile pass (plugins), fixed (rows in docs/reliability.md).

Plugins F1 and M2: a dataset plugin's split had its ``load`` guarded, not its own methods: a ``batches`` that moved
the working directory sent the whole run to another folder (exit 0), one that turned grad mode off had the first
step blame the model. Plugins F2: a model's ``configure_optimizers`` (and ``check_training_split``) could move the working directory the
same way. Files F1: a Ctrl-C in a ``--nproc`` rank's first second printed a traceback. Each test failed before its
fix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.datasets.mnist import MNIST
from genzoo_plugins.vae.model import VAE
from reliability_support import data_root, run_main, subprocess_env  # noqa: F401 - data_root is a fixture
from test_hostile_cli import torch_is_loading

from genzoo import TensorSplit, hookimpl

TINY = ["--epochs", "1", "--train-limit", "100", "--test-limit", "40", "--batch-size", "50", "--device", "cpu",
        "--latent", "2", "--hidden", "16"]


class Elsewhere:
    """Where the plugins below move the process: set by the test."""

    folder = Path("/")


class WanderingSplit(TensorSplit):
    """A split opening its shards by relative names: its ``batches`` moves into their folder."""

    def batches(self, batch_size: int, **options: Any) -> Any:
        os.chdir(Elsewhere.folder)
        yield from super().batches(batch_size, **options)

    def take(self, n: int) -> WanderingSplit:
        return type(self)(self.images[:n], None if self.labels is None else self.labels[:n])

    def to(self, device: torch.device | str) -> WanderingSplit:
        return type(self)(self.images.to(device), None if self.labels is None else self.labels.to(device))


class GradlessSplit(WanderingSplit):
    """A split whose ``batches`` turns autograd off "for the data pipeline"."""

    def batches(self, batch_size: int, **options: Any) -> Any:
        torch.set_grad_enabled(False)
        yield from TensorSplit.batches(self, batch_size, **options)


def _dataset(split_class: type[TensorSplit]) -> type[MNIST]:
    class Lazy(MNIST):
        def load(self, split: str) -> TensorSplit:
            loaded = super().load(split)
            return split_class(loaded.images, loaded.labels)

    return Lazy


class WanderingOptimizersVAE(VAE):
    """Its configure_optimizers moves into its own folder to read a file of settings."""

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        os.chdir(Elsewhere.folder)
        return super().configure_optimizers()


@pytest.fixture
def wandering(genzoo_register: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The plugins registered, the test in ``tmp_path``; the folder they move to."""
    Elsewhere.folder = tmp_path / "elsewhere"
    Elsewhere.folder.mkdir()

    @hookimpl
    def register_datasets(register: Any) -> None:
        register("wandering25", _dataset(WanderingSplit))
        register("gradless25", _dataset(GradlessSplit))

    @hookimpl
    def register_models(register: Any) -> None:
        register("wanderopt25", WanderingOptimizersVAE)

    genzoo_register(types.SimpleNamespace(register_datasets=register_datasets, register_models=register_models),
                    "wandering25")
    monkeypatch.chdir(tmp_path)
    return Elsewhere.folder


ORIGIN = "from plugin 'wandering25' (distribution 'test-wandering25')"


@pytest.mark.parametrize("dataset, changed", [
    ("wandering25", "the working directory ({cwd}, set to {elsewhere})"),
    ("gradless25", "torch's grad mode (enabled, set to disabled)")])
def test_a_split_whose_batches_change_the_process_is_put_back_and_named_before_the_run_folder(
        wandering: Path, data_root: Path, tmp_path: Path, capsys: Any, dataset: str, changed: str) -> None:
    """Plugins F1 and M2. Before: the split moving the working directory trained to exit 0 with the whole run
    written under the plugin's folder (``eval runs/w``: no config.json); the one turning grad mode off failed the
    first step with ``VAE.loss returned its objective 'nelbo' without a gradient``, its run folder left behind."""
    code, _, err = run_main(["train", "vae", "--dataset", dataset, "--data-root", str(data_root), *TINY,
                             "--out", "runs/w"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"Error: dataset {dataset!r} {ORIGIN} changed "
                          f"{changed.format(cwd=tmp_path, elsewhere=wandering)} while "), err
    assert err.rstrip().endswith("of its train split; they are put back (the Dataset contract: a split's methods "
                                 "leave torch's defaults and the process's settings alone)"), err
    assert Path.cwd() == tmp_path and torch.is_grad_enabled()
    assert not (tmp_path / "runs").exists() and list(wandering.iterdir()) == []


def test_configure_optimizers_that_moves_the_working_directory_is_put_back_and_named(
        wandering: Path, data_root: Path, tmp_path: Path, capsys: Any) -> None:
    """Plugins F2. Before: ``run folder: runs/w``, exit 0, and the whole run written under the plugin's folder."""
    code, _, err = run_main(["train", "wanderopt25", "--data-root", str(data_root), *TINY, "--out", "runs/w"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"Error: WanderingOptimizersVAE.configure_optimizers changed the working directory "
                          f"({tmp_path}, set to {wandering}) while "), err
    assert Path.cwd() == tmp_path and not (tmp_path / "runs").exists() and list(wandering.iterdir()) == []


def test_a_plugin_split_is_read_as_before_labels_and_all(wandering: Path, data_root: Path, tmp_path: Path,
                                                         capsys: Any, genzoo_register: Any) -> None:
    """The guard around a plugin's split keeps what it gives: a split that leaves the process alone trains and
    evaluates as the built-in one, and its labels colour ``genzoo latent``'s picture as before."""

    class QuietSplit(WanderingSplit):
        def batches(self, batch_size: int, **options: Any) -> Any:
            yield from TensorSplit.batches(self, batch_size, **options)

    @hookimpl
    def register_datasets(register: Any) -> None:
        register("quiet25", _dataset(QuietSplit))

    genzoo_register(types.SimpleNamespace(register_datasets=register_datasets), "quiet25")
    runs = {}
    for dataset in ("mnist", "quiet25"):
        runs[dataset] = tmp_path / dataset
        code, out, err = run_main(["train", "vae", "--dataset", dataset, "--data-root", str(data_root), *TINY,
                                   "--out", str(runs[dataset])], capsys)
        assert code == 0, err
    metrics = {dataset: [{key: value for key, value in json.loads(line).items() if key.startswith(("train_", "test_"))
                          and not key.endswith(("_seconds", "_per_s"))}
                         for line in (run / "metrics.jsonl").read_text().splitlines()] for dataset, run in runs.items()}
    assert metrics["mnist"] == metrics["quiet25"] and metrics["mnist"][0]["test_nelbo"] > 0
    from genzoo.building import load_split
    from genzoo.evaluation.latent_space import split_labels

    split = load_split("quiet25", "test", str(data_root), 40, torch.device("cpu"))
    labels = split_labels(split)
    assert type(split).__name__ == "GuardedSplit" and labels is not None
    assert torch.equal(labels, split_labels(load_split("mnist", "test", str(data_root), 40, torch.device("cpu"))))


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the imports start")
@pytest.mark.parametrize("local_rank, said", [("0", "Aborted."), ("1", "")])
def test_a_ctrl_c_while_a_rank_imports_torch_is_aborted_not_a_traceback(local_rank: str, said: str) -> None:
    """Files F1. Before: each rank's start code imported torch (in ``genzoo.distributed``) before genzoo's stop
    handlers were set, and a Ctrl-C then printed a ``KeyboardInterrupt`` traceback per rank above ``Aborted.``."""
    from genzoo.distributed import _RANK_CODE

    process = subprocess.Popen([sys.executable, "-c", _RANK_CODE.format(launcher=os.getpid()), "plugins"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=subprocess_env(LOCAL_RANK=local_rank))
    deadline = time.monotonic() + 60  # a safety net for a hung test, not a measurement
    while not torch_is_loading(process.pid) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert (process.returncode, err.strip()) == (130, said), err
