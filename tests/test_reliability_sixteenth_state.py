"""Found by the sixteenth look (fourteenth hostile pass, F4, F4b, F7, M4): a model's state outside its state_dict.

F4: a tensor given to the optimiser by hand (not among ``parameters()``) trained, but no checkpoint held
it: eval, resume and export used its initial value. F4b: a layer kept in a plain Python list, the same,
with fresh random weights on each load. F7: the AE's ``retired_state`` dropped the ``prior.`` keys of a
subclass's own ``prior`` module, so its run could never be loaded. M4: a state_dict mismatch was cut at
torch's first line and never named the tensor. Each test failed before its fix (docs/reliability.md,
"Found by the fifteenth look (fourteenth hostile pass)").
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.ae.model import AE
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
)

from genzoo import GenzooError, hookimpl, load_model
from genzoo.building import check_state_complete
from genzoo.checkpoint import load_checkpoint, save_checkpoint
from genzoo.data import TensorSplit
from genzoo.plugin_registry import registry

SHAPE = (1, 28, 28)
TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2", "--hidden", "16"]


class LooseScaleVAE(VAE):
    """A learnable temperature kept as a plain tensor and handed to the optimiser by hand."""

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.temperature = torch.ones(1, 3, requires_grad=True)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return super().decode_logits(z) * self.temperature.mean()

    def configure_optimizers(self) -> Any:
        return {"adam": torch.optim.Adam([*self.parameters(), self.temperature], lr=self.config.lr)}


class ListLayerVAE(VAE):
    """An extra layer kept in a plain Python list, not an nn.ModuleList."""

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.extra = [torch.nn.Linear(config.latent, config.latent)]

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return super().decode_logits(self.extra[0](z))


class DropoutVAE(VAE):
    """Dropout in its decoder: random in training, not in eval mode; all its state is in its state_dict."""

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.drop = torch.nn.Dropout(0.5)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return super().decode_logits(self.drop(z))


class LearnedPriorAE(AE):
    """An AE subclass with a learned prior module named ``prior`` (the AE's retired_state is ``prior.``)."""

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.prior = torch.nn.Linear(config.latent, config.latent)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().loss(x)
        z = self.encode(x)
        return {**out, "loss": out["loss"] + (self.prior(z) - z).pow(2).sum(1)}


@hookimpl
def register_models(register: Any) -> None:
    register("loosevae16", LooseScaleVAE)
    register("listvae16", ListLayerVAE)
    register("dropvae16", DropoutVAE)
    register("priorae16", LearnedPriorAE)


@pytest.fixture
def models(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "sixteenth", "test-sixteenth")


@pytest.mark.parametrize("command", ["train", "compare", "nproc"])
def test_a_tensor_optimised_outside_the_models_parameters_is_refused_before_any_folder(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, command: str) -> None:
    out = tmp_path / "out"
    args = {"train": ["train", "loosevae16"], "nproc": ["train", "loosevae16", "--nproc", "2"],
            "compare": ["compare", "loosevae16", "--fid-samples", "0"]}[command]
    tiny = TINY[:-4] if command == "compare" else TINY  # compare sets a model's options with --set
    code, _, err = run_main([*args, "--data-root", str(data_root), *tiny, "--out", str(out)], capsys)
    assert_one_line_error(code, err, "LooseScaleVAE.configure_optimizers gives optimiser 'adam' a tensor of "
                                     "shape (1, 3) that is not one of LooseScaleVAE.parameters()", "nn.Parameter")
    assert not out.exists()


def test_a_layer_kept_in_a_plain_list_is_refused_before_the_run_folder(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    code, _, err = run_main(["train", "listvae16", "--data-root", str(data_root), *TINY, "--out", str(out)], capsys)
    assert_one_line_error(code, err, "ListLayerVAE computes with state its state_dict does not hold",
                          "nn.ModuleList", "register_buffer", "nn.Parameter")
    assert not out.exists()


@pytest.mark.parametrize(("name", "options"), [
    ("ae", {"latent": 2, "hidden": 16}), ("vae", {"latent": 2, "hidden": 16}), ("gan", {"latent": 2}),
    ("conv-ae", {"latent": 2}), ("conv-vae", {"latent": 2}), ("dcgan", {"latent": 2}), ("dropvae16", {"latent": 2}),
])
def test_every_built_in_model_passes_the_state_check_and_leaves_the_rng_alone(
        models: None, name: str, options: dict[str, Any]) -> None:
    train = TensorSplit(torch.rand(8, *SHAPE))
    torch.manual_seed(3)
    model = registry().build_model(name, SHAPE, **options)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    state = torch.get_rng_state()
    check_state_complete(model, train)
    assert torch.equal(torch.get_rng_state(), state)  # training after it draws what it drew before
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_state_check_leaves_the_gpus_rng_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.manual_seed reseeds every GPU too, which the CPU-only fork would not put back."""
    seeded_gpus: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", seeded_gpus.append)
    model = registry().build_model("vae", SHAPE, latent=2, hidden=16)
    check_state_complete(model, TensorSplit(torch.rand(4, *SHAPE)))
    assert seeded_gpus == []


def test_the_state_check_sees_the_list_layer_directly(models: None) -> None:
    model = registry().build_model("listvae16", SHAPE, latent=2, hidden=16)
    with pytest.raises(GenzooError, match="ListLayerVAE computes with state its state_dict does not hold"):
        check_state_complete(model, TensorSplit(torch.rand(4, *SHAPE)))


def test_a_subclass_owning_a_module_named_after_retired_state_trains_and_loads(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    code, _, err = run_main(["train", "priorae16", "--data-root", str(data_root), *TINY, "--out", str(run)], capsys)
    assert code == 0, err
    trained = load_checkpoint(run / "checkpoint.pt")["model_state"]
    model = load_model(run)
    assert torch.equal(model.prior.weight, trained["prior.weight"])
    code, _, err = run_main(["eval", str(run), "--data-root", str(data_root), "--fid-samples", "0",
                             "--test-limit", "20", "--device", "cpu"], capsys)
    assert code == 0, err


def test_a_retired_key_the_model_does_not_hold_is_still_dropped() -> None:
    model = registry().build_model("ae", SHAPE, latent=2, hidden=16)
    model.load_state_dict({**model.state_dict(), "prior.means": torch.zeros(3, 2)})


@pytest.mark.parametrize(("change", "says"), [
    (lambda s: s.pop("mu_head.bias"), "missing mu_head.bias"),
    (lambda s: s.update({"extra.weight": torch.zeros(2)}), "unexpected extra.weight"),
    (lambda s: s.update({"mu_head.bias": torch.zeros(5)}), "misshapen mu_head.bias (saved (5,), model (2,))"),
    (lambda s: s.update({f"extra{i}": torch.zeros(1) for i in range(7)}),
     "unexpected extra0, extra1, extra2 and 4 more"),
])
def test_a_state_dict_mismatch_names_the_tensors_in_one_line(data_root: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture, change: Any,
                                                             says: str) -> None:
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--data-root", str(data_root), *TINY, "--out", str(run)], capsys)
    assert code == 0, err
    state = load_checkpoint(run / "checkpoint.pt")
    change(state["model_state"])
    save_checkpoint(run / "checkpoint.pt", state)
    code, _, err = run_main(["sample", str(run), "-n", "2", "--out", str(tmp_path / "s.npz")], capsys)
    assert_one_line_error(code, err, "does not fit its model: Error(s) in loading state_dict for VAE: " + says)
    code, _, err = run_main(["resume", str(run)], capsys)
    assert_one_line_error(code, err, "Error(s) in loading state_dict for VAE: " + says)
