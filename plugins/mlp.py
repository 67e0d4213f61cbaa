"""The fully connected stacks the built-in MLP models are made of."""

from __future__ import annotations

from typing import Callable

from torch import nn


def mlp(
    sizes: list[int],
    activation: Callable[[], nn.Module] = nn.ReLU,
    batch_norm: bool = False,
    dropout: float = 0.0,
) -> nn.Sequential:
    """Linear layers between consecutive ``sizes``; each hidden layer is followed by
    (optional) batch norm, ``activation`` and (optional) dropout.

    The last layer has nothing after it: models apply sigmoid or keep logits themselves.
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(activation())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
