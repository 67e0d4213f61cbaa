"""The ready-made test suite a model plugin runs to prove it fits genzoo.

Subclass :class:`ModelConformance` in a test module and name the model::

    from genzoo.testing import ModelConformance

    class TestBetaVAE(ModelConformance):
        model_name = "beta-vae"
        options = {"beta": 4.0}

pytest then runs every check below against it. Each check is one thing the trainer,
the evaluation or the command line relies on, so a model that passes them all can be
trained, resumed, evaluated and compared like the built-in ones. Checks of a
capability the model does not claim (say, ``reconstruct`` for a GAN) are skipped.
The data are :func:`genzoo.testing.synthetic_images`: no download, a few seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from rich.console import Console

from genzoo.building import build_sampler
from genzoo.checkpoint import load_checkpoint, load_optimizer_state
from genzoo.data import TensorSplit
from genzoo.errors import GenzooError, PluginFault
from genzoo.evaluation.likelihood import check_batch_weights, checked_elbo_parts
from genzoo.model import Model, ModelConfig
from genzoo.options import config_options
from genzoo.plugin_registry import registry
from genzoo.sampler import model_call, sampler_problem
from genzoo.seeding import seed_streams
from genzoo.testing.images import synthetic_images
from genzoo.train_config import TrainConfig
from genzoo.trainer import REDUCTIONS, Trainer, training_step


def _called(model: Model, method: str) -> AbstractContextManager[None]:
    """A call of ``model``'s ``method`` by a check, guarded as genzoo guards it: torch's default dtype, device and
    grad mode it changes are put back and fail the check in one line naming the method. An ``after_training``
    that turned grad mode off once failed every later check of the session, a sound model's too, each blaming
    that model's ``loss`` (eighteenth hostile pass, F11)."""
    return model_call(f"{type(model).__name__}.{method}", "the conformance kit called it")


def _skip_without(model: Model, capability: str, unclaimed: str) -> None:
    """Skip a check of ``capability`` when the model's class does not claim it (``unclaimed`` says so), or when
    the model lacks it as built, with the model's reason (a VAE built with ``loss="mse"`` has no ELBO)."""
    if not type(model).capabilities()[capability]:
        pytest.skip(unclaimed)
    lacking = model.checked_lacking_capabilities().get(capability)
    if lacking is not None:
        pytest.skip(lacking)


def _real(value: Any, what: str, key: str) -> None:
    """Refuse a complex per-image value as the trainer does (``trainer.per_image``): summed as a float, it
    failed with torch's overflow error naming no value."""
    assert not (isinstance(value, torch.Tensor) and value.is_complex()), (
        f"{what}'s {key!r} has dtype {str(value.dtype).removeprefix('torch.')}, not real values: metrics.jsonl "
        "would hold their real part alone; return one real value per image (the .abs() of a spectrum, say)")


def _differences(a: Any, b: Any, where: str) -> list[str]:
    """Where two nested states (dicts, lists, tensors, numbers) differ, bit for bit."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} (keys {sorted(map(str, a.keys() ^ b.keys()))})"]
        return [d for key in a for d in _differences(a[key], b[key], f"{where}.{key}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [where]


class ModelConformance:
    """Checks for one registered model; subclass it as ``Test...`` and set ``model_name``."""

    #: The registered name of the model under test.
    model_name: ClassVar[str] = ""
    #: Config options to build it with, as ``genzoo train`` would pass them.
    options: ClassVar[dict[str, Any]] = {}
    #: The image shape it is built for (MNIST's by default).
    sample_shape: ClassVar[tuple[int, ...]] = (1, 28, 28)
    batch_size: ClassVar[int] = 32
    #: Images in the tiny training split (enough for the AE's 10-component mixture).
    train_images: ClassVar[int] = 96
    seed: ClassVar[int] = 0
    device: ClassVar[str] = "cpu"
    #: Training steps the determinism check takes: a model may draw only after a warm-up (mixup after two steps).
    deterministic_steps: ClassVar[int] = 3

    # -- fixtures ---------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def torch_defaults_kept(self) -> Iterator[None]:
        """torch's defaults and the process's settings as they were before each check, whatever model code it ran
        outside the guarded calls (a trainer's ``evaluate``, say): a change fails the check's teardown and never
        reaches the next check."""
        with model_call(f"model {self.model_name!r}", "a check ran it"):
            yield

    @pytest.fixture
    def build(self) -> Callable[..., Model]:
        """A function that builds a fresh model from ``options`` under a given seed."""
        if not self.model_name:
            pytest.fail(f"{type(self).__name__} must set model_name to a registered model")

        def build(seed: int = self.seed) -> Model:
            seed_streams(seed)
            model = registry().build_model(self.model_name, self.sample_shape, **self.options)
            return model.to(self.device)

        return build

    @pytest.fixture
    def model(self, build: Callable[..., Model]) -> Model:
        return build()

    @pytest.fixture
    def batch(self) -> torch.Tensor:
        return synthetic_images(self.batch_size, self.sample_shape, seed=self.seed).to(self.device)

    @pytest.fixture
    def train_split(self) -> TensorSplit:
        images = synthetic_images(self.train_images, self.sample_shape, seed=self.seed + 1)
        return TensorSplit(images).to(self.device)

    # -- helpers ----------------------------------------------------------------------

    def seeded_evaluate(self, model: Model, x: torch.Tensor, seed: int = 123) -> dict[str, float]:
        """``evaluate``'s values summed over ``x``, as the trainer sums them, under a fixed seed."""
        model.eval()
        with torch.no_grad(), _called(model, "evaluate"):
            seed_streams(seed)
            stats = model.evaluate(x)
        model.train()
        for key, value in stats.items():
            _real(value, "evaluate", key)
        return {key: float(value.sum()) for key, value in stats.items()}

    def seeded_samples(self, model: Model, n: int = 16, seed: int = 321) -> torch.Tensor:
        model.eval()
        seed_streams(seed)
        with torch.no_grad(), _called(model, "sample"):
            return model.sample(n)

    def step(self, model: Model, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer],
             seed: int = 7) -> dict[str, torch.Tensor]:
        """One optimisation step as the trainer takes it (:func:`genzoo.trainer.training_step`)."""
        model.train()
        seed_streams(seed)
        return training_step(model, x, optimizers)

    def assert_per_image(self, stats: Any, n: int, what: str) -> None:
        """Every value of ``stats`` a finite tensor of shape ``(n,)``: the trainer does every reduction."""
        assert isinstance(stats, dict), f"{what} must return a dict of tensors, got {type(stats).__name__}"
        for key, value in stats.items():
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            assert shape == (n,), (
                f"{what}'s {key!r} has shape {shape}: it must hold one value per image, shape ({n},), "
                "and leave reducing over the batch to the trainer")
            _real(value, what, key)
            assert torch.isfinite(value).all(), f"{what}'s {key!r} is not finite"

    def assert_images(self, images: torch.Tensor, n: int, what: str) -> None:
        assert isinstance(images, torch.Tensor), f"{what} must return a tensor, got {type(images).__name__}"
        assert tuple(images.shape) == (n, *self.sample_shape), (
            f"{what} must return shape {(n, *self.sample_shape)}, got {tuple(images.shape)}")
        assert images.dtype.is_floating_point, f"{what} must return floats, got {images.dtype}"
        assert torch.isfinite(images).all(), f"{what} returned NaN or infinite pixels"
        assert images.min() >= 0 and images.max() <= 1, (
            f"{what} must return pixels in [0, 1], got [{float(images.min()):.3g}, {float(images.max()):.3g}]")
        assert images.device.type == torch.device(self.device).type, f"{what} returned images on {images.device}"

    # -- the checks -------------------------------------------------------------------

    def test_config_is_a_model_config_dataclass(self, model: Model) -> None:
        config_cls = type(model).Config
        assert issubclass(config_cls, ModelConfig), "Config must subclass genzoo.ModelConfig"
        assert dataclasses.is_dataclass(config_cls), "Config must be a dataclass"
        assert isinstance(model.config, config_cls), "the model must keep the config it was built from"
        values = model.config.to_dict()  # as config.json holds it: the model is rebuilt from there
        assert config_cls.from_dict(values) == model.config, "the config must survive a trip through JSON"

    def test_config_fields_become_command_line_options(self, model: Model) -> None:
        options = config_options(self.model_name, type(model).Config)
        names = {option.name for option in options}
        for option in options:
            assert option.help and not option.help.startswith("["), (
                f"config field {option.name!r} has no help text: "
                "declare it with field(default=..., metadata={'help': '...'})")
        assert names <= {f.name for f in dataclasses.fields(type(model).Config)}

    def test_builds_as_a_genzoo_model(self, model: Model) -> None:
        assert isinstance(model, Model), "register a subclass of genzoo.Model"
        assert tuple(model.sample_shape) == self.sample_shape
        assert sum(p.numel() for p in model.parameters()) > 0, "the model has no parameters"
        assert all(isinstance(v, bool) for v in model.capabilities().values())
        try:  # genzoo eval's own check of what the model lacks as built
            model.checked_lacking_capabilities()
        except PluginFault as exc:
            pytest.fail(str(exc))
        names = type(model).loss_names
        assert isinstance(names, tuple) and names and all(isinstance(n, str) for n in names), (
            "loss_names must be a non-empty tuple of metric names")

    def test_losses_are_finite_per_image_values(self, build: Any, batch: torch.Tensor) -> None:
        """``loss`` (or a manual ``training_step``) returns every name in ``loss_names``, one value per image."""
        model = build()
        assert model.objective_reduction in REDUCTIONS, (
            f"objective_reduction must be one of {sorted(REDUCTIONS)}, got {model.objective_reduction!r}")
        model.train()
        seed_streams(7)
        what = "loss" if model.automatic_optimization else "training_step"
        with _called(model, what):
            stats = (model.loss(batch) if model.automatic_optimization
                     else model.training_step(batch, model.configure_optimizers()))
        self.assert_per_image(stats, len(batch), what)
        missing = set(type(model).loss_names) - set(stats)
        assert not missing, f"{what} must return every name in loss_names; missing {sorted(missing)}"

    def test_one_training_step_lowers_the_loss_on_a_fixed_batch(self, model: Model, batch: torch.Tensor) -> None:
        """The objective (``loss_names[0]``), as ``evaluate`` gives it summed over a fixed batch
        under a fixed seed, is lower after one step of the trainer (fresh optimisers, seed 7).

        Both are measured with the buffers the step leaves: batch norm's running statistics move
        with every training batch whatever the gradient did, and early in training that moves an
        evaluation more than one step's weights do. So only the weights' change is compared.
        """
        name = type(model).loss_names[0]
        weights = {key: value.detach().clone() for key, value in model.named_parameters()}
        self.step(model, batch, model.configure_optimizers())
        after = self.seeded_evaluate(model, batch)[name]
        with torch.no_grad():
            for key, value in model.named_parameters():
                value.copy_(weights[key])
        before = self.seeded_evaluate(model, batch)[name]
        assert after < before, f"{name} on a fixed batch went from {before:.6g} to {after:.6g} after one step"

    def test_evaluate_returns_per_image_values(self, model: Model, batch: torch.Tensor) -> None:
        model.eval()
        with torch.no_grad(), _called(model, "evaluate"):
            seed_streams(123)
            stats = model.evaluate(batch)
        self.assert_per_image(stats, len(batch), "evaluate")
        missing = set(type(model).loss_names) - set(stats)
        assert not missing, f"evaluate must return every name in loss_names; missing {sorted(missing)}"

    def test_evaluate_leaves_the_weights_alone(self, model: Model, batch: torch.Tensor) -> None:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        self.seeded_evaluate(model, batch)
        after = model.state_dict()
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert not changed, f"evaluate changed {changed}"

    def test_state_round_trips_through_weights_only_load(self, build: Any, batch: torch.Tensor,
                                                          train_split: TensorSplit) -> None:
        trained = build()
        optimizers = trained.configure_optimizers()
        self.step(trained, batch, optimizers)
        with _called(trained, "after_training"):
            trained.after_training(train_split)
        buffer = io.BytesIO()
        torch.save({"model": trained.state_dict(),
                    "optimizers": {k: o.state_dict() for k, o in optimizers.items()}}, buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)  # what genzoo's checkpoints use
        loaded = build(seed=self.seed + 1)
        loaded.load_state_dict(state["model"])
        fresh = loaded.configure_optimizers()
        assert set(fresh) == set(optimizers), "configure_optimizers must name the same optimisers every time"
        for key, optimizer in fresh.items():
            load_optimizer_state(optimizer, state["optimizers"][key])  # as a resume loads it
            differ = _differences(optimizer.state_dict(), optimizers[key].state_dict(), key)
            assert not differ, (
                f"optimiser state differs after loading it into a fresh model at {differ}: "
                "its state_dict() holds something its load_state_dict() does not restore")
        assert self.seeded_evaluate(loaded, batch) == self.seeded_evaluate(trained, batch)
        if trained.can_sample:
            assert torch.equal(self.seeded_samples(loaded), self.seeded_samples(trained)), (
                "a loaded model samples differently: some sampling state is not in state_dict()")
        self.step(trained, batch, optimizers)
        self.step(loaded, batch, fresh)
        differ = _differences(loaded.state_dict(), trained.state_dict(), "model")
        assert not differ, (
            f"one more training step after loading gives other weights ({differ}): "
            "some optimiser state is not in the optimisers' state_dict()")

    def test_samples_are_valid_images(self, model: Model, train_split: TensorSplit) -> None:
        """Samples drawn as ``genzoo eval`` and ``sample`` draw them: with the model's ``default_sampler``."""
        problem = sampler_problem(model)
        if problem is not None:
            pytest.skip(f"the model's default sampler {model.default_sampler!r} cannot draw from it: {problem}")
        with _called(model, "after_training"):
            model.after_training(train_split)
        sampler = build_sampler(model, self.model_name, None, lambda: train_split)
        model.eval()
        seed_streams(321)
        with torch.no_grad():
            samples = sampler.sample(16)
        what = "sample(16)" if model.default_sampler == "model" else f"sampler {model.default_sampler!r}"
        self.assert_images(samples, 16, what)
        assert samples.flatten(1).std(dim=0).max() > 0, "all 16 samples are identical"

    def test_reconstructions_are_valid_images(self, model: Model, batch: torch.Tensor) -> None:
        if not model.can_reconstruct:
            pytest.skip("the model does not reconstruct")
        model.eval()
        with torch.no_grad(), _called(model, "reconstruct"):
            reconstructed = model.reconstruct(batch)
        self.assert_images(reconstructed, len(batch), "reconstruct(x)")

    def test_codes_have_one_row_per_image(self, model: Model, batch: torch.Tensor) -> None:
        if not model.can_encode:
            pytest.skip("the model does not encode")
        model.eval()
        with torch.no_grad(), _called(model, "encode"):
            codes = model.encode(batch)
        assert codes.dim() == 2 and codes.shape[0] == len(batch), f"encode gave shape {tuple(codes.shape)}"
        assert torch.isfinite(codes).all()
        with torch.no_grad(), _called(model, "decode"):  # genzoo latent decodes interpolated codes
            decoded = model.decode(codes)
        self.assert_images(decoded, len(batch), "decode(encode(x))")

    def test_negative_elbo_is_per_image(self, model: Model, batch: torch.Tensor) -> None:
        _skip_without(model, "elbo", "the model has no ELBO")
        model.eval()
        with torch.no_grad(), _called(model, "negative_elbo"):
            parts = model.negative_elbo(batch)
        assert "nelbo" in parts, "negative_elbo must return the key 'nelbo'"
        for key, value in parts.items():
            assert tuple(value.shape) == (len(batch),), f"negative_elbo's {key!r} must have one value per image"
            assert torch.isfinite(value).all(), f"negative_elbo's {key!r} is not finite"
        try:  # genzoo eval's own check: bce and kl present, nelbo = bce + kl per image
            checked_elbo_parts(type(model).__name__, parts, len(batch))
        except PluginFault as exc:
            pytest.fail(str(exc))

    def test_importance_weights_are_finite_per_image_and_draw(self, model: Model, batch: torch.Tensor) -> None:
        """Models with ``has_likelihood`` get an IWAE NLL in ``genzoo eval`` from these weights; with ``has_elbo``
        too, their mean must be the mean -ELBO to within its noise (``genzoo eval``'s own check)."""
        _skip_without(model, "likelihood", "the model offers no likelihood")
        model.eval()
        with torch.no_grad(), _called(model, "log_importance_weights"):
            log_w = model.log_importance_weights(batch, 3)
        assert tuple(log_w.shape) == (len(batch), 3), (
            f"log_importance_weights(x, 3) must have shape (batch, 3), got {tuple(log_w.shape)}")
        assert torch.isfinite(log_w).all(), "some importance weights are not finite"
        if model.has_elbo and "elbo" not in model.checked_lacking_capabilities():  # their mean estimates the ELBO
            with torch.no_grad(), _called(model, "negative_elbo"):
                nelbo = float(model.negative_elbo(batch)["nelbo"].double().mean())
            try:
                check_batch_weights(type(model).__name__, log_w, nelbo)
            except PluginFault as exc:
                pytest.fail(str(exc))

    def test_missing_capabilities_fail_with_a_genzoo_error(self, model: Model, batch: torch.Tensor) -> None:
        calls: dict[str, Callable[[], object]] = {
                 "sample": lambda: model.sample(2), "reconstruct": lambda: model.reconstruct(batch),
                 "encode": lambda: model.encode(batch), "elbo": lambda: model.negative_elbo(batch),
                 "likelihood": lambda: model.log_importance_weights(batch, 2)}
        for capability, claimed in model.capabilities().items():
            if not claimed:
                with pytest.raises(GenzooError):
                    calls[capability]()

    def test_deterministic_under_a_seed(self, build: Any, batch: torch.Tensor, train_split: TensorSplit) -> None:
        """Two models built and trained a few steps under one seed (torch's, numpy's and Python's streams, as
        ``genzoo train`` seeds them) end alike: a draw genzoo does not seed (a generator seeded by the operating
        system, the clock) differs."""
        runs = []
        for _ in range(2):
            model = build()
            optimizers = model.configure_optimizers()
            for _ in range(self.deterministic_steps):
                stats = self.step(model, batch, optimizers)
            with _called(model, "after_training"):
                model.after_training(train_split)
            samples = self.seeded_samples(model) if model.can_sample else None
            runs.append((model.state_dict(), {k: v.tolist() for k, v in stats.items()}, samples))
        (state_a, stats_a, samples_a), (state_b, stats_b, samples_b) = runs
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a), "same seed, different weights"
        assert stats_a == stats_b, "same seed, different training losses"
        if samples_a is not None:
            assert samples_b is not None and torch.equal(samples_a, samples_b), "same seed, different samples"

    def test_resumed_training_equals_uninterrupted(self, build: Any, train_split: TensorSplit,
                                                   tmp_path: Path) -> None:
        """Two epochs through genzoo's trainer, straight and stopped after one, end equal."""
        def trainer(model: Model, run_dir: Path, epochs: int) -> Trainer:
            run_dir.mkdir()
            config = TrainConfig(model=self.model_name, epochs=epochs, batch_size=self.batch_size,
                                 seed=self.seed, device=self.device, eval_batch_size=self.batch_size)
            quiet = Console(file=io.StringIO())
            return Trainer(model, train_split, train_split.take(self.batch_size), config, run_dir, quiet)

        straight = trainer(build(), tmp_path / "straight", 2)
        records = straight.fit()
        assert [r["epoch"] for r in records] == [1, 2]
        first = trainer(build(), tmp_path / "first", 1)
        first.fit()
        resumed = trainer(build(seed=self.seed + 1), tmp_path / "resumed", 2)
        resumed.restore(load_checkpoint(first.checkpoint_path))
        resumed.fit()
        a, b = straight.model.state_dict(), resumed.model.state_dict()
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, f"resuming from a checkpoint changed {differ}: some training state is not saved"
