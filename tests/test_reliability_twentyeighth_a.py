"""A model's float option given ``nan`` or ``inf`` trained and left a config.json that is not JSON (twenty-fifth
hostile pass, plugins M5): such a value is refused on the command line and in ``compare --set``, and a config that
holds one anyway (its default) is refused before any folder, naming the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from reliability_support import assert_one_line_error, data_root, register_model, run_main  # noqa: F401

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2"]


def _warm_model(default: float) -> type:
    from genzoo_plugins.vae.config import VAEConfig
    from genzoo_plugins.vae.model import VAE

    config = dataclasses.make_dataclass(
        "WarmConfig", [("temperature", float, dataclasses.field(default=default, metadata={"help": "warmth"}))],
        bases=(VAEConfig,))
    return type("WarmVAE", (VAE,), {"Config": config})


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
def test_a_float_option_that_is_no_finite_number_is_refused_before_any_folder(
        genzoo_register, capsys, data_root, tmp_path: Path, value: str) -> None:  # noqa: F811
    """Before: the run trained, and config.json held ``"temperature": NaN`` (``Infinity``)."""
    register_model(genzoo_register, "warm28", _warm_model(1.0))
    out = tmp_path / "run"
    code, _, err = run_main(["train", "warm28", *TINY, "--data-root", str(data_root), "--out", str(out),
                             f"--temperature={value}"], capsys)
    assert code == 2, err
    assert f"Invalid value for '--temperature': {value!r} is not a finite number" in err, err
    assert "Traceback" not in err and not out.exists()

    out = tmp_path / "compare"
    code, _, err = run_main(["compare", "warm28", "--set", f"warm28.temperature={value}", "--out", str(out),
                             "--data-root", str(data_root)], capsys)
    assert_one_line_error(code, err, f"--set 'warm28.temperature={value}': {value!r} is not a finite number")
    assert not out.exists()


def test_a_config_whose_default_is_no_finite_number_is_named_before_any_folder(
        genzoo_register, capsys, data_root, tmp_path: Path) -> None:  # noqa: F811
    register_model(genzoo_register, "warmnan28", _warm_model(float("nan")))
    out = tmp_path / "run"
    code, _, err = run_main(["train", "warmnan28", *TINY, "--data-root", str(data_root), "--out", str(out)], capsys)
    assert_one_line_error(code, err, "WarmConfig cannot be recorded in config.json",
                          "temperature is nan: JSON holds finite numbers only")
    assert not out.exists()


def test_a_finite_float_option_still_trains_and_is_recorded(genzoo_register, capsys, data_root,
                                                             tmp_path: Path) -> None:  # noqa: F811
    import json

    register_model(genzoo_register, "warm28", _warm_model(1.0))
    out = tmp_path / "run"
    code, _, err = run_main(["train", "warm28", *TINY, "--data-root", str(data_root), "--out", str(out),
                             "--temperature", "1e-3"], capsys)
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["model_config"]["temperature"] == 1e-3
