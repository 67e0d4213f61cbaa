"""A model's config fields become its own command-line options, core never naming them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pytest
from click.testing import CliRunner
from genzoo_plugins.vae import VAE

from genzoo import GenzooError, ModelConfig, hookimpl
from genzoo.building import load_model
from genzoo.cli import cli, main
from genzoo.options import parse_setting

SMALL = ["--epochs", "1", "--train-limit", "200", "--test-limit", "100", "--no-download"]


@dataclass
class ManyConfig(ModelConfig):
    hidden: int = field(default=16, metadata={"help": "Hidden units."})
    beta: float = field(default=4.0, metadata={"help": "KL weight."})
    reconstruction_loss: str = field(default="bce-sum", metadata={"loss": "reconstruction"})
    loss_option: ClassVar[str] = "reconstruction_loss"
    warm_up: bool = field(default=False, metadata={"help": "Anneal beta from 0."})
    prior: Literal["normal", "laplace"] = field(default="normal", metadata={"help": "The prior."})
    free_bits: int | None = field(default=None, metadata={"help": "Free bits per dimension."})
    sizes: tuple[int, ...] = (1, 2)  # no command-line form: keeps its default

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden < 1:
            raise GenzooError(f"hidden must be a positive integer, got {self.hidden}")


class ManyOptions(VAE):
    """The VAE with extra config fields; they only need to arrive in the config."""

    Config = ManyConfig


@dataclass
class ClashConfig(ModelConfig):
    seed: int = field(default=1, metadata={"help": "Shadows genzoo train's own --seed."})


class Clash(VAE):
    Config = ClashConfig


class OptionsPlugin:
    @hookimpl
    def register_models(self, register):
        register("many-options", ManyOptions)


class ClashPlugin:
    @hookimpl
    def register_models(self, register):
        register("clash", Clash)


@pytest.fixture(autouse=True)
def plugin(genzoo_register):
    genzoo_register(OptionsPlugin(), "options-plugin")


def train(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["train", *args], prog_name="genzoo", terminal_width=80)
    return result.exit_code, result.output


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_every_field_type_reaches_the_config(tmp_path):
    code, output = train("many-options", "--beta", "2.5", "--hidden", "8", "--warm-up", "--prior", "laplace",
                         "--free-bits", "3", *SMALL, "--out", str(tmp_path / "run"))
    assert code == 0, output
    config = json.loads((tmp_path / "run" / "config.json").read_text())["model_config"]
    assert config == {"latent": 40, "lr": 1e-3, "hidden": 8, "beta": 2.5, "reconstruction_loss": "bce-sum",
                      "warm_up": True, "prior": "laplace", "free_bits": 3, "sizes": [1, 2]}
    assert load_model(tmp_path / "run").config.sizes == (1, 2)  # the tuple survived config.json


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_options_may_come_before_the_model_and_shared_values_are_not_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, output = train("--out", "vae", "--hidden", "8", "many-options", *SMALL)
    assert code == 0, output
    config = json.loads((tmp_path / "vae" / "config.json").read_text())
    assert config["model"] == "many-options" and config["model_config"]["hidden"] == 8


def test_help_lists_the_models_own_options_under_its_name():
    code, output = train("many-options", "--help")
    assert code == 0
    own = output.split("Options of many-options:")[1]
    for text in ("--hidden INTEGER", "--beta FLOAT", "--warm-up / --no-warm-up", "--prior [normal|laplace]",
                 "--free-bits INTEGER", "KL weight. [many-options default: 4.0]"):
        assert text in own
    assert "--sizes" not in output and "--reconstruction-loss" not in output  # no CLI form; --loss sets it
    code, output = train("--help")
    assert code == 0 and "genzoo train MODEL --help" in output and "Options of" not in output


def test_another_models_option_is_refused_in_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "vae", "--beta", "2", "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: No such option") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_bad_value_is_refused_by_click_or_by_the_config(capsys, tmp_path):
    for args, message in ((["--prior", "cauchy"], "'cauchy' is not one of"),
                          (["--hidden", "many"], "'many' is not a valid integer"),
                          (["--hidden", "0"], "Error: --hidden must be a positive integer, got 0")):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "many-options", *args, *SMALL, "--out", str(tmp_path / "run")])
        err = capsys.readouterr().err
        assert exit_info.value.code in (1, 2) and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_a_misspelt_model_gets_suggestions_not_a_complaint_about_its_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "many-option", "--beta", "2"])
    assert exit_info.value.code == 1
    assert "unknown model 'many-option'; did you mean 'many-options'?" in capsys.readouterr().err


def test_a_field_that_shadows_a_train_option_is_a_plugin_error(genzoo_register, capsys):
    """Refused at registration (eighteenth hostile pass, M2: every command taking the model's options would fail)."""
    genzoo_register(ClashPlugin(), "clash-plugin")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "clash", "--help"])
    assert exit_info.value.code == 1
    warning, error = capsys.readouterr().err.strip().splitlines()
    assert warning == ("genzoo: warning: plugin 'clash-plugin' (distribution 'test-clash-plugin') failed while "
                       "registering models and is skipped: TypeError: model 'clash': its config field 'seed' gives "
                       "the option --seed, which is genzoo's own; the plugin must rename it")
    assert error.startswith("Error: unknown model 'clash'")


def test_compare_set_converts_like_train_and_names_what_is_wrong():
    assert parse_setting("many-options.beta=2", ["vae", "many-options"]) == ("many-options", "beta", 2.0)
    assert parse_setting("many-options.warm-up=true", ["many-options"]) == ("many-options", "warm_up", True)
    for text, message in (("beta=2", "expected MODEL.FIELD=VALUE"),
                          ("vae.hidden=2", "'vae' is not among the models to train"),
                          ("many-options.gamma=2", "has no option 'gamma'"),
                          ("many-options.prior=cauchy", "'cauchy' is not one of"),
                          ("many-options.warm-up=maybe", "'maybe' is not true or false")):
        with pytest.raises(GenzooError, match=message):
            parse_setting(text, ["many-options"])


def test_compare_refuses_a_bad_setting_before_training_anything(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "vae", "many-options", "--set", "many-options.hidden=0", "--out", str(tmp_path / "cmp"),
              *SMALL[:-1]])
    assert exit_info.value.code == 1
    assert "Error: --set many-options.hidden must be a positive integer, got 0" in capsys.readouterr().err
    assert not (tmp_path / "cmp").exists()


def test_a_config_refusal_names_the_option_typed_not_the_field(capsys, tmp_path):
    """Was ``Error: beta1 must be in [0, 1), got 2.0``: a field name the user never typed."""
    for args, message in ((["train", "gan", "--beta1", "2"], "Error: --beta1 must be in [0, 1), got 2.0"),
                          (["compare", "gan", "--set", "gan.beta1=2"], "Error: --set gan.beta1 must be in [0, 1)")):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 1 and err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_plugins_lists_each_models_own_options():
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    details = {row["name"]: row["details"] for row in json.loads(result.output) if row["kind"] == "model"}
    assert details["many-options"].endswith(
        "; options: --hidden, --beta, --warm-up, --prior, --free-bits")  # --sizes has no CLI form
    assert details["gan"] == "can: sample; options: --beta1"


def test_picture_titles_name_the_model_as_registered(tmp_path, monkeypatch):
    """Titles read "WGANGP: 64 samples" (the class) where the registered name was meant."""
    import torch

    from genzoo import figures
    from genzoo.data import TensorSplit
    from genzoo.plugin_registry import registry
    from genzoo.training import save_pictures

    titles = []
    for name in ("save_samples", "save_reconstructions", "save_loss_curves"):
        monkeypatch.setattr(figures, name, lambda *args: titles.append(args[-1]))
    model = registry().build_model("vae", (1, 28, 28), latent=2, hidden=8)
    test = TensorSplit(torch.rand(4, 1, 28, 28))
    save_pictures(model, "my-vae", test, test, tmp_path, [{"epoch": 1, "step": 1, "train_loss": 1.0}])
    assert titles == ["my-vae: 64 samples", "my-vae: test images (left) and reconstructions (right)",
                      "my-vae losses per epoch"]
