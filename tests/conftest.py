"""Shared fixtures: real MNIST subsets and a temporary folder to run in.

Plugins registered for one test come from genzoo's own pytest plugin
(``genzoo_register``, see genzoo/testing/pytest_plugin.py), as for any plugin author.

On a fresh machine (no ``$GENZOO_DATA``, no shared folder beside the checkout) MNIST
is downloaded once, checksum verified, into the per-user cache, through the path
``genzoo train`` uses (``$GENZOO_MIRROR`` applies); offline, the tests that need it are
skipped with one line that says what to set. The Inception weights likewise.
"""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path
from typing import Iterator

import pytest

from genzoo import GenzooError, plugin_registry
from genzoo.data import TensorSplit, resolve_data_root, user_data_dir

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
# The stop-signal tests press Ctrl-C, in this process and in the genzoo processes it starts, which inherit an ignored
# SIGINT: a suite run as a shell's background job (``cmd &`` without job control ignores SIGINT) failed twelve of
# them, genzoo rightly leaving an ignored Ctrl-C ignored. The suite runs with Python's own handler, as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
#: Nobody named a data folder: MNIST may be downloaded, into the per-user cache, which every
#: test (and every genzoo it starts) then reads through $GENZOO_DATA.
DOWNLOAD_DATA = not os.environ.get("GENZOO_DATA")
if DOWNLOAD_DATA:
    os.environ["GENZOO_DATA"] = str(user_data_dir().resolve())
#: What to set when something cannot be downloaded, for the skip reason.
OFFLINE_HINT = ("set GENZOO_DATA=DIR (a folder holding MNIST/raw), TORCH_HOME=DIR (holding "
                "hub/checkpoints/), or GENZOO_MIRROR=URL (a mirror of the downloads)")

@pytest.fixture(scope="session", autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``$GENZOO_CACHE`` (FID statistics, sampler fits) is one folder of this session's, never the user's:
    a fit cached by another session (other code, another thread count) must not stand in for this one's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENZOO_CACHE", str(tmp_path_factory.mktemp("genzoo-cache")))
        yield


@functools.cache
def mnist_missing() -> str | None:
    """Why MNIST cannot be had (``None`` once it is there): downloaded once when nobody named a folder."""
    root = resolve_data_root()
    if DOWNLOAD_DATA:
        try:
            plugin_registry.registry().dataset("mnist")(root, download=True).fetch()
        except GenzooError as exc:
            return f"MNIST is not in {root} and could not be downloaded ({exc}); {OFFLINE_HINT}"
    return None


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The data folder, with MNIST in it (downloaded once when nobody named a folder); offline, a skip."""
    if why := mnist_missing():
        pytest.skip(why)
    return resolve_data_root()


@pytest.fixture(scope="session")
def inception_weights_file() -> Path:
    """torch-fidelity's Inception weights in $TORCH_HOME, downloaded when missing; offline, a skip."""
    from genzoo.evaluation import weights

    try:
        return weights.inception_weights()
    except GenzooError as exc:
        pytest.skip(f"{exc}; or {OFFLINE_HINT}")


@pytest.fixture(scope="session")
def mnist(mnist_root: Path) -> dict[str, TensorSplit]:
    """The real MNIST splits, loaded once per session through the dataset plugin."""
    dataset = plugin_registry.registry().dataset("mnist")(mnist_root, download=False)
    return {"train": dataset.load("train"), "test": dataset.load("test")}


@pytest.fixture
def chdir_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temporary folder, so default ``runs/`` folders land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
