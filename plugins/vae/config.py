"""Hyper-parameters of the VAE, with the source article's defaults."""

from dataclasses import dataclass
from typing import ClassVar

from genzoo import ModelConfig


@dataclass
class VAEConfig(ModelConfig):
    latent: int = 40
    hidden: int = 400
    lr: float = 1e-3
    reconstruction_loss: str = "bce-sum"
    loss_option: ClassVar[str] = "reconstruction_loss"
