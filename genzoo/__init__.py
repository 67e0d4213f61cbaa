"""genzoo: a plugin-based zoo of generative models with honest benchmarks."""

from genzoo.errors import GenzooError
from genzoo.hookspecs import Register, hookimpl
from genzoo.loss import Loss
from genzoo.model import Model, ModelConfig, require_positive_int
from genzoo.data import Dataset, Split, TensorSplit
from genzoo.plugins import registry

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "GenzooError",
    "Loss",
    "Model",
    "ModelConfig",
    "Register",
    "Split",
    "TensorSplit",
    "hookimpl",
    "registry",
    "require_positive_int",
    "__version__",
]
