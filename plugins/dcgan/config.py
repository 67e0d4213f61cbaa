"""Hyper-parameters of the DCGAN-style GAN: Lucic et al. 2018's MNIST settings (latent 64, Adam 2e-4, beta1 0.5)."""

from dataclasses import dataclass, field

from genzoo_plugins.gan.config import GANConfig

from genzoo import require_positive_int


@dataclass
class DCGANConfig(GANConfig):
    """The built-in gan's defaults are already the paper's; this adds the networks' width."""

    width: int = field(default=64, metadata={
        "help": "Channels of the generator's last and the discriminator's first convolution; the others have "
                "2 and 16 times as many (paper: 64)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive_int("width", self.width)
