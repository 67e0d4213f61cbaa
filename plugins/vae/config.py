"""Hyper-parameters of the VAE, with the source article's defaults."""

from dataclasses import dataclass, field

from genzoo import VariationalAutoencoderConfig, require_positive_int


@dataclass
class VAEConfig(VariationalAutoencoderConfig):
    latent: int = 40
    hidden: int = field(default=400, metadata={"help": "Units of the encoder's and decoder's hidden layer."})
    lr: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive_int("hidden", self.hidden)
