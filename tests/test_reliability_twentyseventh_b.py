"""``compare --set MODEL.latent=N``: train's ``--latent`` is an option every model takes, as ``lr`` and ``loss`` are
(twenty-fourth hostile pass, files M8: ``Error: --set 'vae.latent=5': vae has no option 'latent'``)."""

from __future__ import annotations

import json

import pytest
from reliability_support import (  # noqa: F401 - data_root, one_thread and steered are fixtures
    data_root,
    one_thread,
    run_main,
    steered,
)
from test_compare_latent import compare_args

from genzoo.errors import GenzooError
from genzoo.options import parse_setting


def test_set_takes_a_models_latent_size_as_train_would() -> None:
    assert parse_setting("vae.latent=5", ["vae"]) == ("vae", "latent", 5)
    for text in ("vae.latent=0", "vae.latent=2.5"):
        with pytest.raises(GenzooError, match="--set 'vae.latent="):
            parse_setting(text, ["vae"])


def test_a_compare_trains_a_model_at_its_own_latent_and_its_report_says_so(steered, data_root, tmp_path,  # noqa: F811
                                                                           capsys) -> None:
    out = tmp_path / "cmp"
    code, _, err = run_main([*compare_args(data_root, out, "steered-ae", "steered-vae"),
                             "--set", "steered-vae.latent=3"], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    latents = {r["model"]: r["run_config"]["model_config"]["latent"] for r in results["models"]}
    assert latents == {"steered-ae": 2, "steered-vae": 3}
    report = (out / "report.md").read_text()
    assert "latent 2," in report and "- steered-vae: --set latent=3" in report, report
