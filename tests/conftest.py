"""Shared fixtures: real MNIST subsets, and plugins registered for one test only."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from genzoo import plugins
from genzoo.data import TensorSplit, resolve_data_root

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# Tests read MNIST from $GENZOO_DATA and Inception weights from $TORCH_HOME, made
# absolute (some tests change directory), falling back to the shared folder beside
# the checkout.
for variable, fallback in (("GENZOO_DATA", SHARED / "data"), ("TORCH_HOME", SHARED / "fid")):
    if os.environ.get(variable):
        os.environ[variable] = str(Path(os.environ[variable]).resolve())
    elif fallback.is_dir():
        os.environ[variable] = str(fallback)


@pytest.fixture(scope="session")
def mnist() -> dict[str, TensorSplit]:
    """The real MNIST splits, loaded once per session through the dataset plugin."""
    dataset = plugins.registry().dataset("mnist")(resolve_data_root(), download=False)
    return {"train": dataset.load("train"), "test": dataset.load("test")}


@pytest.fixture
def register_plugin() -> Iterator[Callable[[Any, str], None]]:
    """Register plugin objects for this test; they are unregistered afterwards."""
    names: list[str] = []

    def register(plugin: Any, name: str) -> None:
        plugins.register_plugin(plugin, name, distribution=f"test-{name}")
        names.append(name)

    yield register
    for name in names:
        plugins.unregister_plugin(name)


@pytest.fixture
def chdir_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temporary folder, so default ``runs/`` folders land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
