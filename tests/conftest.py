"""Shared fixtures: real MNIST subsets and a temporary folder to run in.

Plugins registered for one test come from genzoo's own pytest plugin
(``genzoo_register``, see genzoo/testing/pytest_plugin.py), as for any plugin author.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from genzoo import plugin_registry
from genzoo.data import TensorSplit, resolve_data_root

# pytester runs the conformance kit against deliberately broken models.
pytest_plugins = ["pytester"]

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
    dataset = plugin_registry.registry().dataset("mnist")(resolve_data_root(), download=False)
    return {"train": dataset.load("train"), "test": dataset.load("test")}


@pytest.fixture
def chdir_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temporary folder, so default ``runs/`` folders land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
