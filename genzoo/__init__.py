"""genzoo: a plugin-based zoo of generative models with honest benchmarks.

Every public name is imported when first used (PEP 562), so ``import genzoo`` imports
neither torch nor the plugins: a plugin's ``from genzoo import hookimpl`` and a
script's ``genzoo.list_models()`` pay only for what they use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module that defines it.
_EXPORTS = {
    "Dataset": "genzoo.data",
    "FileCheck": "genzoo.data",
    "GenzooError": "genzoo.errors",
    "Logger": "genzoo.logger",
    "Loss": "genzoo.loss",
    "Model": "genzoo.model",
    "ModelConfig": "genzoo.model",
    "Posterior": "genzoo.latent",
    "Register": "genzoo.hookspecs",
    "Run": "genzoo.api",
    "Sampler": "genzoo.sampler",
    "SamplerConfig": "genzoo.sampler",
    "Split": "genzoo.data",
    "TensorSplit": "genzoo.data",
    "VariationalAutoencoder": "genzoo.latent",
    "VariationalAutoencoderConfig": "genzoo.latent",
    "atomic_write": "genzoo.files",
    "download_file": "genzoo.data",
    "download_timeout": "genzoo.data",
    "get_model": "genzoo.api",
    "hookimpl": "genzoo.hookspecs",
    "list_models": "genzoo.api",
    "load_model": "genzoo.api",
    "mirror_url": "genzoo.data",
    "open_run": "genzoo.api",
    "registry": "genzoo.plugin_registry",
    "require_positive_int": "genzoo.model",
}

#: Also in ``_EXPORTS`` and the ``TYPE_CHECKING`` imports below; tests/test_api.py checks all three agree.
__all__ = [
    "Dataset",
    "FileCheck",
    "GenzooError",
    "Logger",
    "Loss",
    "Model",
    "ModelConfig",
    "Posterior",
    "Register",
    "Run",
    "Sampler",
    "SamplerConfig",
    "Split",
    "TensorSplit",
    "VariationalAutoencoder",
    "VariationalAutoencoderConfig",
    "atomic_write",
    "download_file",
    "download_timeout",
    "get_model",
    "hookimpl",
    "list_models",
    "load_model",
    "mirror_url",
    "open_run",
    "registry",
    "require_positive_int",
    "__version__",
]

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from genzoo.api import Run, get_model, list_models, load_model, open_run
    from genzoo.data import Dataset, FileCheck, Split, TensorSplit, download_file, download_timeout, mirror_url
    from genzoo.errors import GenzooError
    from genzoo.files import atomic_write
    from genzoo.hookspecs import Register, hookimpl
    from genzoo.latent import Posterior, VariationalAutoencoder, VariationalAutoencoderConfig
    from genzoo.logger import Logger
    from genzoo.loss import Loss
    from genzoo.model import Model, ModelConfig, require_positive_int
    from genzoo.plugin_registry import registry
    from genzoo.sampler import Sampler, SamplerConfig


def __getattr__(name: str) -> Any:
    """Import a public name on first use, then keep it as a plain attribute."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genzoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
