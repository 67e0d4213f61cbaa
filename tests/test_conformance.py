"""The built-in models pass the conformance kit that plugin authors run (genzoo.testing)."""

from genzoo.testing import ModelConformance, SamplerConformance


class TestAE(ModelConformance):
    model_name = "ae"


class TestVAE(ModelConformance):
    model_name = "vae"


class TestGAN(ModelConformance):
    model_name = "gan"


# The convolutional models at a tiny width: the same networks, a few seconds on a CPU.
class TestConvAE(ModelConformance):
    model_name = "conv-ae"
    options = {"width": 4}


class TestConvVAE(ModelConformance):
    model_name = "conv-vae"
    options = {"width": 4}


class TestDCGAN(ModelConformance):
    model_name = "dcgan"
    options = {"width": 4}


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
