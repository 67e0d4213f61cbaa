"""Found by the sixth look (fifth hostile pass): sampler faults (F2, F3, F4).

A sampler plugin's ``fit``, ``sample`` or ``description`` that raises is one line naming
it, its plugin and distribution; every ``sample(n)`` is checked for ``n`` images of the
model's sample shape; the ``gmm`` sampler refuses codes it cannot fit, and a sampler that
cannot draw costs a finished run only its ``samples.png``. Each test failed before its fix
(docs/reliability.md, "Found by the sixth look").
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import assert_one_line_error, run_main, write_fake_mnist
from test_security import finished_run

from genzoo import GenzooError, Sampler, hookimpl

PLUGIN = "sixthb"
DISTRIBUTION = "test-sixthb"
EVAL = ["--test-limit", "20", "--iwae-k", "2", "--device", "cpu"]


class BadFit(Sampler):
    needs_fit = True

    def fit(self, train: Any) -> None:
        raise ValueError("fit exploded")

    def sample(self, n: int) -> torch.Tensor:
        return torch.rand(n, *self.model.sample_shape)


class BadSample(Sampler):
    def sample(self, n: int) -> torch.Tensor:
        raise SystemExit("sample exploded")


class WrongShape(Sampler):
    def sample(self, n: int) -> torch.Tensor:
        return torch.rand(n, 3, 28, 28)


class FewSamples(Sampler):
    def sample(self, n: int) -> torch.Tensor:
        return torch.rand(max(n // 2, 1), *self.model.sample_shape)


@hookimpl
def register_samplers(register: Any) -> None:
    register("badfit", BadFit)
    register("badsample", BadSample)
    register("wrongshape", WrongShape)
    register("fewsamples", FewSamples)


@pytest.fixture
def faulty(genzoo_register: Any) -> None:
    """The faulty samplers above registered as plugin ``sixthb`` for one test."""
    genzoo_register(types.SimpleNamespace(register_samplers=register_samplers), PLUGIN, DISTRIBUTION)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sixthb")
    return finished_run(write_fake_mnist(root / "data"), root / "run")


WHAT = {"badfit": "failed while fitting: ValueError: fit exploded",
        "badsample": "failed while drawing 4 samples: SystemExit: sample exploded",
        "wrongshape": "returned shape (4, 3, 28, 28) when asked for 4 samples, not (4, 1, 28, 28)",
        "fewsamples": "returned shape (2, 1, 28, 28) when asked for 4 samples, not (4, 1, 28, 28)"}


@pytest.mark.parametrize("sampler", sorted(WHAT))
def test_genzoo_sample_with_a_faulty_sampler_is_one_line_naming_it(faulty, vae_run, sampler, tmp_path, capsys):
    """F3, F4: a raising fit/sample, a wrong count or shape: one line, and no file written."""
    out = tmp_path / "s.npz"
    code, _, err = run_main(["sample", str(vae_run), "--sampler", sampler, "-n", "4", "--out", str(out),
                             "--data-root", str(vae_run.parent / "data")], capsys)
    assert_one_line_error(code, err, f"sampler {sampler!r} from plugin {PLUGIN!r} "
                                     f"(distribution {DISTRIBUTION!r})", WHAT[sampler])
    assert not out.exists()


@pytest.mark.parametrize("sampler", ["badfit", "badsample", "fewsamples"])
def test_eval_with_a_faulty_sampler_files_no_fid_and_says_why(faulty, vae_run, sampler, tmp_path, capsys):
    """F3, F4: no FID of samples never drawn; the FID and the sampling speed are n/a with the reason."""
    run = tmp_path / "run"
    run.mkdir()
    for file in vae_run.iterdir():
        (run / file.name).write_bytes(file.read_bytes())
    code, _, err = run_main(["eval", str(run), "--sampler", sampler, "--fid-samples", "10", "--features", "mnist",
                             "--data-root", str(vae_run.parent / "data"), *EVAL], capsys)
    assert code == 0, err
    result = json.loads((run / "eval.json").read_text())
    assert result["fid"] == {} and result.get("sampling") is None, result
    reason = result["unavailable"][f"sampler {sampler}"]
    assert f"sampler {sampler!r} from plugin {PLUGIN!r}" in reason, result["unavailable"]
    assert "Traceback" not in err


def test_a_faulty_description_is_one_line(faulty, vae_run, monkeypatch):
    from genzoo import plugin_registry
    from genzoo.building import load_model

    monkeypatch.setattr(FewSamples, "description", lambda self, short=False: 1 / 0)
    sampler = plugin_registry.registry().build_sampler("fewsamples", load_model(vae_run), "vae")
    with pytest.raises(GenzooError, match="failed while describing itself: ZeroDivisionError"):
        sampler.description()


# -- F2: the gmm sampler on codes it cannot fit --------------------------------------------


@pytest.mark.parametrize("codes", [torch.full((50, 4), float("nan")), torch.full((50, 4), float("inf")),
                                   torch.randn(50, 1, dtype=torch.float64).expand(50, 4) * 1e20])
def test_the_gmm_refuses_codes_it_cannot_fit_in_one_line(codes):
    from genzoo_plugins.samplers.gmm import GaussianMixture

    with pytest.raises(GenzooError, match="cannot fit a Gaussian mixture"):
        GaussianMixture(3, 4).fit(codes)


@pytest.fixture
def huge_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gmm fits codes of about 1e20 in one direction (as a diverged ``train ae --lr 1e3`` gives)."""
    from genzoo_plugins.samplers.gmm import GaussianMixture

    fit = GaussianMixture.fit
    monkeypatch.setattr(GaussianMixture, "fit", lambda self, x, **kw: fit(self, x[:, :1].double().expand_as(x) * 1e20, **kw))


def test_a_run_whose_gmm_cannot_fit_is_complete_without_samples_png(huge_codes, tmp_path, capsys):
    """F2: training's end warns and draws no samples.png; resume finds the run complete; eval needs no fit."""
    data = write_fake_mnist(tmp_path / "data")
    base = ["--epochs", "1", "--batch-size", "40", "--latent", "2", "--hidden", "16", "--test-limit", "20",
            "--device", "cpu", "--data-root", str(data)]
    code, _, err = run_main(["train", "ae", *base, "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert "cannot fit a Gaussian mixture" in err and "no samples.png" in err and "Traceback" not in err
    run = tmp_path / "run"
    assert not (run / "samples.png").exists() and (run / "reconstructions.png").exists()
    code, out, err = run_main(["resume", str(run), "--device", "cpu", "--data-root", str(data)], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert "already complete" in out and "no samples.png" in err, out + err
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", "--data-root", str(data), *EVAL], capsys)
    assert code == 0, err
    result = json.loads((run / "eval.json").read_text())
    assert "cannot fit a Gaussian mixture" in result["unavailable"]["sampling"], result["unavailable"]


def compare_args(data: Path, out: Path, *models: str, fid: str = "0") -> list[str]:
    return ["compare", *models, "--epochs", "1", "--latent", "2", "--batch-size", "20", "--device", "cpu",
            "--data-root", str(data), "--train-limit", "40", "--test-limit", "20", "--fid-samples", fid,
            "--features", "mnist", "--iwae-k", "2", "--out", str(out)]


def test_compare_with_a_faulty_sampler_finishes_with_the_fid_n_a(faulty, tmp_path, capsys):
    """F3: compare (and compare --resume) of a sampler whose sample raises: FID n/a with the reason, no traceback."""
    data = write_fake_mnist(tmp_path / "data")
    out = tmp_path / "cmp"
    code, _, err = run_main([*compare_args(data, out, "vae", fid="10"), "--sampler", "badsample"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert f"sampler 'badsample' from plugin {PLUGIN!r}" in err and "SystemExit: sample exploded" in err, err
    (out / "compare.png").unlink()
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert (out / "compare.png").exists()


def test_compare_of_a_model_whose_gmm_cannot_fit_finishes(huge_codes, tmp_path, capsys):
    """F2: train, evaluation and compare.png of an AE whose codes the gmm refuses: warnings, no traceback."""
    data = write_fake_mnist(tmp_path / "data")
    out = tmp_path / "cmp"
    code, _, err = run_main(compare_args(data, out, "ae"), capsys)
    assert code == 0 and "Traceback" not in err, err
    assert "cannot fit a Gaussian mixture" in err and (out / "compare.png").exists(), err
