"""Found by the twelfth look (eleventh hostile pass): honest mistakes in a model's code.

F6: a ``loss`` that returns the bare objective tensor, or computes it under ``torch.no_grad()``,
ended training in a traceback at the first step. F4: a ``decode`` that scales its codes in
place (``z *= 2`` where ``z * 2`` was meant) changed the codes ``genzoo latent`` draws. F2: a
FIFO named ``./matplotlibrc`` hung every command. F10: an ``after_training`` that edits the
training split in place changed what the default sampler fits. Each test failed before its
fix (docs/reliability.md, "Found by the twelfth look").
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from genzoo_plugins.ae.model import AE
from genzoo_plugins.vae.model import VAE
from PIL import Image
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
)

from genzoo import hookimpl
from genzoo.evaluation import latent_space
from genzoo.plugin_registry import registry


class TensorLossVAE(VAE):
    """Returns the objective itself, not a dict of per-image losses."""

    def loss(self, x: torch.Tensor) -> Any:
        return super().loss(x)["nelbo"]


class NoGradVAE(VAE):
    """Computes its loss as ``evaluate`` does, under ``torch.no_grad()``."""

    def loss(self, x: torch.Tensor) -> Any:
        with torch.no_grad():
            return super().loss(x)


class DoublingVAE(VAE):
    """Scales its codes in place on the way into the decoder."""

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        z *= 2.0
        return super().decode_logits(z)


@hookimpl
def register_models(register: Any) -> None:
    register("tensorloss", TensorLossVAE)
    register("nogradloss", NoGradVAE)
    register("doubling", DoublingVAE)


@pytest.fixture
def mistakes(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "twelfth", "test-twelfth")


def train_args(model: str, data: Path, out: Path) -> list[str]:
    return ["train", model, "--data-root", str(data), "--epochs", "1", "--batch-size", "40", "--train-limit", "40",
            "--test-limit", "20", "--latent", "2", "--hidden", "16", "--device", "cpu", "--out", str(out)]


@pytest.mark.parametrize(("model", "needle"), [
    ("tensorloss", "TensorLossVAE.loss (through evaluate) returned a Tensor, not a dict of per-image values"),
    ("nogradloss", "NoGradVAE.loss returned its objective 'nelbo' without a gradient to follow"),
])
def test_a_loss_of_the_wrong_kind_is_one_line(mistakes: None, data_root: Path, tmp_path: Path, model: str,
                                              needle: str, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_main(train_args(model, data_root, tmp_path / "run"), capsys)
    assert_one_line_error(code, err, needle)


def test_a_decode_that_edits_its_codes_in_place_leaves_the_callers_codes_alone(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from genzoo.building import load_model, load_split

    code, _, err = run_main(train_args("doubling", data_root, tmp_path / "run"), capsys)
    assert code == 0, err
    model = load_model(tmp_path / "run")
    test = load_split("mnist", "test", str(data_root), 20, torch.device("cpu"))
    codes = latent_space.test_codes(model, test)
    kept = codes.clone()
    latent_space.decode(model, codes, batch_size=7)  # several batches: each a view of ``codes`` before the fix
    assert torch.equal(codes, kept)
    assert registry().entry("model", "doubling").obj is DoublingVAE


# -- F2: ./matplotlibrc, read when matplotlib is imported ---------------------------------------------------------


def test_a_fifo_named_matplotlibrc_in_the_current_folder_is_never_read(tmp_path: Path) -> None:
    """Another user's FIFO in a shared current folder hung every command before its first word; a link to
    /dev/zero filled the memory. matplotlib is imported from ``/``, and the current folder is given back."""
    import os
    import subprocess
    import sys

    from reliability_support import subprocess_env

    os.mkfifo(tmp_path / "matplotlibrc")
    code = ("import os, genzoo.figures, genzoo.evaluation.report as r; "
            "print(os.getcwd(), r.plt is genzoo.figures.pyplot)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(tmp_path), "True"]


# -- F10: after_training's split -----------------------------------------------------------------------------------


class CentringAE(AE):
    """Centres the training images in place when training ends (``sub_`` where ``-`` was meant)."""

    def after_training(self, train: Any) -> None:
        train.images.sub_(train.images.mean())
        super().after_training(train)


@hookimpl
def register_models_f10(register: Any) -> None:
    register("centring-ae", CentringAE)


def test_after_training_cannot_change_the_training_split(genzoo_register: Any, data_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    """The AE's default sampler fits to the training split after the hook: with the split edited, its
    samples.png was drawn from a mixture of centred images (84% of the pixels differed from its twin's)."""
    genzoo_register(types.SimpleNamespace(register_models=register_models_f10), "twelfth-f10", "test-twelfth-f10")
    pictures = []
    for model in ("ae", "centring-ae"):
        args = train_args(model, data_root, tmp_path / model)
        code, _, err = run_main([*args[:args.index("--hidden")], *args[args.index("--hidden") + 2:]], capsys)
        assert code == 0, err
        pictures.append(np.asarray(Image.open(tmp_path / model / "samples.png").convert("L"), dtype=np.int16))
    assert pictures[0].shape == pictures[1].shape
    differ = float((np.abs(pictures[0] - pictures[1]) > 8).mean())
    assert differ < 0.05, differ  # the titles name the models; the grids are the same


# -- minor: GENZOO_JOIN_TIMEOUT under --nproc ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "0", "1" * 30, "999999999999999999"])
def test_a_bad_join_timeout_is_one_line_before_any_rank_starts(data_root: Path, tmp_path: Path, value: str,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture) -> None:
    """Each rank read it and said so (two lines, then the launcher's); a 30-digit value was 'not an integer';
    an 18-digit one passed, and each rank failed to make a timedelta of it."""
    monkeypatch.setenv("GENZOO_JOIN_TIMEOUT", value)
    args = train_args("ae", data_root, tmp_path / "run")
    code, _, err = run_main([*args[:args.index("--hidden")], *args[args.index("--hidden") + 2:], "--nproc", "2"],
                            capsys)
    assert_one_line_error(code, err, f"GENZOO_JOIN_TIMEOUT={value!r} in the environment is not an integer from 1 "
                          "to 1000000000")
    assert not (tmp_path / "run").exists()
