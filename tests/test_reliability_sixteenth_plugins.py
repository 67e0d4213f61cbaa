"""Found by the sixteenth look (fourteenth hostile pass, F6, M8, M12): honest mistakes in plugins.

F6: a sampler whose ``fitted_state`` leaves out a tensor (the GMM with its weights forgotten) drew other
samples from the second command on (the cached fit) than the first (the fresh fit), same seed, no word.
M8: a str ``loss_names`` and ``evaluate`` returning floats were found only after the run folder was made
(left holding ``config.json`` alone). M12: a dataset whose ``sample_shape`` is a ``@property`` was a
TypeError traceback in ``train`` and ``genzoo plugins``. Each is in docs/reliability.md, "Found by the
fifteenth look (fourteenth hostile pass)".
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.ae.model import AE
from genzoo_plugins.datasets import MNIST
from genzoo_plugins.samplers import GMMSampler
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    assert_same_tensors,
    data_root,
    one_thread,
    run_main,
    without_timing,
)

import genzoo
from genzoo import GenzooError, hookimpl, sampler_cache
from genzoo.building import build_sampler
from genzoo.checkpoint import load_checkpoint
from genzoo.data import TensorSplit
from genzoo.plugin_registry import registry
from genzoo.run_folder import read_metrics

SHAPE = (1, 28, 28)
TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2"]


class ForgetfulGMM(GMMSampler):
    """The hostile pass's plugin: the mixture's weights left out of its fit, so a cached fit draws uniformly."""

    STATE = ("means", "scale_tril")

    def load_fitted_state(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.STATE:
            setattr(self.mixture, name, state[name].to(self.device))
        self.mixture.fitted = torch.tensor(True, device=self.device)


@hookimpl
def register_samplers(register: Any) -> None:
    register("forgetful16", ForgetfulGMM)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sampler_cache, "_warned", set())
    monkeypatch.setattr(sampler_cache, "_warned_samplers", set())
    return tmp_path / "cache" / "samplers"


def _draws(name: str, split: TensorSplit) -> torch.Tensor:
    """What a fresh command draws with sampler ``name``: the model built anew, the sampler from the cache if any."""
    torch.manual_seed(0)
    model = registry().build_model("ae", SHAPE, latent=2, hidden=16, prior_components=3).eval()
    sampler = build_sampler(model, "ae", name, lambda: split)
    torch.manual_seed(3)
    with torch.no_grad():
        return sampler.sample(16)


def test_a_fit_that_does_not_round_trip_is_not_cached_and_draws_alike_every_time(
        genzoo_register: Any, cache: Path, capsys: pytest.CaptureFixture) -> None:
    """F6: before, the first draw came from the fit and every later one from the incomplete cached fit (they
    differed by up to 0.16 per pixel); now the fit is not cached, and a warning names the sampler."""
    genzoo_register(types.SimpleNamespace(register_samplers=register_samplers), "forgetful16", "test-forgetful16")
    split = TensorSplit(torch.rand(60, *SHAPE, generator=torch.Generator().manual_seed(1)))
    first, second = _draws("forgetful16", split), _draws("forgetful16", split)
    assert torch.equal(first, second)
    assert not cache.exists() or not any(cache.iterdir())
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1, warnings  # once: the second command here is in the same process
    assert warnings[0].startswith("genzoo: warning: sampler 'forgetful16' from plugin 'forgetful16'")
    assert "its fitted_state does not capture its fit" in warnings[0]


def test_a_fit_that_round_trips_is_still_cached_without_a_word(cache: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    split = TensorSplit(torch.rand(60, *SHAPE, generator=torch.Generator().manual_seed(1)))
    first = _draws("gmm", split)
    assert len(list(cache.iterdir())) == 1
    assert torch.equal(first, _draws("gmm", split))
    assert capsys.readouterr().err == ""


class StrLossNamesAE(AE):
    """The hostile pass's plugin: ``("loss")`` is a string, not a tuple of one name."""

    loss_names = ("loss")  # type: ignore[assignment]

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": super().loss(x)["loss"]}


class EmptyLossNamesVAE(VAE):
    loss_names = ()


class FloatEvalVAE(VAE):
    """The hostile pass's plugin: ``evaluate`` gives batch means as floats, not per-image tensors."""

    def evaluate(self, x: torch.Tensor) -> dict[str, Any]:  # type: ignore[override]
        return {k: float(v.mean()) for k, v in super().evaluate(x).items()}


@hookimpl
def register_models(register: Any) -> None:
    register("strnames16", StrLossNamesAE)
    register("emptynames16", EmptyLossNamesVAE)
    register("floateval16", FloatEvalVAE)


@pytest.fixture
def mistakes(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "sixteenth", "test-sixteenth")


@pytest.mark.parametrize(("model", "says"), [
    ("strnames16", "StrLossNamesAE.loss_names is 'loss', not a non-empty tuple of str"),
    ("emptynames16", "EmptyLossNamesVAE.loss_names is (), not a non-empty tuple of str"),
    ("floateval16", "FloatEvalVAE.evaluate returned 'nelbo' of shape float, not one value per image (1,)"),
])
@pytest.mark.parametrize("command", [["train"], ["train", "--nproc", "2"], ["compare", "vae"]])
def test_model_mistakes_seen_without_training_are_refused_before_any_folder(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, model: str, says: str,
        command: list[str]) -> None:
    """M8: before, train made the run folder, then failed in the first step (a str loss_names, blamed on an
    objective 'l') or after the first epoch (evaluate's floats), leaving a folder resume could not continue."""
    out = tmp_path / "out"
    extra = ["--fid-samples", "0"] if command[0] == "compare" else []
    code, _, err = run_main([*command, model, "--data-root", str(data_root), *TINY, *extra, "--out", str(out)], capsys)
    assert_one_line_error(code, err, says)
    assert not out.exists()


def test_the_probe_of_evaluate_leaves_a_sound_run_as_it_was(data_root: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """The probe runs on its own RNG stream, in eval mode, without a gradient: a run is the same as before."""
    from genzoo import training

    runs = []
    for name, probe in (("probed", training.probed_evaluate), ("unprobed", lambda *args: set())):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(training, "probed_evaluate", probe)
            code, _, err = run_main(["train", "vae", "--data-root", str(data_root), *TINY,
                                     "--out", str(tmp_path / name)], capsys)
        assert code == 0, err
        runs.append(load_checkpoint(tmp_path / name / "checkpoint.pt"))
    assert_same_tensors(runs[0]["model_state"], runs[1]["model_state"], "model_state")
    assert_same_tensors(runs[0]["optimizers"], runs[1]["optimizers"], "optimizers")
    metrics = [without_timing(read_metrics(tmp_path / name)) for name in ("probed", "unprobed")]
    assert metrics[0] == metrics[1]


class PropShapeMNIST(MNIST):
    """The hostile pass's plugin: ``sample_shape`` as a property, which the class gives as a property object."""

    @property  # type: ignore[misc]
    def sample_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return SHAPE


@hookimpl
def register_datasets(register: Any) -> None:
    register("propshape16", PropShapeMNIST)


@pytest.fixture
def propshape(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_datasets=register_datasets), "propshape16", "test-propshape16")


SKIPPED = "dataset 'propshape16' declares sample_shape as a property, not a tuple of positive integers on its class"


def test_a_dataset_whose_sample_shape_is_a_property_is_refused_at_registration_in_train(
        propshape: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """M12: before, ``TypeError: 'property' object is not iterable`` (a traceback, in training.start_run)."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--dataset", "propshape16", "--data-root", str(data_root), *TINY,
                             "--out", str(run)], capsys)
    warning, error = err.strip().splitlines()
    assert warning.startswith("genzoo: warning: ") and SKIPPED in warning
    assert_one_line_error(code, error, "unknown dataset 'propshape16'")
    assert not run.exists()


@pytest.mark.parametrize("command", [["plugins"], ["list"]])
def test_a_dataset_whose_sample_shape_is_a_property_does_not_break_listing(
        propshape: None, command: list[str], capsys: pytest.CaptureFixture) -> None:
    """M12: before, ``genzoo plugins`` was the same TypeError traceback for every plugin's listing."""
    code, out, err = run_main(command, capsys)
    assert code == 0, err
    assert SKIPPED in err and "Traceback" not in err and "mnist" in out and "propshape16" not in out


def test_get_model_with_a_dataset_whose_sample_shape_is_a_property_is_a_genzoo_error(propshape: None) -> None:
    """M12: before, ``genzoo.get_model('vae', dataset=...)`` raised TypeError, not GenzooError."""
    with pytest.raises(GenzooError, match="unknown dataset 'propshape16'"):
        genzoo.get_model("vae", dataset="propshape16")
