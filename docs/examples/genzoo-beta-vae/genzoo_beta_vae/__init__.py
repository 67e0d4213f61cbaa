"""genzoo-beta-vae: an example third-party genzoo plugin adding two models.

genzoo imports this module through the ``genzoo`` entry point in pyproject.toml and
calls its hook; that hook is all a plugin needs to add models.
"""

from __future__ import annotations

from genzoo import Register, hookimpl
from genzoo_beta_vae.beta_vae import BetaVAE, BetaVAEConfig
from genzoo_beta_vae.conv_vae import ConvVAE, ConvVAEConfig

__all__ = ["BetaVAE", "BetaVAEConfig", "ConvVAE", "ConvVAEConfig"]


@hookimpl
def register_models(register: Register) -> None:
    register("beta-vae", BetaVAE)
    register("beta-conv-vae", ConvVAE)
