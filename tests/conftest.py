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
from pathlib import Path

import pytest

from genzoo import GenzooError, plugins
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
#: Nobody named a data folder: MNIST may be downloaded, into the per-user cache, which every
#: test (and every genzoo it starts) then reads through $GENZOO_DATA.
DOWNLOAD_DATA = not os.environ.get("GENZOO_DATA")
if DOWNLOAD_DATA:
    os.environ["GENZOO_DATA"] = str(user_data_dir().resolve())
#: What to set when something cannot be downloaded, for the skip reason.
OFFLINE_HINT = ("set GENZOO_DATA=DIR (a folder holding MNIST/raw), TORCH_HOME=DIR (holding "
                "hub/checkpoints/), or GENZOO_MIRROR=URL (a mirror of the downloads)")

#: Tests that read the real MNIST through genzoo's default data folder rather than the ``mnist``
#: fixture (those that failed on a fresh offline machine before): offline, each is skipped.
NEEDS_MNIST = {
    "test_cli.py::test_train_writes_a_complete_run_folder",
    "test_cli.py::test_train_never_reuses_an_existing_run_folder",
    "test_compare.py::test_compare_writes_report_results_and_figure_and_lists_every_model",
    "test_compare.py::test_compare_never_overwrites_an_output_folder",
    "test_compare.py::test_compare_reuses_finished_runs",
    "test_compare.py::test_eval_writes_eval_json_into_the_run",
    "test_compare.py::test_eval_without_inception_weights_offline_is_one_line",
    "test_compare.py::test_compare_checks_the_inception_weights_before_training_anything",
    "test_evaluation.py::test_evaluate_run_writes_eval_json_and_refuses_an_unfinished_run",
    "test_external_plugin.py::test_pip_installed_plugin_is_listed_trained_compared_tested_then_uninstalled",
    "test_model_options.py::test_every_field_type_reaches_the_config",
    "test_model_options.py::test_options_may_come_before_the_model_and_shared_values_are_not_models",
    "test_registry.py::test_plugin_registered_in_a_test_is_usable_then_gone",
    "test_run_files.py::test_with_metrics_jsonl_lost_eval_and_resume_agree_that_the_checkpoint_holds_the_finished_run",
    "test_run_files_hypothesis.py::test_any_checkpoint_identity_matches_its_run_or_is_one_line",
    "test_trainer.py::test_same_seed_gives_the_same_numbers",
    "test_trainer.py::test_run_folder_records_metrics_per_epoch_and_pictures",
    "test_trainer.py::test_checkpoint_round_trips",
    "test_trainer.py::test_gan_checkpoints_both_optimisers_and_draws_no_reconstructions",
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.nodeid.removeprefix("tests/").split("[")[0] in NEEDS_MNIST and (why := mnist_missing()):
        pytest.skip(why)


@functools.cache
def mnist_missing() -> str | None:
    """Why MNIST cannot be had (``None`` once it is there): downloaded once when nobody named a folder."""
    root = resolve_data_root()
    if DOWNLOAD_DATA:
        try:
            plugins.registry().dataset("mnist")(root, download=True).fetch()
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
    dataset = plugins.registry().dataset("mnist")(mnist_root, download=False)
    return {"train": dataset.load("train"), "test": dataset.load("test")}


@pytest.fixture
def chdir_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temporary folder, so default ``runs/`` folders land there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
