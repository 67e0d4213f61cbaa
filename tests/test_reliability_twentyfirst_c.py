"""Found by the twenty-first look (eighteenth hostile pass, F3, F4): training state that no checkpoint held.

F3: numpy's and Python's global random streams were neither seeded from the run's seed nor kept in checkpoints,
so a model drawing from them (mixup written the usual way, ``np.random.beta``) neither repeated under its seed
nor resumed bit for bit, exit 0; the kit's determinism check took one step, before such a draw. F4: a model
stepping an optimiser of its own (not one ``configure_optimizers`` gave the trainer) trained and resumed with a
fresh optimiser, exit 0. Each test failed before its fix (docs/reliability.md, "Found by the twenty-first look").
"""

from __future__ import annotations

import random
import signal
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from genzoo_plugins.vae.model import VAE
from pytester_support import run_session
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    Steered,
    assert_one_line_error,
    assert_same_run,
    data_root,
    one_thread,
    run_main,
)

from genzoo import hookimpl
from genzoo.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from genzoo.train_config import TrainConfig
from genzoo.trainer import Interrupted
from genzoo.training import resume_run, start_run

TINY = ["--batch-size", "10", "--test-limit", "20", "--device", "cpu", "--latent", "2", "--hidden", "16"]
OPTIONS = {"latent": 2, "hidden": 16}
STEPS_PER_EPOCH = 12  # 120 fake training images in batches of 10
INTERRUPT_AT = 17  # mid-epoch 2, after the checkpoint of step 15
#: Steps a model below trains before its first draw, or before it first steps an optimiser.
WARM = 2


# -- F3: a model drawing from numpy's and Python's global streams --------------------------------------


class MixupVAE(Steered, VAE):
    """Mixup after a warm-up counted in a persistent buffer: its weight from numpy's global stream, its partners
    from Python's (the report's model, with ``random.shuffle`` beside ``np.random.beta``)."""

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.register_buffer("warm", torch.zeros((), dtype=torch.long))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training and torch.is_grad_enabled():
            if int(self.warm) >= WARM:
                weight = float(np.random.beta(0.4, 0.4))
                partners = list(range(len(x)))
                random.shuffle(partners)
                x = weight * x + (1 - weight) * x[partners]
            self.warm += 1
        return super().loss(x)


def scramble(seed: int) -> None:
    """Put numpy's and Python's global streams somewhere a new process could find them."""
    np.random.seed(seed)
    random.seed(seed)


# -- F4: an optimiser of the model's own ----------------------------------------------------------------


class HiddenOptVAE(VAE):
    """Steps an Adam it made itself, ignoring the optimisers it is given (the report's)."""

    automatic_optimization = False
    #: Its own Adam steps on every ``every``-th training step, the gradients accumulated in between.
    every = 1
    #: Ctrl-C after this training step (counted in ``seen``, which a checkpoint holds).
    interrupt_at: int | None = None

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        if not hasattr(self, "own"):
            self.own = torch.optim.Adam(self.parameters(), lr=self.config.lr)
        out = self.loss(x)
        out["nelbo"].sum().backward()
        self.seen += 1
        if int(self.seen) % self.every == 0:
            self.own.step()
            self.own.zero_grad(set_to_none=True)
        if int(self.seen) == type(self).interrupt_at:
            signal.raise_signal(signal.SIGINT)
        return out


class LateHiddenOptVAE(HiddenOptVAE):
    """The same, accumulating gradients over three steps: its first step moves no weight."""

    every = WARM + 1


class AccumulatingVAE(HiddenOptVAE):
    """Accumulates gradients over three steps, then steps the optimiser it is given: plain SGD, which keeps no state
    at all (a sound model: no refusal)."""

    every = WARM + 1

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"sgd": torch.optim.SGD(self.parameters(), lr=self.config.lr)}

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        self.own = optimizers["sgd"]
        return super().training_step(x, optimizers)


class SwitchingOptVAE(HiddenOptVAE):
    """Steps the Adam it is given until ``switched``, then an Adam of its own: a run trained by genzoo before
    the twenty-first look, its checkpoint written then, and resumed now."""

    switched = False

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        if not type(self).switched:
            self.own = optimizers["adam"]
        return super().training_step(x, optimizers)


class SplitOptVAE(HiddenOptVAE):
    """Steps the decoder with the optimiser it is given, which holds the decoder alone, and the encoder with an
    Adam of its own: the given optimiser steps every time, yet the encoder's moments are in no checkpoint."""

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"decoder": torch.optim.Adam(self.decoder.parameters(), lr=self.config.lr)}

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        if not hasattr(self, "own"):
            self.own = torch.optim.Adam(self.encoder.parameters(), lr=self.config.lr)
        out = self.loss(x)
        out["nelbo"].sum().backward()
        for optimizer in (self.own, optimizers["decoder"]):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return out


class AfterFitVAE(VAE):
    """A sound manual model whose optimiser holds the decoder alone, and whose ``after_training`` sets an encoder
    weight by hand (as a prior fitted after training would be): that move is no training step's."""

    automatic_optimization = False

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": torch.optim.Adam(self.decoder.parameters(), lr=self.config.lr)}

    def training_step(self, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
        out = self.loss(x)
        out["nelbo"].sum().backward()
        optimizers["adam"].step()
        self.zero_grad(set_to_none=True)
        return out

    def after_training(self, train: Any) -> None:
        with torch.no_grad():
            self.encoder[0].weight.mul_(0.5)


@hookimpl
def register_models(register: Any) -> None:
    register("afterfit21", AfterFitVAE)
    register("mixup21", MixupVAE)
    register("hiddenopt21", HiddenOptVAE)
    register("latehiddenopt21", LateHiddenOptVAE)
    register("accumulating21", AccumulatingVAE)
    register("splitopt21", SplitOptVAE)
    register("switchingopt21", SwitchingOptVAE)


@pytest.fixture
def models(genzoo_register: Any) -> Any:
    def reset() -> None:
        MixupVAE.steps, MixupVAE.interrupt_at = 0, None
        HiddenOptVAE.interrupt_at, SwitchingOptVAE.switched = None, False

    reset()
    genzoo_register(types.SimpleNamespace(register_models=register_models), "twentyfirst-c", "test-twentyfirst-c")
    yield
    reset()


def config(data_root: Path, model: str = "mixup21", epochs: int = 2) -> TrainConfig:
    return TrainConfig(model=model, epochs=epochs, batch_size=10, seed=3, device="cpu", data_root=str(data_root),
                       test_limit=20, checkpoint_every=5)


def train(model: str, out: Path, data_root: Path, capsys: pytest.CaptureFixture, epochs: int = 1) -> tuple[int, str]:
    """``genzoo train MODEL`` with tiny options into ``out``: its exit status and stderr."""
    code, _, err = run_main(["train", model, "--data-root", str(data_root), "--epochs", str(epochs), *TINY,
                             "--out", str(out)], capsys)
    return code, err


def test_a_model_drawing_from_numpys_and_pythons_streams_repeats_under_its_seed_and_resumes_bit_for_bit(
        models: None, data_root: Path, tmp_path: Path) -> None:
    """Before: two runs under one seed ended with other weights, and so did a run interrupted at step 17 and
    resumed (the report's: up to 7e-3 apart), exit 0."""
    scramble(1)
    start_run(config(data_root), OPTIONS, out=tmp_path / "reference")
    scramble(2)
    start_run(config(data_root), OPTIONS, out=tmp_path / "again")
    assert_same_run(tmp_path / "again", tmp_path / "reference")
    MixupVAE.steps, MixupVAE.interrupt_at = 0, INTERRUPT_AT
    scramble(3)
    with pytest.raises(Interrupted):
        start_run(config(data_root), OPTIONS, out=tmp_path / "run")
    MixupVAE.steps, MixupVAE.interrupt_at = 0, None
    rng = load_checkpoint(tmp_path / "run")["rng"]  # weights-only, as every load of it
    assert {"numpy", "python"} <= set(rng)
    scramble(4)  # a resume is another process
    resume_run(tmp_path / "run")
    assert MixupVAE.steps == 2 * STEPS_PER_EPOCH - INTERRUPT_AT  # nothing trained twice
    assert_same_run(tmp_path / "run", tmp_path / "reference")


def test_evaluating_and_drawing_pictures_leave_numpys_and_pythons_streams_to_training(
        models: None, data_root: Path, tmp_path: Path) -> None:
    """Inside genzoo's seeded sections (each epoch's test pass, the pictures) numpy and Python draw the same
    numbers every time, and the streams are put back on leaving, as torch's is."""
    from genzoo.seeding import seeded

    scramble(5)
    draws = []
    for _ in range(2):
        with seeded(torch.device("cpu"), 11):
            draws.append((np.random.rand(3).tolist(), random.random(), torch.rand(2).tolist()))
    assert draws[0] == draws[1]
    scramble(5)
    np.random.rand(3), random.random(), torch.rand(2)
    after = (np.random.rand(3).tolist(), random.random())
    scramble(5)
    np.random.rand(3), random.random(), torch.rand(2)
    with seeded(torch.device("cpu"), 11):
        np.random.rand(7), random.random()
    assert (np.random.rand(3).tolist(), random.random()) == after


@pytest.fixture
def interrupted(models: None, data_root: Path, tmp_path: Path) -> Path:
    """A mixup run interrupted at step 17 (its checkpoint there), the data beside it."""
    MixupVAE.interrupt_at = INTERRUPT_AT
    with pytest.raises(Interrupted):
        start_run(config(data_root), OPTIONS, out=tmp_path / "run")
    MixupVAE.steps, MixupVAE.interrupt_at = 0, None
    return tmp_path / "run"


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        target = state["rng"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


BROKEN_STATES: dict[str, Callable[[dict[str, Any]], None]] = {
    "numpy's key of 3 words": _set(("numpy", "key"), torch.zeros(3, dtype=torch.int64)),
    "numpy's key of floats": _set(("numpy", "key"), torch.zeros(624)),
    "numpy's key past 32 bits": _set(("numpy", "key"), torch.full((624,), 2**40, dtype=torch.int64)),
    "numpy's position 700": _set(("numpy", "pos"), 700),
    "numpy's position a str": _set(("numpy", "pos"), "1"),
    "numpy's state a list": _set(("numpy",), [1, 2, 3]),
    "Python's state of 4 words": _set(("python", "state"), torch.zeros(4, dtype=torch.int64)),
    "Python's index 900": _set(("python", "state"), torch.cat([torch.ones(624, dtype=torch.int64),
                                                               torch.tensor([900])])),
    "Python's version 9": _set(("python", "version"), 9),
    "Python's cached gaussian a str": _set(("python", "gauss_next"), "x"),
    "an unknown stream": _set(("cupy",), torch.zeros(3)),
    "numpy's without Python's": lambda state: state["rng"].pop("python"),
}


@pytest.mark.parametrize("name", list(BROKEN_STATES))
def test_a_damaged_numpy_or_python_state_is_one_line_before_any_file_changes(
        name: str, interrupted: Path, capsys: pytest.CaptureFixture) -> None:
    state = load_checkpoint(interrupted)
    BROKEN_STATES[name](state)
    save_checkpoint(interrupted / FILENAME, state)
    before = {p.name: p.read_bytes() for p in interrupted.iterdir()}
    code, _, err = run_main(["resume", str(interrupted), "--data-root", str(interrupted.parent / "data")], capsys)
    assert_one_line_error(code, err, f"{interrupted / FILENAME} has no usable RNG states")
    assert {p.name: p.read_bytes() for p in interrupted.iterdir()} == before


def test_a_checkpoint_from_before_without_numpys_and_pythons_states_still_resumes(
        interrupted: Path, tmp_path: Path) -> None:
    """Such a checkpoint (genzoo before the twenty-first look) resumes, the two streams seeded from the run's seed;
    a model drawing from them then continues from other numbers than its interrupted run would have."""
    state = load_checkpoint(interrupted)
    del state["rng"]["numpy"], state["rng"]["python"]
    save_checkpoint(interrupted / FILENAME, state)
    resume_run(interrupted)
    position = load_checkpoint(interrupted)["position"]
    assert (position["epoch"], position["step"]) == (2, 0)


KIT = '''
import random

import numpy as np
import pytest
import torch
from genzoo_plugins.vae.model import VAE

from genzoo import hookimpl
from genzoo.testing import ModelConformance


class Mixup(VAE):
    """Mixup after two steps, from numpy's and Python's global streams: deterministic under genzoo's seeding."""

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.register_buffer("warm", torch.zeros((), dtype=torch.long))

    def mixed(self, x):
        weight = float(np.random.beta(0.4, 0.4))
        partners = list(range(len(x)))
        random.shuffle(partners)
        return weight * x + (1 - weight) * x[partners]

    def loss(self, x):
        if self.training and torch.is_grad_enabled():
            if int(self.warm) >= 2:
                x = self.mixed(x)
            self.warm += 1
        return super().loss(x)


class EntropyMixup(Mixup):
    """The same weight from a generator seeded by the operating system: no seed repeats it."""

    def mixed(self, x):
        weight = float(np.random.default_rng().beta(0.4, 0.4))
        return weight * x + (1 - weight) * x.flip(0)


@hookimpl
def register_models(register):
    register("mixup", Mixup)
    register("entropy-mixup", EntropyMixup)


@pytest.fixture(autouse=True)
def plugin(genzoo_register):
    import sys

    genzoo_register(sys.modules[__name__], "kit-mixup")


class TestMixup(ModelConformance):
    model_name = "mixup"
    options = {"latent": 2, "hidden": 16}


class TestEntropyMixup(ModelConformance):
    model_name = "entropy-mixup"
    options = {"latent": 2, "hidden": 16}
'''


def test_the_kit_passes_a_model_drawing_from_numpy_under_its_seed_and_fails_one_no_seed_repeats(
        pytester: pytest.Pytester) -> None:
    """Before: the kit failed the mixup model on resuming (numpy's stream was not in the checkpoint), and passed
    a model drawing from the operating system's entropy as deterministic (one step, before its first draw)."""
    pytester.makepyfile(test_kit=KIT)
    checks = ["test_deterministic_under_a_seed", "test_resumed_training_equals_uninterrupted"]
    outcomes = {(test.cls, test.name): test for test in run_session(pytester, "-k", " or ".join(checks))}
    assert {key: test.outcome for key, test in outcomes.items()} == {
        ("TestMixup", checks[0]): "passed", ("TestMixup", checks[1]): "passed",
        ("TestEntropyMixup", checks[0]): "failed", ("TestEntropyMixup", checks[1]): "failed"}
    assert "same seed, different weights" in outcomes["TestEntropyMixup", checks[0]].message


# -- F4 --------------------------------------------------------------------------------------------------


def test_a_model_stepping_an_optimiser_of_its_own_is_refused_at_its_first_step(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Before: trained and resumed to exit 0, the resumed run's Adam started afresh (weights 6e-3 apart)."""
    code, err = train("hiddenopt21", tmp_path / "out", data_root, capsys)
    assert_one_line_error(code, err, "HiddenOptVAE.training_step moved the parameter 'encoder.0.weight' in the "
                                     "run's first step, but the optimiser that holds it ('adam', from "
                                     "configure_optimizers) had not stepped",
                          "no checkpoint holds", "step the optimisers training_step is given",
                          "no checkpoint had been written yet")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json"]


def test_an_optimiser_of_the_models_own_over_part_of_it_is_refused_at_its_first_step(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The optimiser it is given steps every time, over the decoder alone. Before: trained, exit 0."""
    code, err = train("splitopt21", tmp_path / "out", data_root, capsys)
    assert_one_line_error(code, err, "SplitOptVAE.training_step moved the parameter 'encoder.0.weight' in the "
                                     "run's first step, but no optimiser from configure_optimizers holds it")


def test_an_optimiser_of_the_models_own_stepped_after_accumulating_is_refused_at_the_first_checkpoint(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Its first step moves no weight (gradients accumulate): refused before the first checkpoint, mid-epoch
    (step 5), no metric line or checkpoint written. Before: trained, exit 0."""
    code, _, err = run_main(["train", "latehiddenopt21", "--data-root", str(data_root), "--epochs", "1", *TINY,
                             "--checkpoint-every", "5", "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, "LateHiddenOptVAE.training_step moved the parameter 'encoder.0.weight' by "
                                     "step 5 of epoch 1, but the optimiser that holds it ('adam', from "
                                     "configure_optimizers) had not stepped")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json"]


def test_a_model_accumulating_gradients_before_stepping_a_stateless_optimiser_trains_and_resumes(
        models: None, data_root: Path, tmp_path: Path) -> None:
    """Steps 1 and 2 move nothing, and plain SGD holds no state even once stepped: no refusal, and a run
    interrupted at step 18 (where no gradient is held) resumes to the uninterrupted run."""
    start_run(config(data_root, "accumulating21"), OPTIONS, out=tmp_path / "reference")
    HiddenOptVAE.interrupt_at = 18
    with pytest.raises(Interrupted):
        start_run(config(data_root, "accumulating21"), OPTIONS, out=tmp_path / "run")
    HiddenOptVAE.interrupt_at = None
    state = load_checkpoint(tmp_path / "run")
    assert state["optimizers"]["sgd"]["state"] == {} and state["position"]["global_step"] == 18
    resume_run(tmp_path / "run")
    assert_same_run(tmp_path / "run", tmp_path / "reference")


def test_a_run_resumed_with_an_optimiser_of_the_models_own_is_refused_at_the_resumes_first_step(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Its checkpoint at step 17 is kept, and names the resume command. Before: resumed, exit 0."""
    HiddenOptVAE.interrupt_at = INTERRUPT_AT
    with pytest.raises(Interrupted):
        start_run(config(data_root, "switchingopt21"), OPTIONS, out=tmp_path / "run")
    HiddenOptVAE.interrupt_at, SwitchingOptVAE.switched = None, True
    kept = (tmp_path / "run" / FILENAME).read_bytes()
    code, _, err = run_main(["resume", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err.splitlines()[-1], "SwitchingOptVAE.training_step moved the parameter "
                                                      "'encoder.0.weight' in the first step this resume took (step 6 "
                                                      "of epoch 2), but the optimiser that holds it ('adam', from "
                                                      "configure_optimizers) had not stepped",
                          f"the last good checkpoint is kept at {tmp_path / 'run' / FILENAME}",
                          f"resume with: genzoo resume {tmp_path / 'run'}")
    assert (tmp_path / "run" / FILENAME).read_bytes() == kept


def test_parameters_after_training_sets_are_no_training_steps_move(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The review of the F4 fix: a weight ``after_training`` set by hand (no optimiser holds it) was refused in the
    final checkpoint's check as ``training_step moved the parameter ... by the end of epoch 1``, after the epoch's
    metric line; the run's last checkpoint was lost."""
    code, err = train("afterfit21", tmp_path / "out", data_root, capsys)
    assert code == 0, err
    state = load_checkpoint(tmp_path / "out" / FILENAME)["model_state"]
    assert state["encoder.0.weight"].abs().sum() > 0
