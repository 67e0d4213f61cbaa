"""Hyper-parameters of the convolutional VAE, with Ghosh et al. 2020's MNIST defaults."""

from dataclasses import dataclass, field

from genzoo import VariationalAutoencoderConfig, require_positive_int


@dataclass
class ConvVAEConfig(VariationalAutoencoderConfig):
    """Latent 16 and 128 base channels as in the paper; Adam 1e-4 as in the authors' code for their VAE."""

    latent: int = 16
    lr: float = 1e-4
    width: int = field(default=128, metadata={
        "help": "Channels of the first convolution; the others have 2, 4 and 8 times as many (paper: 128)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive_int("width", self.width)
