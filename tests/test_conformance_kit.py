"""The conformance kit fails a model for exactly the fault it has, and passes a sound one.

Each broken model below differs from a small, correct linear autoencoder in one
way; the kit runs against all of them in a pytester session, and the failures must
be exactly the checks that fault should trip.
"""

from __future__ import annotations

from genzoo.testing import ModelConformance
from pytester_support import run_session

MODELS = '''
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F

from genzoo import Model, ModelConfig, hookimpl, registry
from genzoo.testing import ModelConformance


@dataclass
class TinyConfig(ModelConfig):
    latent: int = 8
    width: float = field(default=1.0, metadata={"help": "Standard deviation of the sampling prior."})


class Tiny(Model):
    """A sound linear autoencoder with a Gaussian sampling prior."""

    Config = TinyConfig
    can_reconstruct = can_sample = can_encode = True

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.encoder = torch.nn.Linear(784, config.latent)
        self.decoder = torch.nn.Linear(config.latent, 784)

    def logits(self, x):
        return self.decoder(self.encoder(x.flatten(1)))

    def losses(self, x):
        return F.binary_cross_entropy_with_logits(self.logits(x), x.flatten(1), reduction="none").sum(1)

    def training_step(self, x, optimizers):
        optimizers["adam"].zero_grad()
        loss = self.losses(x).mean()
        loss.backward()
        optimizers["adam"].step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def evaluate(self, x):
        return {"loss": self.losses(x).sum()}

    def encode(self, x):
        return self.encoder(x.flatten(1))

    def reconstruct(self, x):
        return torch.sigmoid(self.logits(x)).view(-1, *self.sample_shape)

    @torch.no_grad()
    def sample(self, n):
        z = torch.randn(n, self.config.latent, device=self.device) * self.config.width
        return torch.sigmoid(self.decoder(z)).view(-1, *self.sample_shape)


class MeanEvaluate(Tiny):
    @torch.no_grad()
    def evaluate(self, x):
        return {"loss": self.losses(x).mean()}


class LogitSamples(Tiny):
    @torch.no_grad()
    def sample(self, n):
        return self.decoder(torch.randn(n, self.config.latent)).view(-1, *self.sample_shape)


class PriorOutsideStateDict(Tiny):
    """Fits its prior's scale after training but keeps it in a plain attribute."""

    scale = 1.0

    def after_training(self, train):
        with torch.no_grad():
            self.scale = float(self.encode(next(iter(train.batches(96)))).std())

    @torch.no_grad()
    def sample(self, n):
        z = torch.randn(n, self.config.latent) * self.scale
        return torch.sigmoid(self.decoder(z)).view(-1, *self.sample_shape)


class UnseededSampler(Tiny):
    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.noise = torch.Generator().manual_seed(torch.seed())  # not torch's seeded stream

    @torch.no_grad()
    def sample(self, n):
        z = torch.randn(n, self.config.latent, generator=self.noise)
        return torch.sigmoid(self.decoder(z)).view(-1, *self.sample_shape)


@dataclass
class UndocumentedConfig(TinyConfig):
    depth: int = 2


class UndocumentedOption(Tiny):
    Config = UndocumentedConfig


@dataclass
class SetConfig(TinyConfig):
    layers: frozenset = frozenset({1, 2})


class UnserialisableConfig(Tiny):
    Config = SetConfig


class WrongErrorForMissingCapability(Tiny):
    can_encode = False

    def encode(self, x):
        raise NotImplementedError


class StepCountOutsideStateDict(Tiny):
    """Halves its learning rate every step, counting steps in a plain attribute."""

    steps = 0

    def training_step(self, x, optimizers):
        self.steps += 1
        for group in optimizers["adam"].param_groups:
            group["lr"] = self.config.lr / self.steps
        return super().training_step(x, optimizers)


class LogOfReluVariance(Tiny):
    """A Gaussian encoder whose log-variance is log(relu(.)): -inf for half the units."""

    has_elbo = True

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.variance_head = torch.nn.Linear(784, config.latent)
        self.reconstruction_loss = registry().loss("bce-sum")
        self.kl = registry().loss("kl-normal")

    def posterior(self, x):
        return self.encoder(x.flatten(1)), torch.log(torch.relu(self.variance_head(x.flatten(1))))

    def decode_logits(self, z):
        return self.decoder(z)

    def negative_elbo(self, x):
        mu, logvar = self.posterior(x)
        bce, kl = self.reconstruction_loss(self.decode_logits(mu), x), self.kl(mu, logvar)
        return {"nelbo": bce + kl, "bce": bce, "kl": kl}


class LossNamesInAList(Tiny):
    loss_names = ["loss"]


class AttachedStats(Tiny):
    """Returns the loss with its graph: the trainer would keep every step's graph alive."""

    def training_step(self, x, optimizers):
        optimizers["adam"].zero_grad()
        loss = self.losses(x).mean()
        loss.backward()
        optimizers["adam"].step()
        return {"loss": loss}


class SumStats(Tiny):
    """Trains on the mean but reports the batch's sum: train_loss would be batch-size times too large."""

    def training_step(self, x, optimizers):
        super().training_step(x, optimizers)
        return {"loss": self.losses(x).sum().detach()}


class ForgetsToStep(Tiny):
    def training_step(self, x, optimizers):
        optimizers["adam"].zero_grad()
        loss = self.losses(x).mean()
        loss.backward()
        return {"loss": loss.detach()}


class EvaluateUpdatesStatistics(Tiny):
    """Keeps a running mean of the pixels in a buffer, and updates it in evaluate too."""

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.register_buffer("pixel_mean", torch.zeros(()))

    @torch.no_grad()
    def evaluate(self, x):
        self.pixel_mean.mul_(0.9).add_(0.1 * x.mean())
        return super().evaluate(x)


class LogitReconstructions(Tiny):
    def reconstruct(self, x):
        return self.logits(x).view(-1, *self.sample_shape)


class CodesAsColumns(Tiny):
    def encode(self, x):
        return self.encoder(x.flatten(1)).T


class HeavyBall(torch.optim.Optimizer):
    """SGD with momentum that keeps its velocities in an attribute, outside state_dict()."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})
        self.velocity = {}

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                v = self.velocity.setdefault(p, torch.zeros_like(p))
                v.mul_(0.9).add_(p.grad)
                p.add_(v, alpha=-group["lr"])


class HeavyBallSavedNotLoaded(HeavyBall):
    """Saves its velocities in state_dict(), but the inherited load_state_dict() ignores them."""

    def state_dict(self):
        params = [p for group in self.param_groups for p in group["params"]]
        return {**super().state_dict(), "velocity": [self.velocity.get(p) for p in params]}


class MomentumOutsideStateDict(Tiny):
    def configure_optimizers(self):
        return {"adam": HeavyBall(self.parameters(), self.config.lr)}


class MomentumSavedNotLoaded(Tiny):
    def configure_optimizers(self):
        return {"adam": HeavyBallSavedNotLoaded(self.parameters(), self.config.lr)}


BROKEN = {
    "loss-names-in-a-list": LossNamesInAList,
    "attached-stats": AttachedStats,
    "sum-stats": SumStats,
    "forgets-to-step": ForgetsToStep,
    "evaluate-updates-statistics": EvaluateUpdatesStatistics,
    "logit-reconstructions": LogitReconstructions,
    "codes-as-columns": CodesAsColumns,
    "momentum-outside-state-dict": MomentumOutsideStateDict,
    "momentum-saved-not-loaded": MomentumSavedNotLoaded,
    "log-of-relu-variance": LogOfReluVariance,
    "mean-evaluate": MeanEvaluate,
    "logit-samples": LogitSamples,
    "prior-outside-state-dict": PriorOutsideStateDict,
    "unseeded-sampler": UnseededSampler,
    "undocumented-option": UndocumentedOption,
    "unserialisable-config": UnserialisableConfig,
    "wrong-error": WrongErrorForMissingCapability,
    "steps-outside-state-dict": StepCountOutsideStateDict,
}


class Plugin:
    @hookimpl
    def register_models(self, register):
        register("tiny", Tiny)
        for name, cls in BROKEN.items():
            register(name, cls)


@pytest.fixture(autouse=True)
def plugin(genzoo_register):
    genzoo_register(Plugin(), "kit-test")


class TestTiny(ModelConformance):
    model_name = "tiny"

'''

STEP_STATS = "test_training_step_returns_finite_detached_means"
ROUND_TRIP = "test_state_round_trips_through_weights_only_load"
RESUME = "test_resumed_training_equals_uninterrupted"
BROKEN = {
    "loss-names-in-a-list": {"test_builds_as_a_genzoo_model"},
    "attached-stats": {STEP_STATS},
    "sum-stats": {STEP_STATS},
    "forgets-to-step": {"test_one_training_step_lowers_the_loss_on_a_fixed_batch"},
    "evaluate-updates-statistics": {"test_evaluate_leaves_the_weights_alone"},
    "logit-reconstructions": {"test_reconstructions_are_valid_images"},
    "codes-as-columns": {"test_codes_have_one_row_per_image"},
    "momentum-outside-state-dict": {ROUND_TRIP, RESUME},
    "momentum-saved-not-loaded": {ROUND_TRIP, RESUME},
    "log-of-relu-variance": {"test_negative_elbo_is_per_image",
                             "test_importance_weights_are_finite_when_the_model_offers_them"},
    "mean-evaluate": {"test_evaluate_returns_sums_over_the_batch"},
    "logit-samples": {"test_samples_are_valid_images"},
    "prior-outside-state-dict": {"test_state_round_trips_through_weights_only_load"},
    "unseeded-sampler": {"test_deterministic_under_a_seed", "test_state_round_trips_through_weights_only_load"},
    "undocumented-option": {"test_config_fields_become_command_line_options"},
    "unserialisable-config": {"test_config_is_a_model_config_dataclass"},
    "wrong-error": {"test_missing_capabilities_fail_with_a_genzoo_error"},
    "steps-outside-state-dict": {ROUND_TRIP, RESUME},  # its step count sets the learning rate
}
#: Checks that test several things fail on the assertion aimed at the model's fault.
MESSAGES = {
    ("attached-stats", STEP_STATS): "must be detached",
    ("sum-stats", STEP_STATS): "must be the batch's per-image mean",
    ("momentum-outside-state-dict", ROUND_TRIP): "one more training step after loading gives other weights",
    ("momentum-saved-not-loaded", ROUND_TRIP): "optimiser state differs after loading it into a fresh model",
}


def _class_name(model: str) -> str:
    return "Test" + "".join(part.title() for part in model.split("-"))


def test_the_kit_fails_each_broken_model_on_its_fault_only(pytester):
    classes = "".join(
        f"class {_class_name(name)}(ModelConformance):\n    model_name = {name!r}\n\n\n" for name in BROKEN
    )
    pytester.makepyfile(test_kit=MODELS + "\n" + classes)
    outcomes = run_session(pytester)
    failures: dict[str, set[str]] = {}
    messages: dict[tuple[str, str], str] = {}
    for test in outcomes:
        assert test.outcome != "error", test.message
        if test.outcome == "failed":
            failures.setdefault(test.cls, set()).add(test.name)
            messages[test.cls, test.name] = test.message
    expected = {_class_name(name): checks for name, checks in BROKEN.items()}
    assert failures == expected
    for (model, check), message in MESSAGES.items():
        assert message in messages[_class_name(model), check], messages[_class_name(model), check]
    # Tiny claims no ELBO and offers no posterior: only those checks skip; every other one passes.
    checks = {name for name in dir(ModelConformance) if name.startswith("test_")}
    no_elbo = {"test_negative_elbo_is_per_image", "test_importance_weights_are_finite_when_the_model_offers_them"}
    tiny = {test.name: test.outcome for test in outcomes if test.cls == "TestTiny"}
    assert tiny == {name: "skipped" if name in no_elbo else "passed" for name in checks}
