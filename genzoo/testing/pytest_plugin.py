"""genzoo's pytest plugin (entry point ``pytest11``): fixtures for plugin authors.

``genzoo_register`` registers a plugin object for one test and unregisters it after,
so a test can add a model without installing a distribution::

    def test_my_model_trains(genzoo_register):
        genzoo_register(my_plugin_module, "my-plugin")
        ...
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest


@pytest.fixture
def genzoo_register() -> Iterator[Callable[..., None]]:
    """Register plugin objects (modules or objects with hook implementations) for this test.

    A plugin that is installed, and so already loaded from its entry point, is left as
    it is: the same test runs from a checkout and after ``pip install``.
    """
    from genzoo import plugin_registry

    plugin_registry.load_plugins()  # installed plugins first, so a test plugin cannot shadow them unseen
    names: list[str] = []

    def register(plugin: Any, name: str, distribution: str | None = None) -> None:
        if plugin_registry.pm.is_registered(plugin):
            return  # already loaded from its installed entry point: the test uses that
        plugin_registry.register_plugin(plugin, name, distribution or f"test-{name}")
        names.append(name)

    yield register
    for name in reversed(names):
        plugin_registry.unregister_plugin(name)


@pytest.fixture
def genzoo_images() -> Callable[..., Any]:
    """:func:`genzoo.testing.synthetic_images`: deterministic stroke images in [0, 1]."""
    from genzoo.testing.images import synthetic_images

    return synthetic_images
