"""Run genzoo's conformance kit against this plugin's models (the kit is a pytest plugin genzoo installs)."""
from genzoo.testing import ModelConformance


class TestBetaVAE(ModelConformance):
    model_name = "beta-vae"
    options = {"beta": 4.0}


class TestConvVAE(ModelConformance):
    model_name = "beta-conv-vae"
    options = {}
