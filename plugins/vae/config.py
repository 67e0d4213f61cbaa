"""Hyper-parameters of the VAE, with the source article's defaults."""

from dataclasses import dataclass, field
from typing import ClassVar

from genzoo import ModelConfig, require_positive_int


@dataclass
class VAEConfig(ModelConfig):
    latent: int = 40
    hidden: int = field(default=400, metadata={"help": "Units of the encoder's and decoder's hidden layer."})
    lr: float = 1e-3
    reconstruction_loss: str = "bce-sum"
    loss_option: ClassVar[str] = "reconstruction_loss"

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive_int("hidden", self.hidden)
