"""The hooks a genzoo plugin may implement.

Each hook receives a ``register`` callback, as in llm and datasette: a plugin calls
``register(name, thing)`` once per model class, loss, dataset, logger or sampler it provides.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("genzoo")
hookimpl = pluggy.HookimplMarker("genzoo")

Register = Callable[[str, Any], None]


@hookspec
def register_models(register: Register) -> None:
    """Register :class:`genzoo.Model` subclasses: ``register("vae", VAE)``."""


@hookspec
def register_losses(register: Register) -> None:
    """Register :class:`genzoo.Loss` instances: ``register("bce-sum", BCESum())``."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register :class:`genzoo.Dataset` subclasses: ``register("mnist", MNIST)``."""


@hookspec
def register_loggers(register: Register) -> None:
    """Register :class:`genzoo.Logger` subclasses: ``register("tensorboard", TensorBoardLogger)``."""


@hookspec
def register_samplers(register: Register) -> None:
    """Register :class:`genzoo.Sampler` subclasses: ``register("gmm", GaussianMixtureSampler)``."""
