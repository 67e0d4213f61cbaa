"""Make the models available whether or not the plugin is installed.

Installed (``pip install -e .``), the ``genzoo`` entry point registers them; from a
plain checkout, ``genzoo_register`` (a fixture of genzoo's pytest plugin) does, for
each test, and undoes it afterwards.
"""

import pytest

import genzoo
import genzoo_beta_vae


@pytest.fixture(autouse=True)
def plugin_registered(genzoo_register):
    if "beta-vae" not in genzoo.registry().names("model"):
        genzoo_register(genzoo_beta_vae, "beta_vae", "genzoo-beta-vae")
