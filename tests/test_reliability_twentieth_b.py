"""The seventeenth hostile pass's F2, its model half: ``get_extra_state`` holding what no weights-only checkpoint
can (numpy's int64, a counter counted with numpy) trained to the end, exit 0, and then every command refused the
run's checkpoints. Now it is refused before any run folder when the state holds it from the start, and after the
run's first step when training puts it there, saying that the folder holds its config.json alone.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import assert_one_line_error, data_root, one_thread, run_main  # noqa: F401 - fixtures
from test_review_nineteenth import TINY, VAE_OPTIONS, config_alone

from genzoo import hookimpl


class NumpyCountVAE(VAE):
    """Counts its training passes with numpy, kept the PyTorch way (``get_extra_state``)."""

    start: Any = np.int64(0)

    def __init__(self, config: Any, sample_shape: Any) -> None:
        super().__init__(config, sample_shape)
        self.count = self.start

    def loss(self, x: torch.Tensor) -> Any:
        if self.training and torch.is_grad_enabled():
            self.count = self.count + np.int64(1)  # an int + a numpy int: numpy's int64 from the first step
        return super().loss(x)

    def get_extra_state(self) -> Any:
        return {"count": self.count}

    def set_extra_state(self, state: Any) -> None:
        self.count = state["count"]


class LateNumpyVAE(NumpyCountVAE):
    """A plain int at first, numpy's int64 once it has trained a step."""

    start = 0


class LateNumpyAfterVAE(LateNumpyVAE):
    """Plain through the first epoch's steps; numpy's int64 from the second epoch on (its step count is 2 a
    batch at TINY's sizes: 40 images, batches of 20)."""

    def loss(self, x: torch.Tensor) -> Any:
        if self.training and torch.is_grad_enabled():
            self.count = self.count + (np.int64(1) if self.count >= 2 else 1)
        return VAE.loss(self, x)


class BestSoFarVAE(VAE):
    """Legitimate extra state a weights-only checkpoint holds: an infinite running best and a bool mask."""

    def __init__(self, config: Any, sample_shape: Any) -> None:
        super().__init__(config, sample_shape)
        self.best, self.mask = float("inf"), torch.ones(3, dtype=torch.bool)

    def get_extra_state(self) -> Any:
        return {"best": self.best, "mask": self.mask, "deep": [[[[[1]]]]]}

    def set_extra_state(self, state: Any) -> None:
        self.best, self.mask = state["best"], state["mask"]


@hookimpl
def register_models(register: Any) -> None:
    register("numpy-count", NumpyCountVAE)
    register("late-numpy", LateNumpyVAE)
    register("late-numpy-after", LateNumpyAfterVAE)
    register("best-so-far", BestSoFarVAE)


@pytest.fixture
def models(genzoo_register: Any) -> Any:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "twentieth-b", "test-twentieth-b")
    yield


def train(model: str, out: Path, data_root: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code, _, err = run_main(["train", model, "--data-root", str(data_root), *TINY, *VAE_OPTIONS, "--out", str(out)],
                            capsys)
    return code, err


def test_extra_state_no_checkpoint_holds_is_one_line_before_any_folder(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: trained, exit 0; then eval, sample, export and resume refused every checkpoint."""
    out = tmp_path / "out"
    code, err = train("numpy-count", out, data_root, capsys)
    assert_one_line_error(code, err, "NumpyCountVAE's state_dict holds '_extra_state' (from its get_extra_state), "
                          "which asks the loader for numpy", "no checkpoint of the run could be loaded")
    assert not out.exists()


def test_extra_state_that_training_makes_unsaveable_is_one_line_after_the_first_step(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: trained to the end, exit 0, and no command could load the run."""
    out = tmp_path / "out"
    code, err = train("late-numpy", out, data_root, capsys)
    line = assert_one_line_error(code, err, "LateNumpyVAE's state_dict holds, after the run's first step, "
                                            "'_extra_state' (from its get_extra_state), which asks the loader for numpy")
    assert line.endswith(config_alone(out)), line
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


def test_a_nan_inside_a_list_is_named_as_not_finite_inside_its_list() -> None:
    """M7: ``[nan]`` kept in optimiser state was "nan, a float: a subclass of float" (a float is no subclass of
    itself); now the list is named, and what is wrong with its item."""
    from test_review_nineteenth import stepped

    from genzoo.checkpoint import UnfitOptimizerState, check_optimizer_state

    optimizer = stepped([float("nan")])
    with pytest.raises(UnfitOptimizerState) as caught:
        check_optimizer_state("keeping", optimizer.state_dict(), optimizer, Path("checkpoint.pt"), steps=1)
    assert caught.value.why == "'kept' of parameter 0 is [nan], one of whose items is nan, a number that is not finite"


def test_extra_state_that_turns_unsaveable_later_is_refused_before_its_checkpoint(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A value that turns numpy's only in epoch 2 was checked only at the first step: the run trained to the end."""
    out = tmp_path / "out"
    code, _, err = run_main(["train", "late-numpy-after", "--data-root", str(data_root), *TINY, *VAE_OPTIONS,
                             "--epochs", "2", "--out", str(out)], capsys)
    assert code == 1 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]  # after epoch 1's progress line
    for needle in ("Error: LateNumpyAfterVAE's state_dict holds, while training, '_extra_state'",
                   "asks the loader for numpy", "the last good checkpoint is kept"):
        assert needle in last, (needle, last)


def test_extra_state_a_checkpoint_holds_trains(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An infinite running best, a bool mask and deep nesting load weights-only: the run trains (the review found
    the first check refusing them)."""
    code, err = train("best-so-far", tmp_path / "out", data_root, capsys)
    assert code == 0, err


def test_values_kept_on_a_config_from_its_build_are_unchanged_when_unchanged() -> None:
    """The review of F1's fix: a numpy array (whose == is elementwise, so its truth raised) and a NaN tensor or
    float kept on a config from its build were called changed, and the model refused before any folder."""
    import copy

    from genzoo_plugins.vae.config import VAEConfig

    from genzoo.model import config_changes

    config = VAEConfig()
    for name, value in (("_table", np.arange(3)), ("_t", torch.tensor([float("nan"), 1.0])), ("_f", float("nan"))):
        object.__setattr__(config, name, value)
    built = copy.deepcopy(config)
    assert config_changes(built, config) == []
    object.__setattr__(config, "_table", np.arange(1, 4))
    assert config_changes(built, config) == ["_table array([0, 1, 2]) -> array([1, 2, 3])"]
