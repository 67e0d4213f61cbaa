"""The fully connected stacks the built-in MLP models are made of."""

from __future__ import annotations

from torch import nn


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU, **kwargs) -> nn.Sequential:
    """Linear layers between consecutive ``sizes``, with ``activation`` between them.

    The last layer has no activation: models apply sigmoid or keep logits themselves.
    """
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        if i:
            layers.append(activation(**kwargs))
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)
