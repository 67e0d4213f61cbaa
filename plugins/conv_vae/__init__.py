"""The convolutional variational autoencoder plugin (Ghosh et al. 2020's MNIST networks)."""

from genzoo_plugins.conv_vae.config import ConvVAEConfig
from genzoo_plugins.conv_vae.model import ConvVAE

from genzoo import Register, hookimpl

__all__ = ["ConvVAE", "ConvVAEConfig"]


@hookimpl
def register_models(register: Register) -> None:
    register("conv-vae", ConvVAE)
