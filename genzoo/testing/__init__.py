"""Testing tools for genzoo plugin authors: the conformance suite, fixtures, synthetic data.

genzoo installs :mod:`genzoo.testing.pytest_plugin` through the ``pytest11`` entry
point, so its fixtures are available in any test suite once genzoo is installed.
"""

from genzoo.testing.conformance import ModelConformance
from genzoo.testing.images import synthetic_images

__all__ = ["ModelConformance", "synthetic_images"]
