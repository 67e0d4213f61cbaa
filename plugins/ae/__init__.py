"""The plain autoencoder plugin."""

from genzoo import Register, hookimpl
from genzoo_plugins.ae.config import AEConfig
from genzoo_plugins.ae.model import AE

__all__ = ["AE", "AEConfig"]


@hookimpl
def register_models(register: Register) -> None:
    register("ae", AE)
