"""Found by the twenty-first hostile pass on evaluation (plugins F7, F8, M2; files M2).

F7: a model whose log importance weights had the right mean and a large spread (+C on even draws, -C on odd
ones) passed the check of the weights' mean against the -ELBO, and eval filed an IWAE NLL of -29,742.8 beside a
-ELBO of 283.5, exit 0. F8: a ``decode`` (or ``encode``, or a sampler) that refills one output buffer had every
batch genzoo kept be that buffer: the reconstruction FID and confidence measured the last batch repeated. M2: a
model's own ``sample`` that changed the model was blamed on genzoo's built-in sampler ``model`` and the Sampler
contract. Files M2: a damaged FID statistics cache file was said twice, as a warning and then as the ``Error:``
line. Each test failed before its fix (docs/reliability.md, the rows of the twenty-first hostile pass).
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
    one_thread,
    run_main,
)

from genzoo import hookimpl
from genzoo.evaluation import latent_space
from genzoo.sharing import draw_samples

SHAPE = (1, 28, 28)
#: Buffers a :class:`FarBufferVAE` refills, kept off the model (the sampler guard would see one on it).
FAR: dict[int, dict[str, torch.Tensor]] = {}


def refilled(owner: object, name: str, values: torch.Tensor) -> torch.Tensor:
    """``values`` copied into the one buffer ``owner`` keeps under ``name`` (made again for another shape)."""
    kept = FAR.setdefault(id(owner), {})
    if name not in kept or kept[name].shape != values.shape:
        kept[name] = torch.empty_like(values)
    return kept[name].copy_(values)


class FarBufferVAE(VAE):
    """``decode``, ``encode`` and ``sample`` return one buffer each, refilled at each call (a careless speed-up)."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return refilled(self, "decode", super().decode(z))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return refilled(self, "encode", super().encode(x))

    def sample(self, n: int) -> torch.Tensor:
        return refilled(self, "sample", super().sample(n))


class ReuseVAE(VAE):
    """The hostile pass's model: once :attr:`reuse` is set (after training: the state check before a run refuses
    it), ``decode`` refills ``self._out``, so its own ``sample`` changes the model."""

    reuse = False

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        images = super().decode(z)
        if not self.reuse:
            return images
        if getattr(self, "_out", None) is None or self._out.shape != images.shape:
            self._out = torch.empty_like(images)
        return self._out.copy_(images)


class SpreadVAE(VAE):
    """The hostile pass's weights: the VAE's own, +C on even draws and -C on odd ones (a zero-mean error)."""

    spread = 300.0

    def log_importance_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        weights = super().log_importance_weights(x, k)
        sign = torch.ones_like(weights)
        sign[:, 1::2] = -1
        return weights + self.spread * sign


class HalvesVAE(SpreadVAE):
    """The same error on the first half of the draws and the second: halves interleaved would not see it."""

    spread = 30.0

    def log_importance_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        weights = VAE.log_importance_weights(self, x, k)
        sign = torch.ones_like(weights)
        sign[:, k // 2:] = -1
        return weights + self.spread * sign


@hookimpl
def register_models(register: Any) -> None:
    register("reusevae24", ReuseVAE)
    register("spreadvae24", SpreadVAE)
    register("halvesvae24", HalvesVAE)


@pytest.fixture
def mistakes(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "twentyfourth-c3", "test-twentyfourth-c3")


def pair() -> tuple[VAE, FarBufferVAE]:
    """A VAE and a :class:`FarBufferVAE` of the same weights."""
    torch.manual_seed(0)
    model = VAE.build(VAE.Config(latent=2, hidden=16), SHAPE)
    reusing = FarBufferVAE.build(FarBufferVAE.Config(latent=2, hidden=16), SHAPE)
    reusing.load_state_dict(model.state_dict())
    return model.eval(), reusing.eval()


# -- F8: a result buffer refilled at each call -------------------------------------------------------------------


def test_decoded_batches_are_each_kept_when_decode_refills_one_buffer() -> None:
    """Before: of 25 codes decoded 10 at a time, the first two batches were the second one (the same buffer)."""
    model, reusing = pair()
    codes = torch.randn(25, 2)
    assert torch.equal(latent_space.decode(reusing, codes, 10), latent_space.decode(model, codes, 10))


def test_test_codes_are_each_kept_when_encode_refills_one_buffer() -> None:
    """The codes the interpolation metrics and the latent pictures start from: before, the last batch repeated."""
    from genzoo.data import TensorSplit

    model, reusing = pair()
    split = TensorSplit(torch.rand(25, *SHAPE))
    assert torch.equal(latent_space.test_codes(reusing, split, 10), latent_space.test_codes(model, split, 10))


def test_drawn_samples_are_a_copy_of_their_own() -> None:
    """``genzoo sample``'s images: before, the model's buffer itself, changed by its next call."""
    _, reusing = pair()
    images = draw_samples(reusing, 4, 0, "farbuffer")
    kept = images.clone()
    reusing.sample(4)
    assert torch.equal(images, kept)


# -- F7: importance weights of the right mean and a spread that differs by draw ----------------------------------


def evaluated(model: str, data: Path, run: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    """A tiny run of ``model`` evaluated (no FID, K = 4, 100 test images): its eval.json and eval's stderr."""
    code, _, err = run_main(["train", model, "--data-root", str(data), "--epochs", "1", "--batch-size", "40",
                             "--train-limit", "200", "--test-limit", "100", "--latent", "2", "--hidden", "16",
                             "--device", "cpu", "--out", str(run)], capsys)
    assert code == 0, err
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", "--iwae-k", "4", "--test-limit", "100",
                             "--data-root", str(data), "--device", "cpu"], capsys)
    assert code == 0, err
    return json.loads((run / "eval.json").read_text()), err


@pytest.mark.parametrize("model", ["spreadvae24", "halvesvae24"])
def test_importance_weights_that_differ_by_draw_file_no_iwae_nll(
        mistakes: None, data_root: Path, tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``iwae.nll`` far below the -ELBO (negative, for a Bernoulli decoder) filed, exit 0, no word."""
    result, err = evaluated(model, data_root, tmp_path / "run", capsys)
    assert result["iwae"] is None
    reason = result["unavailable"]["iwae"]
    name = {"spreadvae24": "SpreadVAE", "halvesvae24": "HalvesVAE"}[model]
    assert reason.startswith(f"{name}.log_importance_weights gives weights that differ by draw: minus the mean of "
                             "draw "), reason
    assert reason.endswith("every draw's weight computed alike"), reason
    assert result["negative_elbo"] is not None
    assert f"genzoo: warning: {reason}" in err.splitlines(), err


def test_weights_that_differ_by_draw_fail_the_conformance_kits_check() -> None:
    """The kit holds a model to eval's checks (``check_batch_weights``); a correct VAE's weights pass."""
    from genzoo.errors import PluginFault
    from genzoo.evaluation.likelihood import check_batch_weights

    torch.manual_seed(0)
    model = VAE.build(VAE.Config(latent=2, hidden=16), SHAPE).eval()
    x = torch.rand(64, *SHAPE)
    with torch.no_grad():
        weights = model.log_importance_weights(x, 8)
        nelbo = float(model.negative_elbo(x)["nelbo"].double().mean())
    check_batch_weights("VAE", weights, nelbo)
    sign = torch.ones_like(weights)
    sign[:, 1::2] = -1
    with pytest.raises(PluginFault, match="differ by draw"):
        check_batch_weights("SpreadVAE", weights + 300 * sign, nelbo)


# -- M2: a model's own sample that changes the model ------------------------------------------------------------


def test_a_models_sample_that_changes_the_model_is_blamed_on_the_models_sample(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: ``sampler 'model' from plugin 'samplers' (distribution 'genzoo') changed the model's _out while
    drawing 10 samples; they are put back (the Sampler contract: ...)``: genzoo's own sampler named."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "reusevae24", "--data-root", str(data_root), "--epochs", "1", "--batch-size",
                             "40", "--train-limit", "120", "--test-limit", "40", "--latent", "2", "--hidden", "16",
                             "--device", "cpu", "--out", str(run)], capsys)
    assert code == 0, err
    monkeypatch.setattr(ReuseVAE, "reuse", True)
    code, _, err = run_main(["eval", str(run), "--fid-samples", "10", "--features", "mnist", "--iwae-k", "2",
                             "--test-limit", "40", "--data-root", str(data_root), "--device", "cpu"], capsys)
    assert code == 0, err
    line = ("ReuseVAE.sample (sampler 'model') changed the model's _out while drawing 10 samples; they are put back "
            "(the Model contract: a model's sample and sampling_description leave the model, torch's defaults and "
            "the process's settings alone)")
    assert f"genzoo: warning: {line}" in err.splitlines(), err
    assert json.loads((run / "eval.json").read_text())["unavailable"]["fid"] == line


# -- files M2: a damaged FID statistics file ---------------------------------------------------------------------


def empty(path: Path) -> None:
    path.write_bytes(b"")


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("damage", [empty, truncated, folder])
def test_a_damaged_fid_statistics_file_is_said_once(damage: Any, data_root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: ``genzoo: warning: FID cache file ... is not valid genzoo reference statistics: ...`` (the FID of the
    sampler, n/a with it as the reason), then ``Error: `` and the same text, when the interpolation's FID read it."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--data-root", str(data_root), "--epochs", "1", "--batch-size", "40",
                             "--train-limit", "120", "--test-limit", "40", "--latent", "2", "--hidden", "16",
                             "--device", "cpu", "--out", str(run)], capsys)
    assert code == 0, err
    evaluation = ["eval", str(run), "--fid-samples", "10", "--features", "mnist", "--iwae-k", "2", "--test-limit",
                  "40", "--data-root", str(data_root), "--device", "cpu"]
    code, _, err = run_main(evaluation, capsys)
    assert code == 0, err
    [statistics] = (tmp_path / "cache" / "fid").glob("mnist-*/genzoo-mnist-test-40-*.npz")
    damage(statistics)
    written = (run / "eval.json").read_bytes()
    code, _, err = run_main(evaluation, capsys)
    lines = [line for line in err.splitlines() if "━" not in line]  # the progress bars aside
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith(f"Error: FID cache file {statistics} is not valid genzoo reference statistics: "), err
    assert lines[0].endswith("; delete it to have them computed again"), err
    assert (run / "eval.json").read_bytes() == written
