"""The built-in dataset plugins: MNIST and Fashion-MNIST through torchvision."""

from genzoo_plugins.datasets.mnist import MNIST, FashionMNIST

from genzoo import Register, hookimpl

__all__ = ["MNIST", "FashionMNIST"]


@hookimpl
def register_datasets(register: Register) -> None:
    register("mnist", MNIST)
    register("fashion-mnist", FashionMNIST)
