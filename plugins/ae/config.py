"""Hyper-parameters of the plain autoencoder."""

from dataclasses import dataclass, field
from typing import ClassVar

from genzoo import ModelConfig, require_positive_int


@dataclass
class AEConfig(ModelConfig):
    latent: int = 40
    hidden: int = field(default=400, metadata={"help": "Units of the encoder's and decoder's hidden layer."})
    lr: float = 1e-3
    reconstruction_loss: str = field(default="bce-sum", metadata={"loss": "reconstruction"})
    loss_option: ClassVar[str] = "reconstruction_loss"
    prior_components: int = field(default=10, metadata={
        "help": "Components of the Gaussian mixture the gmm sampler fits to the training codes (this run's default)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("hidden", "prior_components"):
            require_positive_int(name, getattr(self, name))
