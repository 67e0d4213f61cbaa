"""The convolutional autoencoder plugin (Ghosh et al. 2020's MNIST networks)."""

from genzoo_plugins.conv_ae.config import ConvAEConfig
from genzoo_plugins.conv_ae.model import ConvAE

from genzoo import Register, hookimpl

__all__ = ["ConvAE", "ConvAEConfig"]


@hookimpl
def register_models(register: Register) -> None:
    register("conv-ae", ConvAE)
