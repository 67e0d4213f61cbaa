"""Reconstruction, negative ELBO, IWAE NLL and cost: the maths, the n/a rules, eval.json."""

from __future__ import annotations

import json
import math

import pytest
import torch
from evaluation_support import single_thread, trained  # noqa: F401 - fixture
from torch.distributions import Normal

from genzoo.data import TensorSplit
from genzoo.errors import GenzooError
from genzoo.evaluation import (
    EvalConfig,
    evaluate_model,
    evaluate_run,
    iwae_nll,
    iwae_unsupported,
    negative_elbo,
    reconstruction_metrics,
    training_throughput,
)
from genzoo.evaluation.report import NA, markdown_table, table_columns
from genzoo.plugin_registry import registry


@pytest.fixture(scope="module")
def models(mnist):
    images = mnist["train"].images[:6000]
    return {name: trained(name, images, steps=150) for name in ("ae", "vae", "gan")}


@pytest.fixture(scope="module")
def test_split(mnist):
    return mnist["test"].take(500)


def test_iwae_nll_is_at_most_the_negative_elbo_and_tightens_with_k(models, test_split):
    vae = models["vae"]
    nelbo = negative_elbo(vae, test_split, seed=0)["nelbo"]
    k1 = iwae_nll(vae, test_split, k=1, seed=0)
    k5 = iwae_nll(vae, test_split, k=5, seed=0)
    k50 = iwae_nll(vae, test_split, k=50, seed=0)
    # K = 1 estimates the ELBO itself (a Monte Carlo KL instead of the closed form).
    assert abs(k1 - nelbo) < 1.0, (k1, nelbo)
    assert k50 < k5 < nelbo, (k50, k5, nelbo)
    assert nelbo - k50 > 1.0  # a real tightening, not noise


def test_log_importance_weights_match_torch_distributions(models, test_split):
    vae = models["vae"]
    x = test_split.images[:8]
    torch.manual_seed(3)
    log_w = vae.log_importance_weights(x, k=4)
    torch.manual_seed(3)
    mu, logvar = vae.posterior(x)
    std = torch.exp(0.5 * logvar)
    z = mu + torch.randn(4, *mu.shape) * std
    probs = torch.sigmoid(vae.decode_logits(z.reshape(-1, mu.shape[1]))).view(4, 8, -1)
    flat = x.flatten(1)
    log_px = (flat * probs.log() + (1 - flat) * (1 - probs).log()).sum(-1)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = Normal(mu, std).log_prob(z).sum(-1)
    torch.testing.assert_close(log_w, (log_px + log_pz - log_qz).T, rtol=1e-4, atol=1e-2)


def test_negative_elbo_parts_add_up_and_are_seeded(models, test_split):
    a = negative_elbo(models["vae"], test_split, seed=0)
    b = negative_elbo(models["vae"], test_split, seed=0)
    assert a == b
    assert math.isclose(a["nelbo"], a["bce"] + a["kl"], rel_tol=1e-6)
    assert a["kl"] > 0 and a["images"] == len(test_split)


def test_reconstruction_matches_the_models_own_logit_based_numbers(models, test_split):
    ae = models["ae"]
    ours = reconstruction_metrics(ae, test_split)
    with torch.no_grad():
        own = {k: float(v.sum()) / len(test_split) for k, v in ae.evaluate(test_split.images).items()}
    assert ours["mse_per_pixel"] == pytest.approx(own["mse"] / 1, rel=1e-5)
    assert ours["bce_nats_per_image"] == pytest.approx(own["bce"], abs=0.05)
    # Decoding the mean beats decoding a sampled code for the VAE.
    vae = reconstruction_metrics(models["vae"], test_split)
    assert vae["bce_nats_per_image"] < negative_elbo(models["vae"], test_split)["bce"]


def test_what_a_model_cannot_do_is_none_with_a_reason_and_prints_as_na(models, test_split, mnist, tmp_path):
    config = EvalConfig(fid_samples=200, iwae_k=5, sampling_images=500, cache=str(tmp_path))
    # The AE's gmm sampler fits to training codes; 1,000 of them keep that EM fit to a few seconds.
    train = TensorSplit(mnist["train"].images[:1000])
    results = [evaluate_model(models[name], test_split, config, name=name, train=lambda: train)
               for name in ("ae", "vae", "gan")]
    ae, vae, gan = results
    assert gan["reconstruction"] is None and gan["negative_elbo"] is None and gan["iwae"] is None
    assert set(gan["unavailable"]) == {"reconstruction", "negative_elbo", "iwae", "interpolation"}
    assert gan["interpolation"] is None and gan["unavailable"]["interpolation"] == "gan cannot encode"
    for r in (ae, vae):  # models that encode: their midpoints measured, on as many pairs as FID samples
        assert r["interpolation"]["pairs"] == 200 and r["interpolation"]["midpoint_fid"]["samples"] == 200
        assert 0 < r["interpolation"]["midpoint_confidence"] <= 1
    assert (ae["interpolation"]["interpolation"], vae["interpolation"]["interpolation"]) == ("linear", "spherical")
    assert ae["negative_elbo"] is None and "no likelihood" in ae["unavailable"]["iwae"]
    assert vae["unavailable"] == {} and vae["iwae"]["k"] == 5
    for r, sampler in zip(results, ("gmm", "model", "model")):  # each model's default sampler
        assert r["fid"][f"mnist/{sampler}"]["samples"] == 200 and r["fid"][f"mnist/{sampler}"]["fid"] > 0
        assert r["sampling"]["images_per_s"] > 0 and r["parameters"] > 0 and r["sampling"]["sampler"] == sampler
    assert "Gaussian mixture fitted to its training codes" in ae["samplers"]["gmm"]

    columns = dict(table_columns(results))
    for header in ("recon MSE\nper pixel", "recon BCE\nnats/img", "-ELBO nats/img\n(BCE + KL)"):
        assert columns[header][2] == NA  # the GAN's row
    assert columns["IWAE NLL\nnats/img (K=5)"] == [NA, f"{vae['iwae']['nll']:.1f}", NA]
    assert columns["FID mnist\nsampler model, 200 samples"] == [NA, f"{vae['fid']['mnist/model']['fid']:,.2f}",
                                                            f"{gan['fid']['mnist/model']['fid']:,.2f}"]
    assert columns["FID mnist\nsampler gmm, 200 samples"][1:] == [NA, NA]
    assert columns["interp. FID mnist\n200 midpoints"] == [f"{ae['interpolation']['midpoint_fid']['fid']:,.2f}",
                                                          f"{vae['interpolation']['midpoint_fid']['fid']:,.2f}", NA]
    assert columns["midpoint\nconfidence"][2] == NA
    gan_row = markdown_table(results).splitlines()[-1].split(" | ")
    assert gan_row[4:8] == [NA] * 4  # reconstruction MSE, BCE, -ELBO, IWAE
    assert not any(cell.strip("| ").replace("0", "").replace(".", "") == "" for cell in gan_row)  # no 0 cell
    assert iwae_unsupported(models["gan"]) == "the model offers no likelihood"


def test_a_vae_trained_on_a_distance_reports_no_elbo_and_no_likelihood_with_the_reason(test_split):
    """mse is no negative log-likelihood: mse + KL is no bound, so it is n/a, not a wrong '-ELBO'."""
    vae = registry().build_model("vae", (1, 28, 28), reconstruction_loss="mse", latent=4, hidden=16)
    result = evaluate_model(vae, test_split.take(50), EvalConfig(fid_samples=0, iwae_k=2, sampling_images=10))
    assert result["negative_elbo"] is None and result["iwae"] is None
    for key, what in (("negative_elbo", "ELBO"), ("iwae", "likelihood")):
        assert result["unavailable"][key] == (f"VAE has no {what}: its reconstruction loss 'mse' is not "
                                              "the decoder's negative log-likelihood")
    assert set(result["seconds"]) == {"reconstruction", "sampling speed"}
    with pytest.raises(GenzooError, match="no likelihood"):
        vae.log_importance_weights(test_split.images[:2], 3)


def test_training_throughput_is_total_images_over_total_step_time():
    records = [
        {"epoch": 1, "train_images_per_s": 100.0, "train_seconds": 10.0, "eval_seconds": 1.0},
        {"epoch": 2, "train_images_per_s": 300.0, "train_seconds": 10.0, "eval_seconds": 1.0},
    ]
    result = training_throughput(records)
    assert result["images_per_s"] == pytest.approx(200.0)
    assert result["images"] == 4000 and result["epochs"] == 2 and result["eval_seconds"] == 2.0
    assert training_throughput([]) is None


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_evaluate_run_writes_eval_json_and_refuses_an_unfinished_run(chdir_tmp):
    from genzoo.train_config import TrainConfig
    from genzoo.training import start_run

    run = start_run(TrainConfig(model="ae", epochs=1, train_limit=300, test_limit=100, device="cpu"),
                    {"latent": 8}, out="run").run_dir
    config = EvalConfig(fid_samples=100, sampling_images=200, cache=str(chdir_tmp / "cache"))
    result = evaluate_run(run, config, test_limit=150)
    saved = json.loads((run / "eval.json").read_text())
    assert saved["test_images"] == 150 and saved["model"] == "ae"
    assert saved["reconstruction"]["mse_per_pixel"] == pytest.approx(result["reconstruction"]["mse_per_pixel"])
    assert saved["training"]["epochs"] == 1 and saved["fid"]["mnist/gmm"]["samples"] == 100
    assert not list(run.glob(".*.tmp"))  # written atomically, nothing left behind

    description = json.loads((run / "config.json").read_text())
    description["train_config"]["epochs"] = 3
    (run / "config.json").write_text(json.dumps(description))
    # The checkpoint records the plan it was trained under: a config edited to ask for more
    # epochs is named as such (an unfinished run is refused in test_run_files.py).
    with pytest.raises(GenzooError, match="other training settings .*epochs 1 vs 3"):
        evaluate_run(run, config)


def test_interpolation_fids_use_the_evaluations_extractor_inception_under_the_protocol(
        models, mnist, tmp_path, inception_weights_file):
    """Ghosh et al.'s REC and Interp. columns are Inception FIDs: measured with the mnist features they had no
    counterpart (the leaderboard of issue 11). Each number names its extractor; the table keeps them apart."""
    test = mnist["test"].take(12)
    config = EvalConfig(features="inception", fid_samples=6, iwae_k=2, sampling_images=10, cache=str(tmp_path),
                        samplers=["normal"])
    vae = evaluate_model(models["vae"], test, config, name="vae")
    interpolation = vae["interpolation"]
    for key, images in (("midpoint_fid", 6), ("reconstruction_fid", 12)):
        assert interpolation[key]["features"] == "inception" and interpolation[key]["samples"] == images
        assert "inception-v3-compat" in interpolation[key]["extractor"] and interpolation[key]["fid"] > 0
    assert vae["fid"]["inception/normal"]["samples"] == 6
    # Against the mnist extractor on the same pairs: another number, in a column of its own.
    ae = evaluate_model(models["ae"], test, EvalConfig(features="mnist", fid_samples=6, iwae_k=2, sampling_images=10,
                                                       cache=str(tmp_path), samplers=["normal"]), name="ae")
    assert ae["interpolation"]["midpoint_fid"]["features"] == "mnist"
    columns = dict(table_columns([ae, vae]))
    assert columns["interp. FID inception\n6 midpoints"] == [NA, f"{interpolation['midpoint_fid']['fid']:,.2f}"]
    assert columns["interp. FID mnist\n6 midpoints"] == [f"{ae['interpolation']['midpoint_fid']['fid']:,.2f}", NA]
