"""Hyper-parameters of the MLP GAN (Adam 2e-4, beta1 0.5, as DCGAN recommends)."""

from dataclasses import dataclass, field
from typing import ClassVar

from genzoo import GenzooError, ModelConfig


@dataclass
class GANConfig(ModelConfig):
    latent: int = 64
    lr: float = 2e-4
    beta1: float = field(default=0.5, metadata={"help": "Adam's beta1 for both networks."})
    adversarial_loss: str = field(default="non-saturating", metadata={"loss": "adversarial"})
    loss_option: ClassVar[str] = "adversarial_loss"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.beta1 < 1:
            raise GenzooError(f"beta1 must be in [0, 1), got {self.beta1!r}")
