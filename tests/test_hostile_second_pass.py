"""Cases a second hostile pass found after the first round of issue-10 fixes.

Each was a traceback or a silently wrong number before; the eval.json ones are in
``test_hostile_runs.py``'s ``EVAL_EDITS``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from genzoo_plugins.samplers.gmm import GaussianMixture

from genzoo import GenzooError
from genzoo.evaluation.frechet import _arrays_digest, _Invalid
from genzoo.evaluation.report import markdown_table


def fitted_mixture() -> GaussianMixture:
    codes = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    return GaussianMixture(3, 2).fit(codes, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("log_weight", [1e38, math.inf, math.nan, -math.inf])
def test_an_ae_mixture_whose_weights_are_no_distribution_is_one_line(log_weight):
    """Before: a finite but huge log-weight (1e38, exp overflows) gave 'invalid multinomial distribution'."""
    prior = fitted_mixture()
    assert prior.sample(5).shape == (5, 2)
    prior.log_weights.fill_(log_weight)
    with pytest.raises(GenzooError, match="mixture weights are not a distribution"):
        prior.sample(5)


def test_a_markdown_label_with_a_pipe_stays_in_its_column():
    """Before: a --from-runs folder named 'pi|pe' shifted every column of its row in report.md."""
    result = {"model": "vae (pi|pe/vae)", "parameters": 10, "fid": {}, "seconds": {"FID": 1.0}}
    table = markdown_table([result])
    head, _, row = table.splitlines()
    assert row.count(" | ") == head.count(" | ") and "pi\\|pe" in row


@pytest.mark.parametrize("sigma", ["negative", "asymmetric"])
def test_a_forged_statistics_file_whose_sigma_is_no_covariance_is_refused(sigma, tmp_path, monkeypatch):
    """Before: sigma = -I with a recomputed digest gave FID 398.68 instead of 1512.97, exit 0."""
    from genzoo.evaluation import frechet

    d = 4
    mu = np.zeros(d)
    bad = -np.eye(d) if sigma == "negative" else np.eye(d) + np.triu(np.ones((d, d)), 1)
    setup = frechet._Setup.__new__(frechet._Setup)
    monkeypatch.setattr(frechet._Setup, "expected", lambda self: {"format": frechet.FORMAT, "reference": "r",
                                                                  "weights": "w", "extractor": "e"})
    setup.extractor = frechet.Extractor("t", "t", "t", d, 1, "test")
    path = tmp_path / "stats.npz"
    np.savez(path, format=np.array(frechet.FORMAT), reference=np.array("r"), weights=np.array("w"),
             extractor=np.array("e"), digest=np.array(_arrays_digest(mu, bad)), mu=mu, sigma=bad)
    with pytest.raises(_Invalid, match="not a covariance"):
        setup._read(path)
    good = np.eye(d)
    np.savez(path, format=np.array(frechet.FORMAT), reference=np.array("r"), weights=np.array("w"),
             extractor=np.array("e"), digest=np.array(_arrays_digest(mu, good)), mu=mu, sigma=good)
    assert np.array_equal(setup._read(path)["sigma"], good)
