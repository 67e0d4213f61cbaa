"""Samplers as plugins (issue 11 §1, issue 14's ``genzoo sample --sampler``): the AE's mixture as ``gmm``,
``normal`` as a VAE's own prior, FIDs labelled by sampler and extractor, old runs and eval.json still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from genzoo_plugins.samplers.gmm import GaussianMixture
from reliability_support import one_thread, run_main, write_fake_mnist  # noqa: F401 - a fixture
from test_security import assert_one_line_error, finished_run

from genzoo.building import load_model, load_split
from genzoo.checkpoint import load_checkpoint, save_checkpoint
from genzoo.plugin_registry import registry
from genzoo.seeding import seeded
from genzoo.train_config import TrainConfig
from genzoo.training import start_run

EVAL = ["--fid-samples", "20", "--iwae-k", "2", "--device", "cpu", "--test-limit", "20"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return write_fake_mnist(tmp_path_factory.mktemp("samplers") / "data")


@pytest.fixture(scope="module")
def ae_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished AE run whose gmm sampler fits 3 components (its --prior-components)."""
    return finished_run(data, tmp_path_factory.mktemp("ae") / "run", model="ae", prior_components=3)


@pytest.fixture(scope="module")
def gan_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = TrainConfig(model="gan", epochs=1, batch_size=10, device="cpu", data_root=str(data), test_limit=20)
    return start_run(config, {"latent": 2}, out=tmp_path_factory.mktemp("gan") / "run").run_dir


def former_ae_samples(run: Path, data: Path, n: int, seed: int) -> tuple[torch.Tensor, GaussianMixture]:
    """What the AE drew before samplers were plugins: its after_training fitted a mixture (seed 0) to the
    codes of the whole training split, and its sample(n) decoded draws from it under the seed."""
    model = load_model(run)
    train = load_split("mnist", "train", str(data), None, torch.device("cpu"))
    codes = torch.cat([model.encode(x) for x in train.batches(1000)]).detach()
    prior = GaussianMixture(model.config.prior_components, model.config.latent)
    prior.fit(codes, generator=torch.Generator().manual_seed(0))
    with seeded(torch.device("cpu"), seed), torch.no_grad():
        return model.decode(prior.sample(n)), prior


def test_the_gmm_sampler_reproduces_the_ae_s_former_samples_and_old_runs_still_load(ae_run, data, tmp_path,
                                                                                     capsys):
    """Before: the AE kept its fitted mixture as prior.* buffers and sampled from it itself.
    After: the gmm sampler fits the same mixture on demand; an old run's prior.* weights are dropped on load."""
    former, prior = former_ae_samples(ae_run, data, 6, seed=7)
    for args in ([], ["--sampler", "gmm"]):  # gmm is the AE's default sampler
        out = tmp_path / f"new{len(args)}.npz"
        code, _, err = run_main(["sample", str(ae_run), "-n", "6", "--seed", "7", "--out", str(out), *args], capsys)
        assert code == 0, err
        assert torch.equal(torch.from_numpy(np.load(out)["images"]), former)
    model = load_model(ae_run)
    assert model.sampler_options("gmm") == {"components": 3}  # --prior-components stays the run's gmm default
    sampler = registry().build_sampler("gmm", model, "ae", **model.sampler_options("gmm"))
    assert sampler.description() == "decodes draws from a 3-component Gaussian mixture fitted to its training codes"

    # A run from before: its checkpoint holds the mixture as prior.* buffers; it loads and samples alike.
    checkpoint = ae_run / "checkpoint.pt"
    state = load_checkpoint(checkpoint)
    state["model_state"].update({f"prior.{k}": v for k, v in prior.state_dict().items()})
    save_checkpoint(checkpoint, state)
    assert any(key.startswith("prior.") for key in load_checkpoint(checkpoint)["model_state"])
    out = tmp_path / "old.npz"
    code, _, err = run_main(["sample", str(ae_run), "-n", "6", "--seed", "7", "--out", str(out)], capsys)
    assert code == 0, err
    assert torch.equal(torch.from_numpy(np.load(out)["images"]), former)
    with pytest.raises(RuntimeError, match="unexpected posterior.scale"):  # only the retired keys are dropped
        model.load_state_dict({**model.state_dict(), "posterior.scale": torch.zeros(1)})


def test_the_normal_sampler_on_a_vae_equals_the_vae_s_own_prior():
    """N(0, I) codes decoded are what a VAE's own sample draws, under the same seed."""
    torch.manual_seed(0)
    vae = registry().build_model("vae", (1, 28, 28), latent=3, hidden=16).eval()
    normal = registry().build_sampler("normal", vae, "vae")
    own = registry().build_sampler("model", vae, "vae")
    draws = []
    for draw in (normal.sample, own.sample, vae.sample):
        with seeded(torch.device("cpu"), 5), torch.no_grad():
            draws.append(draw(9))
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])


def test_an_unknown_sampler_is_one_line_and_writes_nothing(ae_run, tmp_path, capsys):
    """Before: no --sampler option (click's usage error). After: one line naming the closest sampler."""
    before = sorted(p.name for p in ae_run.iterdir())
    out = tmp_path / "x.png"
    code, _, err = run_main(["sample", str(ae_run), "--sampler", "gmn", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "unknown sampler 'gmn'", "did you mean 'gmm'")
    code, _, err = run_main(["eval", str(ae_run), "--sampler", "normal,gmn", *EVAL], capsys)
    assert_one_line_error(code, err, "unknown sampler 'gmn'")
    code, _, err = run_main(["eval", str(ae_run), "--sampler", "normal,", *EVAL], capsys)
    assert_one_line_error(code, err, "--sampler takes registered sampler names separated by commas")
    assert not out.exists() and sorted(p.name for p in ae_run.iterdir()) == before


def test_a_sampler_that_needs_codes_on_a_gan_is_one_line(gan_run, tmp_path, capsys):
    """Before: no --sampler. After: a GAN cannot encode, so gmm and normal are refused in one line, before any file."""
    before = sorted(p.name for p in gan_run.iterdir())
    for sampler in ("gmm", "normal"):
        code, _, err = run_main(["sample", str(gan_run), "--sampler", sampler, "--out", str(tmp_path / "x.npz")],
                                capsys)
        assert_one_line_error(code, err, f"sampler {sampler!r} cannot draw from model 'gan'", "cannot encode")
        code, _, err = run_main(["eval", str(gan_run), "--sampler", sampler, *EVAL], capsys)
        assert_one_line_error(code, err, f"sampler {sampler!r} cannot draw from model 'gan'")
    assert sorted(p.name for p in gan_run.iterdir()) == before
    ae = registry().model("ae")
    assert registry().sampler("model").unsupported(ae) == "it has no sampler of its own (Model.sample)"


def test_each_fid_is_labelled_and_one_sampler_s_fid_survives_an_eval_with_another(ae_run, tmp_path, capsys,
                                                                                   monkeypatch):
    """FIDs are keyed extractor/sampler in eval.json and the table; an eval with normal keeps gmm's FID."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    code, out, err = run_main(["eval", str(ae_run), "--sampler", "normal,gmm", *EVAL], capsys)
    assert code == 0, err
    saved = json.loads((ae_run / "eval.json").read_text())
    assert set(saved["fid"]) == {"mnist/normal", "mnist/gmm"}
    assert {k: (v["sampler"], v["features"]) for k, v in saved["fid"].items()} == {
        "mnist/normal": ("normal", "mnist"), "mnist/gmm": ("gmm", "mnist")}
    assert saved["samplers"]["gmm"].startswith("decodes draws from a 3-component Gaussian mixture")
    assert "sampler normal" in out and "sampler gmm" in out
    gmm = saved["fid"]["mnist/gmm"]

    code, _, err = run_main(["eval", str(ae_run), "--sampler", "normal", *EVAL], capsys)
    assert code == 0, err
    again = json.loads((ae_run / "eval.json").read_text())
    assert again["fid"]["mnist/gmm"] == gmm and "fid.mnist/gmm" in again["kept"]
    assert again["fid"]["mnist/normal"]["fid"] == saved["fid"]["mnist/normal"]["fid"]  # the same seed


def test_an_eval_json_from_before_samplers_is_read_with_the_model_s_default_sampler(ae_run, tmp_path, capsys,
                                                                                   monkeypatch):
    """Before: FIDs keyed by extractor alone ("mnist"). After: read as the default sampler's ("mnist/gmm") and kept."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    code, _, err = run_main(["eval", str(ae_run), *EVAL], capsys)
    assert code == 0, err
    saved = json.loads((ae_run / "eval.json").read_text())
    old = {**saved, "fid": {"mnist": {k: v for k, v in saved["fid"]["mnist/gmm"].items() if k != "sampler"}}}
    old.pop("samplers")
    old.pop("kept", None)
    (ae_run / "eval.json").write_text(json.dumps(old))
    code, _, err = run_main(["eval", str(ae_run), *EVAL[:1], "0", *EVAL[2:]], capsys)
    assert code == 0, err
    kept = json.loads((ae_run / "eval.json").read_text())
    assert kept["fid"] == {"mnist/gmm": {**old["fid"]["mnist"], "sampler": "gmm"}}
    assert "fid.mnist/gmm" in kept["kept"]


def test_compare_measures_each_sampler_where_it_can_and_says_why_not(data, tmp_path, capsys, monkeypatch):
    """Before: no --sampler. After: each model's FID per sampler that can draw from it, n/a with the reason else."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    code, _, err = run_main(["compare", "ae", "gan", "--epochs", "1", "--latent", "2", "--batch-size", "10",
                             "--device", "cpu", "--data-root", str(data), "--train-limit", "40", "--test-limit", "20",
                             "--fid-samples", "10", "--iwae-k", "2", "--sampler", "model,gmm",
                             "--out", str(tmp_path / "cmp")], capsys)
    assert code == 0, err
    results = {r["model"]: r for r in json.loads((tmp_path / "cmp" / "results.json").read_text())["models"]}
    assert set(results["ae"]["fid"]) == {"mnist/gmm"} and set(results["gan"]["fid"]) == {"mnist/model"}
    assert results["ae"]["unavailable"]["sampler model"] == (
        "sampler 'model' cannot draw from ae: it has no sampler of its own (Model.sample)")
    assert "cannot encode" in results["gan"]["unavailable"]["sampler gmm"]
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "sampler gmm" in report and "sampler model" in report


def test_a_model_whose_default_sampler_is_not_registered_is_refused_before_any_run_folder(data, tmp_path, capsys,
                                                                                         genzoo_register):
    """Before samplers were plugins there was nothing to name. After: one line before any folder, not after training
    (its samples.png would need the sampler)."""
    from genzoo_plugins.ae import AE

    from genzoo import hookimpl

    class Elsewhere(AE):
        default_sampler = "flow"

    class Plugin:
        @hookimpl
        def register_models(self, register):
            register("elsewhere", Elsewhere)

    genzoo_register(Plugin(), "elsewhere")
    code, _, err = run_main(["train", "elsewhere", "--epochs", "1", "--latent", "2", "--data-root", str(data),
                             "--device", "cpu", "--out", str(tmp_path / "runs")], capsys)
    assert_one_line_error(code, err, "unknown sampler 'flow'")
    assert not (tmp_path / "runs").exists()
