"""The ready-made test suite a sampler plugin runs to prove it fits genzoo.

Subclass :class:`SamplerConformance` in a test module, name the sampler and a
registered model it draws from::

    from genzoo.testing import SamplerConformance

    class TestMySampler(SamplerConformance):
        sampler_name = "flow"
        model_name = "ae"
        options = {"layers": 2}

Each check is one thing ``genzoo eval``, ``compare`` and ``sample`` rely on: samples are
images of the model's shape in [0, 1], the same under a seed, a fit that is deterministic
and leaves the model alone, and (with a ``fit_version``) a fit that draws the same once
written to genzoo's cache of fits and read back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from genzoo.building import build_sampler
from genzoo.data import TensorSplit
from genzoo.model import Model
from genzoo.plugin_registry import registry
from genzoo.sampler import GuardedSampler, Sampler, SamplerConfig
from genzoo.sampler_cache import fit_bytes, read_fit
from genzoo.testing.images import synthetic_images


class _Incapable(Model):
    """A model that can do nothing: no sampler that needs anything of a model can draw from it."""


class SamplerConformance:
    """Checks for one registered sampler; subclass it as ``Test...`` and set ``sampler_name`` and ``model_name``."""

    #: The registered name of the sampler under test.
    sampler_name: ClassVar[str] = ""
    #: A registered model it can draw from, and that model's options.
    model_name: ClassVar[str] = ""
    model_options: ClassVar[dict[str, Any]] = {}
    #: The sampler's own options, as ``Registry.build_sampler`` passes them.
    options: ClassVar[dict[str, Any]] = {}
    sample_shape: ClassVar[tuple[int, ...]] = (1, 28, 28)
    #: Images in the tiny training split a fitting sampler sees.
    train_images: ClassVar[int] = 96
    seed: ClassVar[int] = 0
    device: ClassVar[str] = "cpu"

    # -- fixtures ---------------------------------------------------------------------

    @pytest.fixture
    def model(self) -> Model:
        if not self.sampler_name or not self.model_name:
            pytest.fail(f"{type(self).__name__} must set sampler_name and model_name (a model it draws from)")
        torch.manual_seed(self.seed)
        return registry().build_model(self.model_name, self.sample_shape, **self.model_options).to(self.device).eval()

    @pytest.fixture
    def train_split(self) -> TensorSplit:
        return TensorSplit(synthetic_images(self.train_images, self.sample_shape, seed=self.seed + 1)).to(self.device)

    def build(self, model: Model, train: TensorSplit) -> Sampler:
        """The sampler for ``model``, built from ``options`` and fitted to ``train`` as genzoo does.

        The plugin's own object, not genzoo's guard around it: each check names its own fault.
        """
        sampler = self.unfitted(model)
        if sampler.needs_fit:
            sampler.fit(train)
        return sampler

    def unfitted(self, model: Model) -> Sampler:
        """The plugin's own sampler for ``model`` as the registry builds it, before any fit."""
        sampler = registry().build_sampler(self.sampler_name, model, self.model_name, **self.options)
        return sampler.inner if isinstance(sampler, GuardedSampler) else sampler

    def draw(self, sampler: Sampler, n: int = 16, seed: int = 321) -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.no_grad():
            return sampler.sample(n)

    # -- the checks -------------------------------------------------------------------

    def test_config_is_a_sampler_config_dataclass(self) -> None:
        config_cls = registry().sampler(self.sampler_name).Config
        assert issubclass(config_cls, SamplerConfig), "Config must subclass genzoo.SamplerConfig"
        assert dataclasses.is_dataclass(config_cls), "Config must be a dataclass"
        config = config_cls.from_dict(self.options)
        assert config_cls.from_dict(dataclasses.asdict(config)) == config, "the config must survive a round trip"

    def test_samples_are_valid_images(self, model: Model, train_split: TensorSplit) -> None:
        for n in (1, 16):
            samples = self.draw(self.build(model, train_split), n)
            assert isinstance(samples, torch.Tensor), f"sample must return a tensor, got {type(samples).__name__}"
            assert tuple(samples.shape) == (n, *self.sample_shape), (
                f"sample({n}) must return shape {(n, *self.sample_shape)}, got {tuple(samples.shape)}")
            assert samples.dtype.is_floating_point and bool(torch.isfinite(samples).all()), (
                f"sample({n}) must return finite floats")
            assert samples.min() >= 0 and samples.max() <= 1, (
                f"sample({n}) must return pixels in [0, 1], got [{float(samples.min()):.3g}, "
                f"{float(samples.max()):.3g}]")
            assert samples.device.type == torch.device(self.device).type, f"sample returned images on {samples.device}"
        assert samples.flatten(1).std(dim=0).max() > 0, "all 16 samples are identical"

    def test_deterministic_under_a_seed(self, model: Model, train_split: TensorSplit) -> None:
        """Two samplers built and fitted apart, the global random stream elsewhere each time, draw alike."""
        torch.manual_seed(1)
        first = self.draw(self.build(model, train_split))
        torch.manual_seed(2)
        second = self.draw(self.build(model, train_split))
        assert torch.equal(first, second), (
            "same seed, different samples: the fit or the draw uses randomness the seed does not set "
            "(fit with a torch.Generator of your own; draw from the global stream)")

    def test_fit_and_sample_leave_the_model_alone(self, model: Model, train_split: TensorSplit) -> None:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        self.draw(self.build(model, train_split))
        after = model.state_dict()
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert not changed, f"fitting or sampling changed the model's {changed}"

    def test_a_cached_fit_draws_as_the_fit(self, model: Model, train_split: TensorSplit, tmp_path: Path) -> None:
        """A fit written to genzoo's cache (safetensors) and loaded into a new sampler draws the same images."""
        fitted = self.build(model, train_split)
        if not fitted.needs_fit or fitted.fit_version is None:
            pytest.skip(f"sampler {self.sampler_name!r} sets no fit_version: nothing of it is cached")
        state = fitted.fitted_state()
        assert isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in state.items()), (
            "fitted_state() must return a dict of named tensors")
        path = tmp_path / "fit.safetensors"
        path.write_bytes(fit_bytes(state, self.sampler_name, "key"))
        loaded = self.unfitted(model)
        loaded.load_fitted_state(read_fit(path, "key"))
        assert torch.equal(self.draw(fitted), self.draw(loaded)), (
            "a sampler given its fit by load_fitted_state draws other images than the one that fitted: "
            "fitted_state must hold all that fit found, and load_fitted_state restore all of it")

    def test_says_why_it_cannot_draw_from_a_model_that_can_do_nothing(self) -> None:
        problem = registry().sampler(self.sampler_name).unsupported(_Incapable)
        assert isinstance(problem, str) and problem, (
            "unsupported(model) must say why it cannot draw from a model that can neither sample nor encode "
            f"(got {problem!r}); genzoo would otherwise fail inside the draw")

    def test_builds_through_the_registry_like_genzoo(self, model: Model, train_split: TensorSplit) -> None:
        """``genzoo eval`` and ``sample`` build it with the model's own defaults for it (``sampler_options``)."""
        sampler = build_sampler(model, self.model_name, self.sampler_name, lambda: train_split)
        assert isinstance(sampler, Sampler), "register a subclass of genzoo.Sampler"
        description = sampler.description()
        assert isinstance(description, str) and description.isprintable() and description, (
            "description() must be a line of printable text: the report prints it")
