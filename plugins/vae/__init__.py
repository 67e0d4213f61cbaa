"""The variational autoencoder plugin."""

from genzoo_plugins.vae.config import VAEConfig
from genzoo_plugins.vae.model import VAE

from genzoo import Register, hookimpl

__all__ = ["VAE", "VAEConfig"]


@hookimpl
def register_models(register: Register) -> None:
    register("vae", VAE)
