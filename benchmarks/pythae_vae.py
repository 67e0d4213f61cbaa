"""pythae's VAE with the article's MLP, trained through pythae's own TrainingPipeline: issue 15's peer.

    python benchmarks/pythae_vae.py --epochs 5      # one whole process, as benchmarks/step_kinds.py times it

The same networks (784-400-40 with ReLU, a Bernoulli decoder scored by binary cross-entropy),
Adam at 1e-3 and batches of 100 as ``genzoo train vae --latent 40``. The script does what a
pythae user does: reads MNIST through torchvision, scales it to [0, 1] and hands the training
and test images to the pipeline, which evaluates on the test images after every epoch (as
genzoo's trainer does) and saves the final model. It never imports genzoo, so its start-up is
pythae's own. Needs ``pip install 'genzoo[bench-pythae]'`` (pythae beside this torch).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

import torch
from torch import nn

LATENT, HIDDEN, PIXELS = 40, 400, 28 * 28


def pythae_vae(latent: int = LATENT, hidden: int = HIDDEN) -> Any:
    """pythae's ``VAE`` with the article's encoder and decoder."""
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(PIXELS, hidden), nn.ReLU())
            self.mu, self.logvar = nn.Linear(hidden, latent), nn.Linear(hidden, latent)

        def forward(self, x: torch.Tensor) -> Any:
            h = self.body(x.flatten(1))
            return ModelOutput(embedding=self.mu(h), log_covariance=self.logvar(h))

    class Decoder(BaseDecoder):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, PIXELS))

        def forward(self, z: torch.Tensor) -> Any:
            return ModelOutput(reconstruction=torch.sigmoid(self.body(z)).view(-1, 1, 28, 28))

    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=latent, reconstruction_loss="bce")
    return VAE(model_config=config, encoder=Encoder(), decoder=Decoder())


def train(train_images: torch.Tensor, eval_images: torch.Tensor, epochs: int, batch_size: int = 100,
          cuda: bool = False) -> float:
    """Seconds of pythae's TrainingPipeline over ``epochs`` epochs (images in [0, 1], shape N x 1 x 28 x 28)."""
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig

    with tempfile.TemporaryDirectory(prefix="genzoo-pythae-") as out:
        config = BaseTrainerConfig(output_dir=out, learning_rate=1e-3, per_device_train_batch_size=batch_size,
                                   per_device_eval_batch_size=1000, num_epochs=epochs, no_cuda=not cuda,
                                   steps_saving=None, optimizer_cls="Adam")
        started = time.perf_counter()
        TrainingPipeline(training_config=config, model=pythae_vae())(
            train_data=train_images.numpy(), eval_data=eval_images.numpy())
        return time.perf_counter() - started


def mnist(root: str, train_split: bool) -> torch.Tensor:
    """A split of MNIST through torchvision, in [0, 1], as pythae's examples read it."""
    from torchvision.datasets import MNIST

    return MNIST(root, train=train_split, download=False).data.unsqueeze(1).float() / 255.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data-root", default=os.environ.get("GENZOO_DATA"),
                        help="the folder holding MNIST/raw [default: $GENZOO_DATA]")
    args = parser.parse_args(argv)
    if not args.data_root:
        parser.error("give --data-root or set GENZOO_DATA")
    seconds = train(mnist(args.data_root, True), mnist(args.data_root, False), args.epochs,
                    cuda=torch.cuda.is_available())
    print(f"pythae: {args.epochs} epochs in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
