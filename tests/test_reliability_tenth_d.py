"""Found by the tenth look (ninth hostile pass): a model whose ``decode`` gives images of another shape (F4).

An honest mistake: an MLP decoder's flat ``(n, 784)`` rows, or ``(n, 28, 28)`` without the
channel, returned by ``decode`` while ``reconstruct`` and ``sample`` give images. Training,
sampling and reconstructing are fine; the interpolation, which decodes codes itself, gets
no numbers then, and says why, while the rest of the evaluation stands. Each test failed
before its fix (docs/reliability.md, "Found by the tenth look").
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    data_root,
    evaluate,
    one_thread,
    run_main,
)
from test_security import finished_run

from genzoo import hookimpl

PLUGIN = "tenthd"


class RowsVAE(VAE):
    """``decode`` gives the decoder's flat rows; ``reconstruct`` and ``sample`` make images of them."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)).view(-1, *self.sample_shape)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.decode(torch.randn(n, self.config.latent, device=self.device)).view(n, *self.sample_shape)


class NoChannelVAE(RowsVAE):
    """``decode`` gives ``(n, 28, 28)``: the channel left out."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return super().decode(z).view(-1, *self.sample_shape[1:])


@hookimpl
def register_models(register: Any) -> None:
    register("rowsdec", RowsVAE)
    register("nochan", NoChannelVAE)


@pytest.fixture
def shaped(genzoo_register: Any) -> None:
    """The models above registered as plugin ``tenthd`` for one test."""
    genzoo_register(types.SimpleNamespace(register_models=register_models), PLUGIN, f"test-{PLUGIN}")


FOUND = {"rowsdec": "(10, 784)", "nochan": "(10, 28, 28)"}


@pytest.mark.usefixtures("shaped")
@pytest.mark.parametrize("model", ["rowsdec", "nochan"])
def test_eval_of_a_model_whose_decodes_have_another_shape_gives_the_interpolation_n_a(
        data_root: Path, model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """F4: all of eval's work, then ``Error: the mnist feature extractor takes uint8 (N, C, 28, 28) images, got
    (200, 784) torch.uint8`` (blaming the extractor), exit 1, no eval.json."""
    run = finished_run(data_root, tmp_path / "run", model=model)
    code, result, err = evaluate(run, data_root, "model", capsys)
    assert code == 0 and "Traceback" not in err, err
    assert result["interpolation"] is None and "mnist/model" in result["fid"], result
    assert result["reconstruction"] is not None and result["iwae"] is not None, result
    assert result["unavailable"]["interpolation"] == (
        f"model {model!r} produced decoded images of shape {FOUND[model]}, not (10, 1, 28, 28) (the Model "
        "contract: decode returns (batch, *sample_shape))"), result["unavailable"]
    assert "feature extractor" not in err, err


@pytest.mark.usefixtures("shaped")
def test_latent_of_a_model_whose_decodes_have_another_shape_names_decode(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """F4: ``genzoo latent`` blamed the feature extractor for the model's decode."""
    run = finished_run(data_root, tmp_path / "run", model="rowsdec")
    code, _, err = run_main(["latent", str(run), "--pairs", "10", "--out", str(tmp_path / "latent"), "--data-root",
                             str(data_root), "--test-limit", "20", "--device", "cpu"], capsys)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("Error: model 'RowsVAE' produced decoded images of shape ("), err
    assert "not (" in err and "decode returns (batch, *sample_shape)" in err, err


@pytest.mark.usefixtures("shaped")
def test_compare_with_a_model_whose_decodes_have_another_shape_finishes(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """F4: compare trained both, then stopped (``compare: models evaluated 0/2``) and so did every ``--resume``."""
    out = tmp_path / "cmp"
    code, _, err = run_main(["compare", "rowsdec", "vae", "--epochs", "1", "--latent", "2", "--batch-size", "20",
                             "--device", "cpu", "--data-root", str(data_root), "--train-limit", "40", "--test-limit",
                             "20", "--fid-samples", "10", "--features", "mnist", "--iwae-k", "2", "--out", str(out)],
                            capsys)
    assert code == 0 and "Traceback" not in err, err
    models = {m["model"]: m for m in json.loads((out / "results.json").read_text())["models"]}
    assert models["rowsdec"]["interpolation"] is None and models["vae"]["interpolation"] is not None, models
    assert "decode returns (batch, *sample_shape)" in models["rowsdec"]["unavailable"]["interpolation"]
