"""Plugins from strangers: the ``GENZOO_LOAD_PLUGINS`` allow-list and plugin faults.

Each test installs fake distributions (a ``*.dist-info`` folder with an
``entry_points.txt``, and the plugin module beside it) on ``sys.path`` and loads
plugins afresh, exactly as genzoo finds installed ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

import pytest
from reliability_support import data_root, one_thread, run_main, snapshot  # noqa: F401 - fixtures

from genzoo import plugin_registry

BUILTIN_MODELS = ["ae", "conv-ae", "conv-vae", "dcgan", "gan", "vae"]

TOY_MODEL = '''
import torch
from genzoo import Model, hookimpl

class Toy(Model):
    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        {build}
        self.w = torch.nn.Parameter(torch.zeros(()))

@hookimpl
def register_models(register):
    register({name!r}, Toy)
'''


class Site:
    """A folder on ``sys.path`` holding fake installed distributions."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.modules: list[str] = []
        root.mkdir()
        monkeypatch.syspath_prepend(str(root))

    def install(self, distribution: str, module: str, source: str, entry: str | None = None) -> Path:
        """Install ``distribution`` whose ``genzoo`` entry point is ``module``; return its import marker."""
        info = self.root / f"{distribution.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[genzoo]\n{entry or module} = {module}\n")
        marker = self.root / f"{module}.imported"
        # The module's first act leaves a mark, so a test can tell whether its code ever ran.
        (self.root / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').close()\n{source}")
        self.modules.append(module)
        return marker

    def toy(self, distribution: str, module: str, model: str, build: str = "pass") -> Path:
        return self.install(distribution, module, TOY_MODEL.format(name=model, build=build))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """Fake distributions, and a plugin manager that loads from scratch (restored afterwards)."""
    saved = plugin_registry.pm.list_name_plugin()
    saved_distributions = dict(plugin_registry._distributions)
    for name, _ in saved:
        plugin_registry.pm.unregister(name=name)
    plugin_registry._distributions.clear()
    monkeypatch.setattr(plugin_registry, "_loaded", False)
    monkeypatch.delenv(plugin_registry.ALLOW_ENV, raising=False)
    fake = Site(tmp_path / "site", monkeypatch)
    yield fake
    for name, _ in plugin_registry.pm.list_name_plugin():
        plugin_registry.pm.unregister(name=name)
    for name, plugin in saved:
        plugin_registry.pm.register(plugin, name=name)
    plugin_registry._distributions.clear()
    plugin_registry._distributions.update(saved_distributions)
    for module in fake.modules:
        sys.modules.pop(module, None)


def models() -> dict[str, str]:
    """Registered model names and the distribution of each."""
    reg = plugin_registry.registry()
    return {name: reg.entry("model", name).distribution for name in reg.names("model")}


# -- the allow-list --------------------------------------------------------------------


def test_without_an_allow_list_every_installed_plugin_loads(site):
    marker = site.toy("genzoo-toy", "genzoo_toy_plugin", "toy")
    assert models() == {**{name: "genzoo" for name in BUILTIN_MODELS}, "toy": "genzoo-toy"}
    assert marker.exists()


def test_an_empty_allow_list_loads_only_the_builtins_and_imports_nothing_else(site, monkeypatch, capsys):
    marker = site.toy("genzoo-toy", "genzoo_toy_plugin", "toy")
    monkeypatch.setenv("GENZOO_LOAD_PLUGINS", "")
    code, out, err = run_main(["plugins", "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert {row["distribution"] for row in rows} == {"genzoo"}
    assert sorted(row["name"] for row in rows if row["kind"] == "model") == BUILTIN_MODELS
    assert not marker.exists()  # a plugin left off the list never runs a line of code


@pytest.mark.parametrize("allowed,loaded", [
    ("genzoo-toy", True),
    (" GENZOO_Toy ,someone-else", True),  # names compare as pip compares them
    ("someone-else", False),
])
def test_the_allow_list_loads_exactly_the_distributions_it_names(site, monkeypatch, allowed, loaded):
    toy = site.toy("genzoo-toy", "genzoo_toy_plugin", "toy")
    other = site.toy("genzoo-other", "genzoo_other_plugin", "other")
    monkeypatch.setenv("GENZOO_LOAD_PLUGINS", allowed)
    expected = BUILTIN_MODELS + (["toy"] if loaded else [])
    assert sorted(models()) == sorted(expected)
    assert toy.exists() == loaded and not other.exists()


# -- plugin faults ---------------------------------------------------------------------


def test_a_plugin_that_fails_to_import_is_named_in_a_warning_and_the_others_work(site, capsys):
    site.install("genzoo-broken", "genzoo_broken_plugin", "import a_library_you_do_not_have\n", entry="broken")
    site.toy("genzoo-toy", "genzoo_toy_plugin", "toy")
    code, out, err = run_main(["plugins", "--json"], capsys)
    assert code == 0
    warnings = err.strip().splitlines()
    assert len(warnings) == 1
    assert warnings[0].startswith("genzoo: warning: plugin 'broken' from 'genzoo-broken' failed to load")
    assert "No module named 'a_library_you_do_not_have'" in warnings[0]
    names = {row["name"] for row in json.loads(out) if row["kind"] == "model"}
    assert names == {*BUILTIN_MODELS, "toy"}


def test_a_model_that_raises_when_built_names_its_plugin_and_writes_nothing(site, data_root, tmp_path, capsys):
    site.toy("genzoo-fragile", "genzoo_fragile_plugin", "fragile", build="raise ValueError('no weights for you')")
    plugin_registry.load_plugins()  # (importing leaves the plugin's own mark; that is not genzoo writing)
    before = snapshot(tmp_path)
    code, out, err = run_main(["train", "fragile", "--data-root", str(data_root), "--out",
                               str(tmp_path / "run")], capsys)
    assert code == 1
    assert err.strip() == ("Error: model 'fragile' from plugin 'genzoo_fragile_plugin' (distribution "
                           "'genzoo-fragile') failed to build: ValueError: no weights for you")
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()


def test_two_plugins_registering_one_name_name_both_distributions(site, monkeypatch, data_root, tmp_path, capsys):
    site.toy("genzoo-impostor", "genzoo_impostor_plugin", "vae")
    plugin_registry.load_plugins()
    before = snapshot(tmp_path)
    code, out, err = run_main(["train", "vae", "--data-root", str(data_root), "--out", str(tmp_path / "run")], capsys)
    assert code == 1
    line = err.strip()
    assert line.startswith("Error: model 'vae' is registered twice: by plugin ")
    assert "(distribution 'genzoo')" in line and "(distribution 'genzoo-impostor')" in line
    assert "GENZOO_LOAD_PLUGINS" in line and "\n" not in line
    assert snapshot(tmp_path) == before
    # The remedy the message offers works: leave the impostor off the allow-list.
    monkeypatch.setenv("GENZOO_LOAD_PLUGINS", "")
    monkeypatch.setattr(plugin_registry, "_loaded", False)
    for name, _ in plugin_registry.pm.list_name_plugin():
        plugin_registry.pm.unregister(name=name)
    assert models()["vae"] == "genzoo"


def test_a_name_the_allow_list_may_have_hidden_names_the_skipped_distributions(site, monkeypatch, data_root,
                                                                              tmp_path, capsys):
    """It used to say only "did you mean 'vae'?", with no word of the allow-list."""
    toy = site.toy("genzoo-toy", "genzoo_toy_plugin", "vee")
    site.toy("genzoo-other", "genzoo_other_plugin", "other")
    monkeypatch.setenv("GENZOO_LOAD_PLUGINS", "genzoo-other")
    code, out, err = run_main(["train", "vee", "--data-root", str(data_root), "--out", str(tmp_path / "run")], capsys)
    assert code == 1
    assert err.strip() == ("Error: unknown model 'vee'; did you mean 'vae'? (available: ae, conv-ae, conv-vae, dcgan, gan, other, vae; "
                           "GENZOO_LOAD_PLUGINS skipped distributions: genzoo-toy)")
    assert not toy.exists()  # naming it takes no import: a distrusted plugin still runs no code
    assert not (tmp_path / "run").exists()


def test_without_skipped_distributions_an_unknown_name_does_not_mention_the_allow_list(site, capsys):
    site.toy("genzoo-toy", "genzoo_toy_plugin", "toy")
    code, out, err = run_main(["train", "vee"], capsys)
    assert code == 1
    assert err.strip() == "Error: unknown model 'vee'; did you mean 'vae'? (available: ae, conv-ae, conv-vae, dcgan, gan, toy, vae)"
