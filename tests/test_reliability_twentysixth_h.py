"""Plugins F6 of the twenty-fourth hostile pass, fixed by the twenty-sixth look: ``genzoo latent`` and ``genzoo
graph`` ran the model's ``encode``, ``decode`` and ``loss`` guarded only by ``blamed``: one that moved the working
directory had the files written in the other folder, ``wrote lat1: ...`` and exit 0, and no ``lat1``. They now run
under ``model_call``: the change is put back and named in one line. Each test failed before its fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import assert_one_line_error, data_root, run_main  # noqa: F401 - data_root is a fixture

from genzoo import hookimpl

TINY = ["--epochs", "1", "--batch-size", "16", "--train-limit", "64", "--test-limit", "20", "--latent", "2",
        "--device", "cpu"]


class WanderingVAE(VAE):
    """Moves to :attr:`elsewhere` in the method :attr:`method` names, once set."""

    elsewhere: Path | None = None
    method = ""

    def _maybe_move(self, method: str) -> None:
        if self.method == method and self.elsewhere is not None:
            os.chdir(self.elsewhere)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._maybe_move("encode")
        return super().encode(x)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._maybe_move("loss")
        return super().loss(x)


class WanderingPlugin:
    @hookimpl
    def register_models(self, register: Any) -> None:
        register("wandering26h", WanderingVAE)


@pytest.fixture
def elsewhere(genzoo_register: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(WanderingVAE, "method", "")
    monkeypatch.setattr(WanderingVAE, "elsewhere", folder)
    genzoo_register(WanderingPlugin(), "wandering26h")
    return folder


def test_latent_of_a_model_whose_encode_moves_the_working_directory_is_one_line(elsewhere, data_root, tmp_path,  # noqa: F811
                                                                                capsys, monkeypatch) -> None:
    """Before: ``wrote lat1: latent.png, interpolation.png, traversal.png, latent.json``, exit 0, the files under
    the other folder."""
    code, _, err = run_main(["train", "wandering26h", *TINY, "--data-root", str(data_root), "--out", "run"], capsys)
    assert code == 0, err
    monkeypatch.setattr(WanderingVAE, "method", "encode")
    code, _, err = run_main(["latent", "run", "--out", "lat1", "--pairs", "0", "--test-limit", "20", "--device",
                             "cpu"], capsys)
    assert_one_line_error(code, err, "WanderingVAE changed the working directory",
                          "while drawing the latent space; they are put back")
    assert Path.cwd() == tmp_path
    assert not (tmp_path / "lat1").exists() and not any(elsewhere.iterdir())


def test_graph_of_a_model_whose_loss_moves_the_working_directory_is_one_line(elsewhere, tmp_path, capsys,
                                                                             monkeypatch) -> None:
    """Before: ``wrote g.svg and g.png``, exit 0, both under the other folder."""
    pytest.importorskip("torchviz")
    monkeypatch.setattr(WanderingVAE, "method", "loss")
    code, _, err = run_main(["graph", "wandering26h", "--out", "g"], capsys)
    assert_one_line_error(code, err, "WanderingVAE.loss changed the working directory",
                          "while computing the loss to draw; they are put back")
    assert Path.cwd() == tmp_path and not any(elsewhere.iterdir())
