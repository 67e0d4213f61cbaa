"""Plugin loading faults the third hostile pass found (issue 10, findings 0-4).

Each test installs fake distributions on ``sys.path`` with the ``site`` fixture of
test_security_plugins.py and loads plugins afresh, exactly as genzoo finds installed ones.
"""

from __future__ import annotations

import json

import pytest
from reliability_support import data_root, run_main  # noqa: F401 - fixtures
from test_security_plugins import BUILTIN_MODELS, Site, models, site  # noqa: F401 - fixture

from genzoo import GenzooError, Logger, hookimpl, plugin_registry
from genzoo.run_folder import read_metrics

REGISTER = '''
from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE

@hookimpl
def register_models(register):
    register({name}, VAE)
'''

UNPRINTABLE = '''
class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("boom")
'''

ODD_CONFIGS = '''
import dataclasses
from dataclasses import dataclass
from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE
from genzoo_plugins.vae.config import VAEConfig

@dataclass
class ForwardConfig(VAEConfig):
    extra: "NoSuchType" = 1  # noqa: F821 - an annotation that cannot be resolved

class ForwardVAE(VAE):
    Config = ForwardConfig

@dataclass
class AssertConfig(VAEConfig):
    def __post_init__(self):
        super().__post_init__()
        assert self.hidden != 7, "hidden 7 is unsupported"

class AssertVAE(VAE):
    Config = AssertConfig

@dataclass
class OddConfig(VAEConfig):
    @classmethod
    def from_dict(cls, values):
        raise LookupError("no such table")

class OddVAE(VAE):
    Config = OddConfig

@hookimpl
def register_models(register):
    register("assertvae", AssertVAE)
    register("oddvae", OddVAE)
    register("fwdvae", ForwardVAE)
'''


def plugin_list(capsys: pytest.CaptureFixture[str]) -> tuple[list[str], list[str]]:
    """``genzoo plugins --json``: the model names and the warning lines; it must succeed."""
    code, out, err = run_main(["plugins", "--json"], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    return sorted(row["name"] for row in json.loads(out) if row["kind"] == "model"), err.strip().splitlines()


# -- 0: a distribution named genzoo ahead of the real one ------------------------------------


def test_a_foreign_genzoo_distribution_is_named_and_its_plugins_obey_the_allow_list(site: Site, monkeypatch,
                                                                                    capsys):
    """BEFORE: the built-ins vanished without a word, and the stranger's code ran despite GENZOO_LOAD_PLUGINS=."""
    marker = site.install("genzoo", "hz_impostor", REGISTER.format(name='"impostor"'), entry="impostor")
    monkeypatch.setenv("GENZOO_LOAD_PLUGINS", "")
    names, warnings = plugin_list(capsys)
    assert len(warnings) == 1
    assert warnings[0].startswith("genzoo: warning: the 'genzoo' distribution found first on the path (")
    assert "does not list genzoo's built-in plugins" in warnings[0]
    assert not marker.exists()  # a genzoo-named entry point outside genzoo_plugins is no built-in
    assert names == []


# -- 1: SystemExit from a plugin --------------------------------------------------------------


def test_a_plugin_raising_system_exit_on_import_is_skipped_with_a_warning(site: Site, capsys):
    """BEFORE: every command ended silently with exit 0 (genzoo train trained nothing)."""
    site.install("genzoo-sysexit", "hz_sysexit", "raise SystemExit(0)\n", entry="sysexit")
    names, warnings = plugin_list(capsys)
    assert names == BUILTIN_MODELS
    assert warnings == ["genzoo: warning: plugin 'sysexit' from 'genzoo-sysexit' failed to load and is "
                        "skipped: SystemExit: 0"]


def test_a_plugin_hook_raising_system_exit_is_skipped_with_a_warning(site: Site, capsys):
    """BEFORE: genzoo list exited 3 with no output."""
    source = "from genzoo import hookimpl\n@hookimpl\ndef register_losses(register):\n    raise SystemExit(3)\n"
    site.install("genzoo-hookexit", "hz_hookexit", source, entry="hookexit")
    names, warnings = plugin_list(capsys)
    assert names == BUILTIN_MODELS
    assert warnings == ["genzoo: warning: plugin 'hookexit' (distribution 'genzoo-hookexit') failed while "
                        "registering losses and is skipped: SystemExit: 3"]


def test_ctrl_c_while_a_plugin_imports_still_stops_genzoo(site: Site):
    site.install("genzoo-kbint", "hz_kbint", "raise KeyboardInterrupt\n", entry="kbint")
    with pytest.raises(KeyboardInterrupt):
        plugin_registry.load_plugins()


# -- 2: a name that is not a string -----------------------------------------------------------


@pytest.mark.parametrize("name", ["5", "None", '""', "('vae',)"])
def test_a_registered_name_that_is_not_a_non_empty_string_is_refused(site: Site, capsys, name):
    """BEFORE: genzoo list, train and eval each ended in a TypeError traceback from sorting the names."""
    site.install("genzoo-intname", "hz_intname", REGISTER.format(name=name), entry="intname")
    names, warnings = plugin_list(capsys)
    assert names == BUILTIN_MODELS
    assert len(warnings) == 1
    assert warnings[0].startswith("genzoo: warning: plugin 'intname' (distribution 'genzoo-intname') failed "
                                  "while registering models and is skipped: TypeError: a model name must be a "
                                  "non-empty string, got ")
    code, out, err = run_main(["train", "vee"], capsys)  # a command that lists the names
    assert code == 1 and err.strip().splitlines()[-1].startswith("Error: unknown model 'vee'")
    assert "Traceback" not in err


# -- 3: an exception that cannot be turned into a string -------------------------------------


def test_describe_renders_an_exception_whose_str_raises():
    from genzoo.errors import describe

    namespace: dict[str, object] = {}
    exec(UNPRINTABLE, namespace)
    assert describe(namespace["Unprintable"]()) == "Unprintable: (its message cannot be shown: RuntimeError)"
    assert describe(ValueError("two\nlines")) == "ValueError: two\nlines"


def test_a_plugin_whose_exception_cannot_be_printed_is_still_one_warning(site: Site, capsys):
    """BEFORE: a traceback through load_plugins ending RuntimeError: boom, exit 1."""
    site.install("genzoo-badstr", "hz_badstr", UNPRINTABLE + "raise Unprintable()\n", entry="badstr")
    hook = UNPRINTABLE + ("from genzoo import hookimpl\n@hookimpl\ndef register_models(register):\n"
                          "    raise Unprintable()\n")
    site.install("genzoo-badhook", "hz_badhook", hook, entry="badhook")
    names, warnings = plugin_list(capsys)
    assert names == BUILTIN_MODELS
    assert sorted(warnings) == [
        "genzoo: warning: plugin 'badhook' (distribution 'genzoo-badhook') failed while registering models "
        "and is skipped: Unprintable: (its message cannot be shown: RuntimeError)",
        "genzoo: warning: plugin 'badstr' from 'genzoo-badstr' failed to load and is skipped: "
        "Unprintable: (its message cannot be shown: RuntimeError)"]


# -- 4: plugin model configs that raise anything ---------------------------------------------


def test_a_config_whose_annotations_do_not_resolve_is_refused_when_registered(site: Site, capsys):
    """BEFORE: genzoo train fwdvae ended in a NameError traceback."""
    site.install("genzoo-oddcfg", "hz_oddcfg", ODD_CONFIGS, entry="oddcfg")
    names, warnings = plugin_list(capsys)
    assert names == BUILTIN_MODELS  # the models it registered before fwdvae are refused too: skipped whole
    assert warnings == ["genzoo: warning: plugin 'oddcfg' (distribution 'genzoo-oddcfg') failed while "
                        "registering models and is skipped: TypeError: model 'fwdvae' has a config whose field "
                        "types cannot be resolved: NameError: name 'NoSuchType' is not defined"]


def odd_only(source: str) -> str:
    return source.replace('    register("fwdvae", ForwardVAE)\n', "")


def test_a_config_that_asserts_or_raises_is_one_line(site: Site, data_root, tmp_path, capsys):  # noqa: F811
    """BEFORE: an AssertionError traceback from __post_init__ (train), a raw LookupError (API)."""
    site.install("genzoo-oddcfg", "hz_oddcfg", odd_only(ODD_CONFIGS), entry="oddcfg")
    code, out, err = run_main(["train", "assertvae", "--hidden", "7", "--data-root", str(data_root),
                               "--out", str(tmp_path / "run")], capsys)
    assert code == 1
    assert err.strip() == ("Error: --hidden: invalid options for AssertConfig ({'hidden': 7}): "
                           "AssertionError: hidden 7 is unsupported")
    assert not (tmp_path / "run").exists()
    from genzoo import get_model

    with pytest.raises(GenzooError, match=r"AssertionError: hidden 7 is unsupported"):
        get_model("assertvae", hidden=7)
    with pytest.raises(GenzooError) as info:
        get_model("oddvae")
    assert str(info.value) == ("model 'oddvae' from plugin 'oddcfg' (distribution 'genzoo-oddcfg') failed to "
                               "build: LookupError: no such table")


class Exiting(Logger):
    """A logger whose library calls ``sys.exit()`` when its server is gone."""

    def log_epoch(self, record, samples):
        raise SystemExit(2)


class ExitingPlugin:
    @hookimpl
    def register_loggers(self, register):
        register("exiting", Exiting)


def test_a_logger_raising_system_exit_warns_and_the_run_goes_on(genzoo_register, data_root, tmp_path,  # noqa: F811
                                                                 capsys):
    """BEFORE: the run stopped after its first epoch with exit 2 and no word why."""
    genzoo_register(ExitingPlugin(), "exiting")
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--latent", "2", "--hidden", "16", "--data-root", str(data_root),
                             "--epochs", "2", "--batch-size", "10", "--test-limit", "20", "--device", "cpu",
                             "--no-download", "--log", "exiting", "--out", str(run)], capsys)
    assert code == 0, err
    assert [line for line in err.splitlines() if line.startswith("genzoo: warning:")] == [
        "genzoo: warning: logger 'exiting' failed and logs no more of this session: SystemExit: 2"]
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
