"""Testing tools for genzoo plugin authors: the conformance suite, fixtures, synthetic data.

genzoo installs :mod:`genzoo.testing.pytest_plugin` through the ``pytest11`` entry
point, so its fixtures are available in any test suite once genzoo is installed.
"""

from genzoo.testing.conformance import ModelConformance
from genzoo.testing.images import synthetic_images
from genzoo.testing.sampler_conformance import SamplerConformance
from genzoo.trainer import training_step

#: ``training_step(model, x, optimizers)``: one step as the trainer takes it, for tests
#: of a model's objective; it returns the per-image losses, detached.
__all__ = ["ModelConformance", "SamplerConformance", "synthetic_images", "training_step"]
