"""Reliability: state that escaped the state checks (twentieth hostile pass, plugins F3 and F7).

F3: a registered loss that cannot be deep-copied (it holds a ``threading.Lock``), or whose deep copy is itself, was
shared by the model, the state checks' copies and every fresh build, so a call count it kept escaped every check and a
resumed run differed from one never stopped, exit 0: it is refused in one line naming the loss, before any folder.
F7: an optimiser from ``configure_optimizers`` keeping state in plain attributes (a Lookahead-style ``Adam`` subclass's
slow weights and step count) trained and resumed with exit 0, the resumed run differing: the trainer holds each
optimiser to a fresh one given its state_dict after the first step and before every checkpoint. Each test failed
before its fix (docs/reliability.md, the rows of the twentieth pass).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from genzoo_plugins.vae import VAE
from reliability_support import (  # noqa: F401 - data_root is a fixture
    Steered,
    assert_one_line_error,
    assert_same_run,
    data_root,
    reset_steering,
    run_main,
)

from genzoo import hookimpl
from genzoo.checkpoint import FILENAME, load_checkpoint
from genzoo.loss import Loss

TINY = ["--batch-size", "20", "--train-limit", "100", "--test-limit", "20", "--device", "cpu", "--latent", "2",
        "--hidden", "16"]


def train(model: str, data_root: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str,
          epochs: int = 1) -> tuple[int, str, str]:
    return run_main(["train", model, *TINY, "--epochs", str(epochs), "--data-root", str(data_root), "--out", str(out),
                     *extra], capsys)


# -- F3: a loss that cannot be deep-copied ------------------------------------------------------------------


def _bce(logits: torch.Tensor, x: torch.Tensor, calls: int) -> torch.Tensor:
    """The VAE's BCE, weighing more after 15 calls with gradients (an annealed weight, as the hostile pass's)."""
    weight = 1.0 + 0.05 * max(0, calls - 15)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits.flatten(1), x.flatten(1), reduction="none")
    return weight * bce.sum(dim=1)


class LockedBCE(Loss):
    """Counts its calls under a lock (a common "thread-safe" pattern): a lock cannot be deep-copied."""

    name, kind, description = "locked-bce", "reconstruction", "bce counting its calls under a lock"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0

    def __call__(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.calls += torch.is_grad_enabled()
            return _bce(logits, x, self.calls)


class SelfCopyBCE(Loss):
    """Counts its calls; its deep copy is itself (a "singleton")."""

    name, kind, description = "selfcopy-bce", "reconstruction", "bce whose deep copy is itself"

    def __init__(self) -> None:
        self.calls = 0

    def __deepcopy__(self, memo: dict[int, object]) -> SelfCopyBCE:
        return self

    def __call__(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.calls += torch.is_grad_enabled()
        return _bce(logits, x, self.calls)


class CopiedLockBCE(LockedBCE):
    """A lock as the refusal advises: each deep copy makes a lock of its own."""

    name = "copied-lock-bce"

    def __deepcopy__(self, memo: dict[int, object]) -> CopiedLockBCE:
        copied = type(self)()
        copied.calls = self.calls
        return copied


class LossPlugin:
    @hookimpl
    def register_losses(self, register):
        for loss in (LockedBCE(), SelfCopyBCE(), CopiedLockBCE()):
            register(loss.name, loss)


@pytest.mark.parametrize("loss, why", [
    ("locked-bce", "loss 'locked-bce' (LockedBCE) cannot be deep-copied (TypeError: cannot pickle '_thread.lock' "
                   "object): each model is handed a copy of its own"),
    ("selfcopy-bce", "loss 'selfcopy-bce' (SelfCopyBCE) is its own deep copy (a __deepcopy__ returning self?), so "
                     "every model would share it"),
])
def test_f3_a_loss_that_cannot_be_deep_copied_is_refused_before_the_run_folder(loss, why, genzoo_register, data_root,
                                                                               tmp_path, capsys):
    """Before: the model and every copy the state checks made shared the registered instance, and its count with it:
    the run trained, exit 0 (resumed, it ended otherwise than one never stopped)."""
    genzoo_register(LossPlugin(), "f3-losses")
    code, _, err = train("vae", data_root, tmp_path / "run", capsys, "--loss", loss)
    assert_one_line_error(code, err, why, "make it copyable (create a lock or open file when first used, or define "
                                          "__deepcopy__ to give a new one)")
    assert not (tmp_path / "run").exists()


def test_f3_a_loss_holding_a_lock_that_it_copies_anew_is_each_models_own(genzoo_register):
    genzoo_register(LossPlugin(), "f3-losses")
    from genzoo.plugin_registry import registry

    first, second = (registry().build_model("vae", (1, 28, 28), reconstruction_loss="copied-lock-bce")
                     for _ in range(2))
    mine, theirs = first.losses["reconstruction_loss"], second.losses["reconstruction_loss"]
    assert isinstance(mine, CopiedLockBCE) and mine is not theirs and mine.lock is not theirs.lock


# -- F7: an optimiser keeping state outside its state_dict ---------------------------------------------------


class LookaheadAdam(torch.optim.Adam):
    """Adam with Lookahead (every ``k`` steps the weights go half-way back to the slow ones), the slow weights and
    the step count in plain attributes, as many recipes keep them; ``k`` and ``alpha`` are settings."""

    start = 1  #: Adam's step from which it keeps slow weights and counts

    def __init__(self, params, **options) -> None:
        super().__init__(params, **options)
        self.k, self.alpha = 3, 0.5
        if self.start == 1:
            self.slow: dict[torch.Tensor, torch.Tensor] = {}
            self.k_count = 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        params = [p for group in self.param_groups for p in group["params"]]
        if int(self.state[params[0]]["step"]) < self.start:
            return loss
        self.k_count = self.__dict__.get("k_count", 0) + 1
        for p in params:
            slow = self.__dict__.setdefault("slow", {}).setdefault(p, p.detach().clone())
            if self.k_count % self.k == 0:
                slow.add_(p - slow, alpha=self.alpha)
                p.copy_(slow)
        return loss


class LateLookaheadAdam(LookaheadAdam):
    """Keeps its slow weights and count from Adam's step 8 on (attributes made then)."""

    start = 8


class KeptLookaheadAdam(torch.optim.Adam):
    """Lookahead as the refusal advises: the slow weights in ``self.state`` (by parameter), the count Adam's own."""

    def __init__(self, params, **options) -> None:
        super().__init__(params, **options)
        self.k, self.alpha = 3, 0.5

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                slow = state.setdefault("slow", p.detach().clone())
                if int(state["step"]) % self.k == 0:
                    slow.add_(p - slow, alpha=self.alpha)
                    p.copy_(slow)
        return loss


class LookaheadVAE(VAE):
    optimizer: type[torch.optim.Adam] = LookaheadAdam

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer(self.parameters(), lr=self.config.lr)}


class LookVAE(Steered, LookaheadVAE):
    """Its Lookahead optimiser steered (:class:`Steered`: a Ctrl-C at a chosen step)."""


class LateLookVAE(LookVAE):
    optimizer = LateLookaheadAdam


class KeptLookVAE(LookVAE):
    optimizer = KeptLookaheadAdam


class LookPlugin:
    @hookimpl
    def register_models(self, register):
        register("look-vae", LookVAE)
        register("late-look-vae", LateLookVAE)
        register("kept-look-vae", KeptLookVAE)


@pytest.fixture
def looks(genzoo_register):
    reset_steering()
    genzoo_register(LookPlugin(), "f7-looks")
    yield
    for cls in (LookVAE, LateLookVAE, KeptLookVAE):
        cls.steps, cls.interrupt_at = 0, None


def test_f7_an_optimiser_keeping_state_in_plain_attributes_is_refused_after_the_first_step(looks, data_root,
                                                                                             tmp_path, capsys):
    """Before: it trained with exit 0, and a run interrupted and resumed ended otherwise than one never stopped."""
    run = tmp_path / "run"
    code, _, err = train("look-vae", data_root, run, capsys)
    assert code == 1 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line == (
        "Error: LookVAE's optimiser 'adam' (LookaheadAdam) keeps state outside its state_dict: after the run's first "
        "training step, it and a fresh LookaheadAdam given its state_dict differ in slow, k_count (plain "
        "attributes of the optimiser), so no checkpoint holds them and every resume would start them afresh; keep an "
        "optimiser's state in self.state (by parameter), or put it in what its state_dict returns and take it back "
        f"in load_state_dict; no checkpoint had been written yet, so {run} (its config.json alone) cannot be resumed: "
        "once the model is mended, train again into another folder"), line
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_f7_optimiser_state_that_starts_later_is_refused_before_the_next_checkpoint(looks, data_root, tmp_path,
                                                                                    capsys):
    """Its state starts at step 8: epoch 1's checkpoint (step 5) is written and kept, epoch 2's refused."""
    run = tmp_path / "run"
    code, _, err = train("late-look-vae", data_root, run, capsys, epochs=3)
    assert code == 1 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("Error: LateLookVAE's optimiser 'adam' (LateLookaheadAdam) keeps state outside its "
                           "state_dict: after step 10 of the run, it and a fresh LateLookaheadAdam given its "
                           "state_dict differ in k_count, slow (plain attributes of the optimiser)"), line
    assert line.endswith(f"the last good checkpoint is kept at {run / FILENAME}, and what followed it is trained "
                         f"again once the model is mended: resume with: genzoo resume {run}"), line
    assert load_checkpoint(run / FILENAME)["position"]["global_step"] == 5


def test_f7_an_optimiser_keeping_its_state_in_self_state_resumes_as_a_run_never_stopped(looks, data_root, tmp_path,
                                                                                        capsys):
    """No refusal of what a checkpoint holds, nor of settings in plain attributes (``k``, ``alpha``)."""
    code, _, err = train("kept-look-vae", data_root, tmp_path / "reference", capsys, epochs=2)
    assert code == 0, err
    KeptLookVAE.steps, KeptLookVAE.interrupt_at = 0, 7
    code, _, err = train("kept-look-vae", data_root, tmp_path / "run", capsys, epochs=2)
    assert code == 130, err
    KeptLookVAE.interrupt_at = None
    code, _, err = run_main(["resume", str(tmp_path / "run"), "--data-root", str(data_root)], capsys)
    assert code == 0, err
    assert_same_run(tmp_path / "run", tmp_path / "reference")


def test_f7_a_dict_keyed_by_the_optimisers_parameters_is_matched_by_their_places():
    """Slow weights a careful optimiser keeps by parameter, and takes back in load_state_dict, are not refused for
    being keyed by other (the fresh copy's) parameters; other values are."""
    import copy

    from genzoo.building import unkept_optimizer_state

    trained = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    mine, theirs = LookaheadAdam(trained.parameters()), LookaheadAdam(copy.deepcopy(trained).parameters())
    for optimizer in (mine, theirs):
        held = [p for group in optimizer.param_groups for p in group["params"]]
        optimizer.slow = {p: p.detach().clone() for p in held}
        optimizer.k_count = 4
    assert unkept_optimizer_state(mine, theirs) == []
    theirs.slow[theirs.param_groups[0]["params"][2]].add_(1.0)
    theirs.k_count = 0
    assert unkept_optimizer_state(mine, theirs) == ["slow", "k_count"]
