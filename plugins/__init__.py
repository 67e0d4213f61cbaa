"""genzoo's built-in plugins, installed as ``genzoo_plugins``.

Each one is listed in the ``genzoo`` entry-point group of genzoo's own distribution,
so they are loaded exactly as a third-party plugin would be.
"""
