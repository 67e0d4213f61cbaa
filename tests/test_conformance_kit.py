"""The conformance kit fails a model for exactly the fault it has, and passes a sound one.

Each broken model below differs from a small, correct linear autoencoder in one
way; the kit runs against all of them in a pytester session, and the failures must
be exactly the checks that fault should trip.
"""

from __future__ import annotations

from pytester_support import run_session

from genzoo.testing import ModelConformance

MODELS = '''
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F

from genzoo import Model, ModelConfig, Posterior, VariationalAutoencoder, VariationalAutoencoderConfig, hookimpl
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

    def loss(self, x):
        return {"loss": F.binary_cross_entropy_with_logits(self.logits(x), x.flatten(1), reduction="none").sum(1)}

    def encode(self, x):
        return self.encoder(x.flatten(1))

    def decode(self, z):
        return torch.sigmoid(self.decoder(z)).view(-1, *self.sample_shape)

    def reconstruct(self, x):
        return torch.sigmoid(self.logits(x)).view(-1, *self.sample_shape)

    @torch.no_grad()
    def sample(self, n):
        z = torch.randn(n, self.config.latent, device=self.device) * self.config.width
        return torch.sigmoid(self.decoder(z)).view(-1, *self.sample_shape)


class MeanEvaluate(Tiny):
    """Averages its evaluation over the batch itself: the trainer's mean would be wrong."""

    @torch.no_grad()
    def evaluate(self, x):
        return {"loss": self.loss(x)["loss"].mean()}


class LogitDecodes(Tiny):
    """Decodes codes to logits, not images: genzoo latent would draw and measure them as images."""

    def decode(self, z):
        return self.decoder(z).view(-1, *self.sample_shape)


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


class ManualTiny(Tiny):
    """Tiny with manual optimisation, as a model with several optimisers has."""

    automatic_optimization = False

    def training_step(self, x, optimizers):
        optimizers["adam"].zero_grad()
        losses = self.loss(x)
        losses["loss"].mean().backward()
        optimizers["adam"].step()
        return losses


class StepCountOutsideStateDict(ManualTiny):
    """Halves its learning rate every step, counting steps in a plain attribute."""

    steps = 0

    def training_step(self, x, optimizers):
        self.steps += 1
        for group in optimizers["adam"].param_groups:
            group["lr"] = self.config.lr / self.steps
        return super().training_step(x, optimizers)


@dataclass
class TinyVAEConfig(VariationalAutoencoderConfig):
    latent: int = 8


class LogOfReluVariance(VariationalAutoencoder):
    """A Gaussian encoder whose log-variance is log(relu(.)): -inf for half the units.

    It trains on the reconstruction of the mean alone, so only its ELBO and its
    importance weights meet the broken variance.
    """

    Config = TinyVAEConfig
    loss_names = ("loss",)

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.encoder = torch.nn.Linear(784, config.latent)
        self.variance_head = torch.nn.Linear(784, config.latent)
        self.decoder = torch.nn.Linear(config.latent, 784)

    def posterior(self, x):
        return Posterior(self.encoder(x.flatten(1)), torch.log(torch.relu(self.variance_head(x.flatten(1)))))

    def decode_logits(self, z):
        return self.decoder(z)

    def loss(self, x):
        return {"loss": self.losses["reconstruction_loss"](self.decode_logits(self.encode(x)), x)}


class LossNamesInAList(Tiny):
    loss_names = ["loss"]


class SumLoss(Tiny):
    """Sums its loss over the batch itself: train_loss would be batch-size times too large."""

    def loss(self, x):
        return {"loss": super().loss(x)["loss"].sum()}


class ManualBatchMean(ManualTiny):
    """Steps its own optimiser but reports the batch's mean, not one value per image."""

    def training_step(self, x, optimizers):
        return {"loss": super().training_step(x, optimizers)["loss"].mean()}


class ForgetsToStep(ManualTiny):
    def training_step(self, x, optimizers):
        optimizers["adam"].zero_grad()
        losses = self.loss(x)
        losses["loss"].mean().backward()
        return losses


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
    "sum-loss": SumLoss,
    "manual-batch-mean": ManualBatchMean,
    "forgets-to-step": ForgetsToStep,
    "evaluate-updates-statistics": EvaluateUpdatesStatistics,
    "logit-reconstructions": LogitReconstructions,
    "codes-as-columns": CodesAsColumns,
    "momentum-outside-state-dict": MomentumOutsideStateDict,
    "momentum-saved-not-loaded": MomentumSavedNotLoaded,
    "log-of-relu-variance": LogOfReluVariance,
    "mean-evaluate": MeanEvaluate,
    "logit-samples": LogitSamples,
    "logit-decodes": LogitDecodes,
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

STEP_STATS = "test_losses_are_finite_per_image_values"
ROUND_TRIP = "test_state_round_trips_through_weights_only_load"
RESUME = "test_resumed_training_equals_uninterrupted"
#: Every check that trains the model: the trainer refuses values that are not one per
#: image in one line, so a model whose loss is not per image fails them all.
TRAINS = {STEP_STATS, "test_one_training_step_lowers_the_loss_on_a_fixed_batch", ROUND_TRIP,
          "test_deterministic_under_a_seed", RESUME}
BROKEN = {
    "loss-names-in-a-list": {"test_builds_as_a_genzoo_model"},
    "sum-loss": TRAINS | {"test_evaluate_returns_per_image_values"},  # evaluate defaults to loss
    "manual-batch-mean": TRAINS,
    "forgets-to-step": {"test_one_training_step_lowers_the_loss_on_a_fixed_batch"},
    "evaluate-updates-statistics": {"test_evaluate_leaves_the_weights_alone"},
    "logit-reconstructions": {"test_reconstructions_are_valid_images"},
    "codes-as-columns": {"test_codes_have_one_row_per_image"},
    "momentum-outside-state-dict": {ROUND_TRIP, RESUME},
    "momentum-saved-not-loaded": {ROUND_TRIP, RESUME},
    "log-of-relu-variance": {"test_negative_elbo_is_per_image",
                             "test_importance_weights_are_finite_per_image_and_draw"},
    "mean-evaluate": {"test_evaluate_returns_per_image_values", RESUME},  # the only check whose trainer evaluates
    "logit-samples": {"test_samples_are_valid_images"},
    "logit-decodes": {"test_codes_have_one_row_per_image"},
    # The training the resume check runs refuses it too: the state check before the final checkpoint.
    "prior-outside-state-dict": {"test_state_round_trips_through_weights_only_load",
                                 "test_resumed_training_equals_uninterrupted"},
    "unseeded-sampler": {"test_deterministic_under_a_seed", "test_state_round_trips_through_weights_only_load"},
    "undocumented-option": {"test_config_fields_become_command_line_options"},
    "unserialisable-config": {"test_config_is_a_model_config_dataclass"},
    "wrong-error": {"test_missing_capabilities_fail_with_a_genzoo_error"},
    "steps-outside-state-dict": {ROUND_TRIP, RESUME},  # its step count sets the learning rate
}
#: Checks that test several things fail on the assertion aimed at the model's fault.
MESSAGES = {
    ("sum-loss", STEP_STATS): "loss's 'loss' has shape ()",
    ("sum-loss", ROUND_TRIP): "SumLoss.loss returned 'loss' of shape (), not one value per image (32,)",
    ("manual-batch-mean", STEP_STATS): "training_step's 'loss' has shape ()",
    ("manual-batch-mean", RESUME): "ManualBatchMean.training_step returned 'loss' of shape ()",
    ("mean-evaluate", RESUME): "MeanEvaluate.evaluate returned 'loss' of shape ()",
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
    # Tiny claims no ELBO and no likelihood: only those checks skip; every other one passes.
    checks = {name for name in dir(ModelConformance) if name.startswith("test_")}
    no_elbo = {"test_negative_elbo_is_per_image", "test_importance_weights_are_finite_per_image_and_draw"}
    tiny = {test.name: test.outcome for test in outcomes if test.cls == "TestTiny"}
    assert tiny == {name: "skipped" if name in no_elbo else "passed" for name in checks}
