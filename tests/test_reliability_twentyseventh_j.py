"""Plugins F10 of the twenty-fifth hostile pass: a model config that does not keep an option it is given. One whose
``from_dict`` dropped ``latent`` trained ``--latent 4`` at 40, one whose ``__post_init__`` clamped it at 2, and
``compare --latent 4`` reported latent 4 for them, exit 0, no word."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from genzoo_plugins.vae.config import VAEConfig
from genzoo_plugins.vae.model import VAE
from reliability_support import assert_one_line_error, data_root, register_model, run_main  # noqa: F401


@dataclass
class DroppingConfig(VAEConfig):
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Any:
        return super().from_dict({k: v for k, v in values.items() if k != "latent"})


@dataclass
class ClampingConfig(VAEConfig):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.latent = min(self.latent, 2)


class DroppingVAE(VAE):
    Config = DroppingConfig


class ClampingVAE(VAE):
    Config = ClampingConfig


@pytest.mark.parametrize("model, held", [(DroppingVAE, 40), (ClampingVAE, 2)])
@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_config_that_does_not_keep_a_given_option_is_refused_before_any_folder(
        genzoo_register, data_root, tmp_path, capsys, model, held, command) -> None:  # noqa: F811
    register_model(genzoo_register, "keeps27", model)
    models = ["keeps27"] if command == "train" else ["vae", "keeps27"]
    code, _, err = run_main([command, *models, "--latent", "4", "--epochs", "1", "--train-limit", "40",
                             "--test-limit", "20", "--device", "cpu", "--data-root", str(data_root),
                             "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, f"its config was given latent 4 but holds {held}; a config keeps each option "
                                     "it is given, or refuses it")
    assert not (tmp_path / "out").exists()


def test_a_config_given_its_own_values_and_a_loss_still_builds(genzoo_register, data_root, tmp_path,  # noqa: F811
                                                               capsys) -> None:
    register_model(genzoo_register, "keeps27", ClampingVAE)
    code, _, err = run_main(["train", "keeps27", "--latent", "2", "--loss", "mse", "--epochs", "1", "--batch-size", "20", "--train-limit",
                             "40", "--test-limit", "20", "--device", "cpu", "--data-root", str(data_root), "--out",
                             str(tmp_path / "out")], capsys)
    assert code == 0, err


class TwoLineVAE(VAE):
    def sampling_description(self, short: bool = False) -> str | None:
        return "line1\nline2"


def test_a_sampling_description_that_is_no_line_is_named_not_reported(genzoo_register, data_root, tmp_path,  # noqa: F811
                                                                      capsys) -> None:
    """Twenty-fifth pass, plugins M3: a model's description with a line break went into the report on two lines and
    into eval.json as it was (a 100,000-character one: 800 lines of the report)."""
    import json

    register_model(genzoo_register, "twolines27", TwoLineVAE)
    run = tmp_path / "run"
    code, _, err = run_main(["train", "twolines27", "--latent", "2", "--epochs", "1", "--batch-size", "20",
                             "--train-limit", "40", "--test-limit", "20", "--device", "cpu", "--data-root",
                             str(data_root), "--out", str(run)], capsys)
    assert code == 0, err
    code, out, err = run_main(["eval", str(run), "--fid-samples", "0", "--iwae-k", "2", "--data-root",
                               str(data_root)], capsys)
    assert code == 0, err
    assert ("TwoLineVAE.sampling_description (sampler 'model') gave a description of 11 characters with a line break or a control "
            "character, not one line of printable text of at most 300") in err, err
    assert "line2" not in out and "line2" not in (run / "eval.json").read_text()
    json.loads((run / "eval.json").read_text())
