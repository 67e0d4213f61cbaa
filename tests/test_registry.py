"""The registry: built-ins through entry points, test plugins, lookup errors."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
import torch
from pytester_support import run_session

from genzoo import GenzooError, Model, ModelConfig, hookimpl
from genzoo.cli import main
from genzoo.plugin_registry import GROUP, registry


def test_builtins_are_loaded_through_the_entry_point_group():
    reg = registry()
    builtin_points = {ep.name for ep in metadata.entry_points(group=GROUP) if ep.dist.name == "genzoo"}
    assert {"ae", "vae", "gan", "losses", "datasets"} <= builtin_points
    for kind, names in {
        "model": {"ae", "vae", "gan"},
        "loss": {"bce-sum", "mse", "kl-normal", "non-saturating"},
        "dataset": {"mnist", "fashion-mnist"},
    }.items():
        assert names <= set(reg.names(kind))
        for name in names:
            entry = reg.entry(kind, name)
            assert entry.distribution == "genzoo"
            assert entry.plugin in builtin_points


class Constant(Model):
    """A model with one parameter pulled towards the mean pixel: trivially trainable."""

    can_sample = True

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.level = torch.nn.Parameter(torch.zeros(()))

    def loss(self, x):
        return {"loss": (x - self.level).pow(2).flatten(1).mean(1)}

    def sample(self, n):
        return self.level.expand(n, *self.sample_shape)


class ConstantPlugin:
    @hookimpl
    def register_models(self, register):
        register("constant", Constant)


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_plugin_registered_in_a_test_is_usable_then_gone(genzoo_register, chdir_tmp):
    from genzoo.train_config import TrainConfig
    from genzoo.training import start_run

    genzoo_register(ConstantPlugin(), "constant-plugin")
    entry = registry().entry("model", "constant")
    assert entry.plugin == "constant-plugin" and entry.distribution == "test-constant-plugin"
    config = TrainConfig(model="constant", epochs=2, batch_size=50, train_limit=200, test_limit=100)
    result = start_run(config, {"lr": 0.01})
    assert [r["epoch"] for r in result.records] == [1, 2]
    assert result.records[1]["test_loss"] < result.records[0]["test_loss"]
    assert (result.run_dir / "samples.png").is_file()


def test_plugin_is_unregistered_after_its_test(pytester):
    """In a process of its own, so it does not depend on which tests ran before it."""
    pytester.makepyfile(test_lifecycle="""
import pytest

from genzoo import GenzooError, Model, hookimpl, registry


class Plugin:
    @hookimpl
    def register_models(self, register):
        register("lifecycle-model", Model)


def test_first_registers(genzoo_register):
    genzoo_register(Plugin(), "lifecycle-plugin")
    assert registry().entry("model", "lifecycle-model").plugin == "lifecycle-plugin"


def test_then_it_is_gone():
    with pytest.raises(GenzooError, match="unknown model 'lifecycle-model'"):
        registry().model("lifecycle-model")
""")
    outcomes = run_session(pytester, "-p", "no:randomly")
    assert [(t.name, t.outcome, t.message) for t in outcomes] == [
        ("test_first_registers", "passed", ""), ("test_then_it_is_gone", "passed", "")]


def test_unknown_name_suggests_the_closest_and_lists_all():
    with pytest.raises(GenzooError) as info:
        registry().model("vea")
    message = str(info.value)
    assert "did you mean 'vae'" in message
    assert "available: ae, conv-ae, conv-vae, dcgan, gan, vae" in message


def test_two_plugins_registering_one_name_name_both_distributions(genzoo_register):
    class Impostor:
        @hookimpl
        def register_models(self, register):
            register("vae", Constant)

    genzoo_register(Impostor(), "impostor")
    with pytest.raises(GenzooError) as info:
        registry()
    message = str(info.value)
    assert "'vae' is registered twice" in message
    assert "'genzoo'" in message and "'test-impostor'" in message


def test_a_model_that_fails_to_build_names_its_plugin(genzoo_register):
    class Broken(Model):
        def __init__(self, config, sample_shape):
            raise ValueError("no weights for you")

    class BrokenPlugin:
        @hookimpl
        def register_models(self, register):
            register("broken", Broken)

    genzoo_register(BrokenPlugin(), "broken-plugin")
    with pytest.raises(GenzooError, match="'broken-plugin'.*no weights for you"):
        registry().build_model("broken", (1, 28, 28))


def test_unknown_model_option_is_refused():
    with pytest.raises(GenzooError, match="unknown option.*wings"):
        registry().build_model("vae", (1, 28, 28), wings=2)


@pytest.mark.parametrize("latent", [0, -3, 2.5])
def test_config_rejects_bad_latent(latent):
    with pytest.raises(GenzooError, match="latent"):
        ModelConfig(latent=latent)


def test_plugins_command_lists_everything_with_its_distribution(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plugins", "--json"])
    assert exit_info.value.code == 0
    rows = json.loads(capsys.readouterr().out)
    found = {(r["kind"], r["name"]): r["distribution"] for r in rows}
    assert found[("model", "vae")] == "genzoo"
    assert found[("loss", "non-saturating")] == "genzoo"
    assert found[("dataset", "mnist")] == "genzoo"
    with pytest.raises(SystemExit):
        main(["list"])
    table = capsys.readouterr().out
    assert "fashion-mnist" in table and "kl-normal" in table


def test_a_registration_of_the_wrong_type_skips_its_plugin_with_a_warning(genzoo_register, capsys):
    class WrongTypes:
        @hookimpl
        def register_models(self, register):
            register("not-a-model", object)

        @hookimpl
        def register_losses(self, register):
            register("not-a-loss", lambda logits, x: logits)

    genzoo_register(WrongTypes(), "wrong-types")
    reg = registry()
    assert "not-a-model" not in reg.names("model") and "not-a-loss" not in reg.names("loss")
    assert "vae" in reg.names("model")
    err = capsys.readouterr().err
    assert "model 'not-a-model' must be a subclass of genzoo.Model" in err
    assert "loss 'not-a-loss' must be a genzoo.Loss instance" in err


def test_an_installed_plugin_with_an_invalid_hook_is_skipped_with_a_warning(monkeypatch, capsys):
    import types
    from importlib import metadata

    from genzoo import plugin_registry

    module = types.ModuleType("misnamed_hook")

    @hookimpl
    def register_models(callback):  # pluggy refuses: the hook's argument is ``register``
        callback("misnamed", object)

    module.register_models = register_models

    class Dist:
        name, version = "genzoo-misnamed", "1.0"

    class EntryPoint:
        name, dist = "misnamed", Dist()

        def load(self):
            return module

    real = metadata.entry_points
    monkeypatch.setattr(metadata, "entry_points", lambda group: [*real(group=group), EntryPoint()])
    monkeypatch.setattr(plugin_registry, "_loaded", False)
    try:
        plugin_registry.load_plugins()
        assert not plugin_registry.pm.is_registered(module)
        assert "plugin 'misnamed' from 'genzoo-misnamed' has an invalid hook and is skipped" in capsys.readouterr().err
        assert "vae" in registry().names("model")
    finally:
        if plugin_registry.pm.is_registered(module):
            plugin_registry.pm.unregister(module)


def test_genzoo_register_leaves_an_already_loaded_plugin_be(genzoo_register):
    import genzoo_plugins.vae

    from genzoo import plugin_registry

    genzoo_register(genzoo_plugins.vae, "vae-again")  # the built-in, loaded from its entry point
    assert not plugin_registry.pm.has_plugin("vae-again")
    assert registry().entry("model", "vae").plugin == "vae"
