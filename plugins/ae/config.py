"""Hyper-parameters of the plain autoencoder."""

from dataclasses import dataclass
from typing import ClassVar

from genzoo import GenzooError, ModelConfig


@dataclass
class AEConfig(ModelConfig):
    latent: int = 40
    hidden: int = 400
    lr: float = 1e-3
    reconstruction_loss: str = "bce-sum"
    loss_option: ClassVar[str] = "reconstruction_loss"
    #: Components of the Gaussian mixture fitted to the training codes for sampling.
    prior_components: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.prior_components, int) or self.prior_components < 1:
            raise GenzooError(f"prior_components must be a positive integer, got {self.prior_components!r}")
