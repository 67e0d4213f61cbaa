"""Options a model's ``sampler_options`` gives a sampler that its config refuses were reported as the user's
(``Error: components must be a positive integer, got 'ten'``), though the command line gives a sampler no options
(twenty-fifth hostile pass, plugins M11): they are blamed on the model's ``sampler_options``."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import assert_one_line_error, data_root, register_model, run_main  # noqa: F401

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2"]


def _model(options: dict) -> type:
    from genzoo_plugins.ae.model import AE

    def sampler_options(self, sampler: str) -> dict:
        return dict(options) if sampler == "gmm" else AE.sampler_options(self, sampler)

    return type("OptionsAE", (AE,), {"sampler_options": sampler_options})


@pytest.mark.parametrize("options, said", [
    ({"components": "ten"}, "components must be a positive integer, got 'ten'"),
    ({"nope": 1}, "unknown option(s) for GMMConfig: nope"),
])
def test_options_a_sampler_refuses_are_blamed_on_the_models_sampler_options(
        genzoo_register, capsys, data_root, tmp_path: Path, options: dict, said: str) -> None:  # noqa: F811
    register_model(genzoo_register, "optionsae28", _model(options))
    run = tmp_path / "run"
    code, _, err = run_main(["train", "optionsae28", *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 0, err
    blame = f"OptionsAE.sampler_options('gmm') returned {options!r}, which sampler 'gmm' refuses: {said}"
    assert blame in err  # the training's picture of samples, a warning
    out = tmp_path / "s.png"
    code, _, err = run_main(["sample", str(run), "--sampler", "gmm", "-n", "4", "--out", str(out)], capsys)
    assert_one_line_error(code, err, blame)
    assert not out.exists()
