"""The small MLP GAN plugin."""

from genzoo_plugins.gan.config import GANConfig
from genzoo_plugins.gan.model import GAN

from genzoo import Register, hookimpl

__all__ = ["GAN", "GANConfig"]


@hookimpl
def register_models(register: Register) -> None:
    register("gan", GAN)
