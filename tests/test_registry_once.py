"""The registry is built once per process and rebuilt only when the plugins change."""

from __future__ import annotations

import pytest
from reliability_support import data_root, one_thread, run_main  # noqa: F401 - fixtures

from genzoo import GenzooError, Model, hookimpl, plugin_registry, registry


class Faulty:
    """Raises while registering its losses: skipped with a warning, the others still work."""

    @hookimpl
    def register_losses(self, register):
        raise RuntimeError("a hook that breaks")


class Extra:
    @hookimpl
    def register_models(self, register):
        register("extra-model", Model)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item per registry build from now on."""
    counted: list[int] = []
    build = plugin_registry.Registry.__init__

    def counting(self: plugin_registry.Registry) -> None:
        counted.append(1)
        build(self)

    monkeypatch.setattr(plugin_registry.Registry, "__init__", counting)
    return counted


def test_a_faulty_plugins_warning_prints_once_for_a_whole_train(genzoo_register, builds, data_root, tmp_path,
                                                                 capsys):
    """It printed five times: every registry() call of one ``genzoo train`` built a new registry."""
    genzoo_register(Faulty(), "faulty")
    code, _, err = run_main(["train", "vae", "--epochs", "1", "--latent", "4", "--data-root", str(data_root),
                             "--no-download", "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert err.count("genzoo: warning: plugin 'faulty'") == 1
    assert "RuntimeError: a hook that breaks" in err
    assert len(builds) == 1  # the faulty plugin joined, so one fresh build, and only one
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_registering_and_unregistering_a_plugin_is_seen_by_the_next_registry_call(genzoo_register, builds):
    before = registry()
    builds.clear()  # whether that call built depends on the tests before this one
    assert registry() is before  # nothing changed: the same registry, not rebuilt
    assert "extra-model" not in before.names("model")
    genzoo_register(Extra(), "extra")
    with_extra = registry()
    assert with_extra.entry("model", "extra-model").distribution == "test-extra"
    assert registry() is with_extra
    plugin_registry.unregister_plugin("extra")
    with pytest.raises(GenzooError, match="unknown model 'extra-model'"):
        registry().model("extra-model")
    # The plugin manager's own register and unregister are seen too (tests use them directly).
    plugin_registry.pm.register(Extra(), name="extra-direct")
    try:
        assert "extra-model" in registry().names("model")
    finally:
        plugin_registry.pm.unregister(name="extra-direct")
    assert "extra-model" not in registry().names("model")
    assert len(builds) == 4  # one per change, none for the calls in between


def test_a_failed_build_is_not_kept(genzoo_register):
    """A duplicate name stops every command; once one plugin leaves, the registry works again."""
    class Duplicate:
        @hookimpl
        def register_models(self, register):
            register("vae", Model)

    genzoo_register(Duplicate(), "duplicate")
    for _ in range(2):
        with pytest.raises(GenzooError, match="'vae' is registered twice"):
            registry()
    plugin_registry.unregister_plugin("duplicate")
    assert registry().entry("model", "vae").distribution == "genzoo"
