"""The built-in models pass the conformance kit that plugin authors run (genzoo.testing)."""

from genzoo.testing import ModelConformance


class TestAE(ModelConformance):
    model_name = "ae"


class TestVAE(ModelConformance):
    model_name = "vae"


class TestGAN(ModelConformance):
    model_name = "gan"
