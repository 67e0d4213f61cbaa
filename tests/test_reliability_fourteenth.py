"""Found by the fourteenth look (thirteenth hostile pass): honest mistakes in a model's methods.

F5: ``sampler_options`` that falls off its end (None) for the samplers it does not name broke
every command that builds a sampler with a traceback. F9: ``configure_optimizers`` returning a
bare optimiser (Lightning's style) or a list was a traceback. F3: ``log_importance_weights`` of
shape ``(k, batch)`` or ``(batch, 1)`` gave a wrong IWAE NLL labelled with k. Each test failed
before its fix (docs/reliability.md, "Found by the fourteenth look").
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

from genzoo import GenzooError, hookimpl
from genzoo.building import build_sampler, load_split
from genzoo.evaluation.likelihood import iwae_nll
from genzoo.plugin_registry import registry

SHAPE = (1, 28, 28)


class OptionsNoneVAE(VAE):
    def sampler_options(self, sampler: str) -> Any:
        if sampler == "gmm":
            return {"components": 3}


class BareAdamVAE(VAE):
    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class ListAdamVAE(VAE):
    def configure_optimizers(self) -> Any:
        return [torch.optim.Adam(self.parameters(), lr=1e-3)]


class TransposedWeightsVAE(VAE):
    def log_importance_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return super().log_importance_weights(x, k).T


class OneWeightVAE(VAE):
    def log_importance_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return super().log_importance_weights(x, k)[:, :1]


@hookimpl
def register_models(register: Any) -> None:
    register("optnone", OptionsNoneVAE)
    register("bareadam", BareAdamVAE)
    register("listadam", ListAdamVAE)
    register("transiw", TransposedWeightsVAE)
    register("oneiw", OneWeightVAE)


@pytest.fixture
def mistakes(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "fourteenth", "test-fourteenth")


def test_sampler_options_that_are_not_a_dict_are_one_line(mistakes: None) -> None:
    model = registry().build_model("optnone", SHAPE, latent=2, hidden=16)
    with pytest.raises(GenzooError, match=r"OptionsNoneVAE.sampler_options\('normal'\) returned None, not a dict"):
        build_sampler(model, "optnone", "normal", lambda: pytest.fail("normal fits to nothing"))


@pytest.mark.parametrize(("model", "returned"), [("bareadam", "Adam ("), ("listadam", "[Adam (")])
def test_optimisers_that_are_not_a_dict_are_one_line(mistakes: None, data_root: Path, tmp_path: Path, model: str,
                                                      returned: str, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_main(["train", model, "--data-root", str(data_root), "--epochs", "1", "--batch-size", "40",
                             "--train-limit", "40", "--test-limit", "20", "--latent", "2", "--hidden", "16",
                             "--device", "cpu", "--out", str(tmp_path / "run")], capsys)
    line = assert_one_line_error(code, err, ".configure_optimizers returned ", "not a dict of torch optimisers by name")
    assert returned in line, line
    assert not (tmp_path / "run").exists()  # refused before the run folder (test_reliability_fifteenth_models.py)


@pytest.mark.parametrize(("model", "shape"), [("transiw", "(5, 20)"), ("oneiw", "(20, 1)")])
def test_importance_weights_of_another_shape_are_refused(mistakes: None, data_root: Path, model: str,
                                                         shape: str) -> None:
    built = registry().build_model(model, SHAPE, latent=2, hidden=16)
    test = load_split("mnist", "test", str(data_root), 20, torch.device("cpu"))
    with pytest.raises(GenzooError, match=rf"log_importance_weights gave {shape.replace('(', '[(]').replace(')', '[)]')}"
                                          r" for 20 images and 5 samples"):
        iwae_nll(built, test, 5)
