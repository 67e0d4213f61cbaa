"""Make the models available whether or not the plugin is installed.

Installed (``pip install -e .``), the ``genzoo`` entry point has registered them and
``genzoo_register`` (a fixture of genzoo's pytest plugin) leaves them be; from a plain
checkout, it registers them for each test and undoes it afterwards.
"""

import genzoo_beta_vae
import pytest


@pytest.fixture(autouse=True)
def plugin_registered(genzoo_register):
    genzoo_register(genzoo_beta_vae, "beta_vae", "genzoo-beta-vae")
