"""Minor findings of the twenty-sixth hostile pass on a plugin's config: one whose ``__post_init__`` fails whatever
it is given was said as the user's ``--latent`` (M7), and a dict field with int keys, which JSON gives back with
string keys, was blamed on ``__post_init__`` (M4)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from reliability_support import assert_one_line_error, data_root, register_model, run_main  # noqa: F401

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu"]


def _model(name: str, **namespace) -> type:
    from genzoo_plugins.vae.config import VAEConfig
    from genzoo_plugins.vae.model import VAE

    fields = namespace.pop("fields", [])
    config = dataclasses.make_dataclass(f"{name}Config", fields, bases=(VAEConfig,), namespace=namespace)
    return type(name, (VAE,), {"Config": config})


def test_a_config_that_fails_from_its_own_defaults_blames_the_plugin(genzoo_register, capsys, data_root,
                                                                    tmp_path: Path) -> None:  # noqa: F811
    def __post_init__(self) -> None:
        raise ModuleNotFoundError("No module named 'helpers'")

    register_model(genzoo_register, "broken28", _model("Broken", __post_init__=__post_init__))
    code, _, err = run_main(["train", "broken28", *TINY, "--latent", "4", "--data-root", str(data_root), "--out",
                             str(tmp_path / "run")], capsys)
    line = assert_one_line_error(code, err, "model 'broken28' from plugin 'broken28' (distribution 'test-broken28') "
                                            "cannot build its config BrokenConfig from its own defaults",
                                 "the plugin is at fault, not the options given")
    assert "--latent" not in line


def test_a_dict_field_with_int_keys_is_said_as_json_s_doing(genzoo_register, capsys, data_root,
                                                            tmp_path: Path) -> None:  # noqa: F811
    register_model(genzoo_register, "intkeys28", _model("IntKeys", fields=[
        ("extra", dict, dataclasses.field(default_factory=lambda: {1: "a"}))]))
    code, _, err = run_main(["train", "intkeys28", *TINY, "--latent", "2", "--data-root", str(data_root), "--out",
                             str(tmp_path / "run")], capsys)
    line = assert_one_line_error(code, err, "IntKeysConfig's field extra ({1: 'a'}) does not come back from "
                                            "config.json as it is (JSON has string keys only")
    assert "__post_init__" not in line
