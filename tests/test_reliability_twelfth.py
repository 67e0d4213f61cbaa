"""Found by the twelfth look (eleventh hostile pass): honest mistakes in a model's code.

F6: a ``loss`` that returns the bare objective tensor, or computes it under ``torch.no_grad()``,
ended training in a traceback at the first step. F4: a ``decode`` that scales its codes in
place (``z *= 2`` where ``z * 2`` was meant) changed the codes ``genzoo latent`` draws. Each
test failed before its fix (docs/reliability.md, "Found by the twelfth look").
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
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
    ("tensorloss", "TensorLossVAE.loss returned a Tensor, not a dict of per-image values"),
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
