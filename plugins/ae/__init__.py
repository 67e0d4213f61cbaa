"""The plain autoencoder plugin."""

from genzoo_plugins.ae.config import AEConfig
from genzoo_plugins.ae.model import AE

from genzoo import Register, hookimpl

__all__ = ["AE", "AEConfig"]


@hookimpl
def register_models(register: Register) -> None:
    register("ae", AE)
