"""Reproduce ``genzoo/evaluation/mnist_classifier.pt``: the ``mnist`` FID feature network.

Trains :class:`genzoo.evaluation.mnist_classifier.MNISTClassifier` on the 60,000 MNIST
training images with a fixed seed, single-threaded deterministic kernels and a fixed
batch order, then measures its accuracy on the 10,000 test images and saves the
weights with that accuracy and the recipe. Run it as a module:

    GENZOO_DATA=../shared/data python -m genzoo.evaluation.train_classifier [--out PATH]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genzoo.data import Split, TensorSplit, resolve_data_root
from genzoo.errors import GenzooError
from genzoo.evaluation.mnist_classifier import WEIGHTS, MNISTClassifier
from genzoo.files import atomic_write
from genzoo.plugin_registry import registry

SEED = 0
EPOCHS = 4
BATCH = 128
LR = 1e-3


def accuracy(net: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(images[i:i + 1000]).argmax(1) == labels[i:i + 1000]).sum())
                      for i in range(0, len(images), 1000))
    return correct / len(images)


def _labelled(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of a split held in memory, as the built-in mnist dataset gives them."""
    if not isinstance(split, TensorSplit) or split.labels is None:
        raise GenzooError("the mnist dataset gave a split without labels in memory")
    return split.images, split.labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()

    torch.set_num_threads(1)  # thread count changes float summation order
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    dataset = registry().dataset("mnist")(resolve_data_root(), download=True)
    train_images, train_labels = _labelled(dataset.load("train"))
    test_images, test_labels = _labelled(dataset.load("test"))
    net = MNISTClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    order_rng = torch.Generator().manual_seed(SEED)
    started = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        net.train()
        order = torch.randperm(len(train_images), generator=order_rng)
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            loss = F.cross_entropy(net(train_images[idx]), train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        print(f"epoch {epoch}: last batch loss {loss.item():.4f}, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    test_accuracy = accuracy(net, test_images, test_labels)
    print(f"test accuracy {test_accuracy:.4f} on {len(test_images)} images")
    payload = {
        "state_dict": net.state_dict(),
        "test_accuracy": test_accuracy,
        "test_images": len(test_images),
        "recipe": f"Adam lr {LR}, batch {BATCH}, {args.epochs} epochs, seed {SEED}, 1 thread, "
                  f"deterministic; torch {torch.__version__}",
    }
    atomic_write(args.out, lambda f: torch.save(payload, f))
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
