"""The sampler conformance kit fails a sampler for exactly the fault it has, and passes a sound one.

Each broken sampler below differs from a small, correct one (N(0, I) codes scaled by a
width fitted to the training codes) in one way; the kit runs against all of them in a
pytester session, and the failures must be exactly the checks that fault should trip.
"""

from __future__ import annotations

from pytester_support import run_session

from genzoo.testing import SamplerConformance

SAMPLERS = '''
import dataclasses

import pytest
import torch

from genzoo import Sampler, SamplerConfig, hookimpl
from genzoo.testing import SamplerConformance


@dataclasses.dataclass
class ScaledConfig(SamplerConfig):
    shrink: float = 1.0


class Scaled(Sampler):
    """Codes drawn from N(0, s^2 I), s the training codes' standard deviation."""

    Config = ScaledConfig
    needs_fit = True
    fit_version = "1"

    def fit(self, train):
        codes = torch.cat([self.model.encode(x) for x in train.batches(50)])
        self.scale = float(codes.detach().std()) / self.config.shrink

    def fitted_state(self):
        return {"scale": torch.tensor(self.scale)}

    def load_fitted_state(self, state):
        self.scale = float(state["scale"])

    def codes(self, n):
        return torch.randn(n, self.model.config.latent) * self.scale

    def sample(self, n):
        return self.model.decode(self.codes(n))

    def description(self, short=False):
        return "scaled normal codes"


class LogitSamples(Scaled):
    def sample(self, n):
        return self.model.decoder(self.codes(n)).view(n, 1, 28, 28)


class OneTooMany(Scaled):
    def sample(self, n):
        return self.model.decode(self.codes(n + 1))


class Constant(Scaled):
    def codes(self, n):
        return torch.zeros(n, self.model.config.latent)


class GlobalStreamFit(Scaled):
    def fit(self, train):
        super().fit(train)
        self.scale *= float(torch.rand(())) + 0.5  # the global random stream, not a generator of its own


class FitTouchesModel(Scaled):
    def fit(self, train):
        super().fit(train)
        with torch.no_grad():
            next(self.model.parameters()).mul_(0.5)


class DrawsFromAnything(Scaled):
    @classmethod
    def unsupported(cls, model):
        return None


class ForgetsItsFit(Scaled):
    def load_fitted_state(self, state):
        self.scale = 1.0


class LeavesOutATensor(Scaled):
    """Its fit finds a shift too, which fitted_state leaves out (the GMM with its weights forgotten)."""
    shift = 0.0

    def fit(self, train):
        super().fit(train)
        self.shift = 0.5

    def codes(self, n):
        return super().codes(n) + self.shift


class EscapedDescription(Scaled):
    def description(self, short=False):
        return "\\x1b[31mred"


@dataclasses.dataclass
class PlainConfig:
    shrink: float = 1.0

    @classmethod
    def from_dict(cls, values):
        return cls(**values)


class NotASamplerConfig(Scaled):
    Config = PlainConfig


BROKEN = {
    "logit-samples": LogitSamples, "one-too-many": OneTooMany, "constant": Constant,
    "global-stream-fit": GlobalStreamFit, "fit-touches-model": FitTouchesModel,
    "draws-from-anything": DrawsFromAnything, "escaped-description": EscapedDescription,
    "forgets-its-fit": ForgetsItsFit, "leaves-out-a-tensor": LeavesOutATensor,
    "not-a-sampler-config": NotASamplerConfig,
}


class Plugin:
    @hookimpl
    def register_samplers(self, register):
        register("scaled", Scaled)
        for name, cls in BROKEN.items():
            register(name, cls)


@pytest.fixture(autouse=True)
def plugin(genzoo_register):
    genzoo_register(Plugin(), "sampler-kit-test")


class TestScaled(SamplerConformance):
    sampler_name = "scaled"
    model_name = "ae"
    model_options = {"latent": 4, "hidden": 16, "prior_components": 2}

'''

VALID = "test_samples_are_valid_images"
BROKEN = {
    "logit-samples": {VALID},
    "one-too-many": {VALID},
    "constant": {VALID},
    "global-stream-fit": {"test_deterministic_under_a_seed"},
    # The two builds of the determinism check then draw from two different models; genzoo's own build
    # (its guard) refuses a fit that changes the model.
    "fit-touches-model": {"test_fit_and_sample_leave_the_model_alone", "test_deterministic_under_a_seed",
                          "test_builds_through_the_registry_like_genzoo"},
    "draws-from-anything": {"test_says_why_it_cannot_draw_from_a_model_that_can_do_nothing"},
    "escaped-description": {"test_builds_through_the_registry_like_genzoo"},
    "forgets-its-fit": {"test_a_cached_fit_draws_as_the_fit"},
    "leaves-out-a-tensor": {"test_a_cached_fit_draws_as_the_fit"},
    "not-a-sampler-config": {"test_config_is_a_sampler_config_dataclass"},
}
MESSAGES = {
    ("logit-samples", VALID): "must return pixels in [0, 1]",
    ("one-too-many", VALID): "sample(1) must return shape (1, 1, 28, 28), got (2, 1, 28, 28)",
    ("constant", VALID): "all 16 samples are identical",
    ("forgets-its-fit", "test_a_cached_fit_draws_as_the_fit"): "draws other images than the one that fitted",
    ("leaves-out-a-tensor", "test_a_cached_fit_draws_as_the_fit"): "fitted_state must hold all that fit found",
    ("fit-touches-model", "test_builds_through_the_registry_like_genzoo"): "changed the model's",
}


def _class_name(sampler: str) -> str:
    return "Test" + "".join(part.title() for part in sampler.split("-"))


def test_the_kit_fails_each_broken_sampler_on_its_fault_only(pytester):
    classes = "".join(
        f"class {_class_name(name)}(TestScaled):\n    sampler_name = {name!r}\n\n\n" for name in BROKEN)
    pytester.makepyfile(test_sampler_kit=SAMPLERS + "\n" + classes)
    outcomes = run_session(pytester)
    failures: dict[str, set[str]] = {}
    messages: dict[tuple[str, str], str] = {}
    for test in outcomes:
        assert test.outcome != "error", test.message
        if test.outcome == "failed":
            failures.setdefault(test.cls, set()).add(test.name)
            messages[test.cls, test.name] = test.message
    assert failures == {_class_name(name): checks for name, checks in BROKEN.items()}
    for (sampler, check), message in MESSAGES.items():
        assert message in messages[_class_name(sampler), check], messages[_class_name(sampler), check]
    checks = {name for name in dir(SamplerConformance) if name.startswith("test_")}
    scaled = {test.name: test.outcome for test in outcomes if test.cls == "TestScaled"}
    assert scaled == {name: "passed" for name in checks}
