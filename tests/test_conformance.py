"""The built-in models pass the conformance kit that plugin authors run (genzoo.testing)."""

from genzoo.testing import ModelConformance, SamplerConformance


class TestAE(ModelConformance):
    model_name = "ae"


class TestVAE(ModelConformance):
    model_name = "vae"


class TestGAN(ModelConformance):
    model_name = "gan"


class TestModelSampler(SamplerConformance):
    sampler_name = "model"
    model_name = "vae"


class TestNormalSampler(SamplerConformance):
    sampler_name = "normal"
    model_name = "ae"


class TestGMMSampler(SamplerConformance):
    sampler_name = "gmm"
    model_name = "ae"
    options = {"components": 3}
