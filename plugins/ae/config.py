"""Hyper-parameters of the plain autoencoder."""

from dataclasses import dataclass, field
from typing import ClassVar

from genzoo import ModelConfig, require_positive_int


@dataclass
class AutoencoderConfig(ModelConfig):
    """What every autoencoder here has, whatever its networks (conv-ae's config extends it too)."""

    latent: int = 40
    lr: float = 1e-3
    reconstruction_loss: str = field(default="bce-sum", metadata={"loss": "reconstruction"})
    loss_option: ClassVar[str] = "reconstruction_loss"
    prior_components: int = field(default=10, metadata={
        "help": "Components of the Gaussian mixture the gmm sampler fits to the training codes (this run's default)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive_int("prior_components", self.prior_components)


@dataclass
class AEConfig(AutoencoderConfig):
    hidden: int = field(default=400, metadata={"help": "Units of the encoder's and decoder's hidden layer."})

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive_int("hidden", self.hidden)
