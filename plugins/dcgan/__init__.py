"""The DCGAN-style GAN plugin (Lucic et al. 2018's InfoGAN-style MNIST networks)."""

from genzoo_plugins.dcgan.config import DCGANConfig
from genzoo_plugins.dcgan.model import DCGAN

from genzoo import Register, hookimpl

__all__ = ["DCGAN", "DCGANConfig"]


@hookimpl
def register_models(register: Register) -> None:
    register("dcgan", DCGAN)
