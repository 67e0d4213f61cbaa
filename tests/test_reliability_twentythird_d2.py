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
from reliability_support import (  # noqa: F401 - data_root is a fixture
    assert_one_line_error,
    data_root,
    run_main,
)

from genzoo import hookimpl
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
