"""The Sampler interface: how images are drawn from a trained model, chosen apart from the model.

A model may have a prior of its own (a VAE's N(0, I), a GAN's noise): the built-in
``model`` sampler calls its :meth:`Model.sample`. A sampler plugin instead draws codes
itself and decodes them with the model's ``decode`` (an N(0, I) draw, a Gaussian mixture
fitted to the training codes after training), so any model that can encode and decode
can be sampled several ways and each FID names the sampler it measured. A plugin
registers a subclass with the ``register_samplers`` hook; ``Model.default_sampler`` names
the one used when none is asked for.

A sampler is fitted when it is built (:meth:`Sampler.fit` on the run's training split,
deterministically). One that sets :attr:`Sampler.fit_version` gives its fit as tensors
(:meth:`Sampler.fitted_state`) and takes it back (:meth:`Sampler.load_fitted_state`), so
genzoo keeps each fit in its cache (:mod:`genzoo.sampler_cache`, safetensors, never a
pickle) and a later command on the same model and data reads it instead of fitting again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from genzoo.checks import shown
from genzoo.errors import PLUGIN_FAULTS, GenzooError, describe, first_line

if TYPE_CHECKING:
    from genzoo.data import Split
    from genzoo.model import Model


@dataclass
class SamplerConfig:
    """A sampler's options; plugins subclass it to add theirs (checked in ``__post_init__``)."""

    def __post_init__(self) -> None:
        """Nothing to check here; a subclass checks its own fields."""

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SamplerConfig:
        """Build a config, refusing keys this sampler does not know, in one line."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GenzooError(f"unknown option(s) for {cls.__name__}: {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known)) or 'none'}")
        try:
            return cls(**values)
        except GenzooError:
            raise
        except PLUGIN_FAULTS as exc:
            raise GenzooError(f"invalid options for {cls.__name__} ({shown(values)}): {describe(exc)}") from exc


class Sampler:
    """Draws images from one model; built for that model by the registry (``Registry.build_sampler``).

    A subclass sets ``Config``, :attr:`needs_fit` when it must see the training split
    first, and implements :meth:`sample` (and :meth:`fit`; with :attr:`fit_version`, also
    :meth:`fitted_state` and :meth:`load_fitted_state`). The default :meth:`unsupported`
    asks for a model that can encode and decode.
    """

    Config: ClassVar[type[SamplerConfig]] = SamplerConfig
    #: True: :meth:`fit` must see the model's training split before :meth:`sample` draws.
    needs_fit: ClassVar[bool] = False
    #: None: the fit is made again by every command. A string: fits are cached under a name that
    #: includes it; change it whenever :meth:`fit` would give another state for the same model and data.
    fit_version: ClassVar[str | None] = None

    def __init__(self, config: SamplerConfig, model: Model) -> None:
        self.config = config
        self.model = model

    @classmethod
    def unsupported(cls, model: type[Model] | Model) -> str | None:
        """Why this sampler cannot draw from ``model`` (its class is enough), or None."""
        return None if model.can_encode else "it cannot encode and decode"

    @property
    def device(self) -> torch.device:
        """The model's device: codes are drawn there."""
        return self.model.device

    def fit(self, train: Split) -> None:
        """Fit to ``train`` (called once when :attr:`needs_fit`); deterministic: no global random stream."""

    def fitted_state(self) -> dict[str, torch.Tensor]:
        """What :meth:`fit` found, as named tensors, for the cache of fits (with :attr:`fit_version` only)."""
        raise NotImplementedError(f"{type(self).__name__} sets fit_version but does not implement fitted_state")

    def load_fitted_state(self, state: dict[str, torch.Tensor]) -> None:
        """Take, instead of fitting, a state :meth:`fitted_state` gave (read back on the CPU).

        The file it came from passed genzoo's digests, which find damage, not forgery: refuse
        tensors that are not such a state (names, shapes, values) with a :class:`GenzooError`.
        """
        raise NotImplementedError(f"{type(self).__name__} sets fit_version but does not implement "
                                  "load_fitted_state")

    def sample(self, n: int) -> torch.Tensor:
        """``n`` images in [0, 1] of the model's sample shape, drawn from the seeded global random stream."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sample")

    def description(self, short: bool = False) -> str:
        """How it draws, for the report (``short``: a few words for a picture title)."""
        return type(self).__name__


def sampler_problem(model: type[Model] | Model, name: str | None = None) -> str | None:
    """Why sampler ``name`` (default: the model's own default) cannot draw from ``model``, or None.

    An unknown sampler name is a :class:`GenzooError` of its own (with suggestions).
    """
    from genzoo.plugin_registry import registry  # the neighbour in layer 1, as Model.build does

    chosen = name if name is not None else model.default_sampler
    return registry().sampler(chosen).unsupported(model)


class GuardedSampler(Sampler):
    """A registered sampler as the registry hands it out: the one place its plugin's code is called.

    A fault in its ``fit``, ``sample`` or ``description`` is one :class:`GenzooError` line
    naming the sampler, its plugin and distribution and what failed, as a model's is; and
    every ``sample(n)`` must be ``n`` images of the model's sample shape, or an FID would be
    filed for samples that were never drawn. Other attributes are the wrapped sampler's.
    """

    def __init__(self, inner: Sampler, name: str, plugin: str, distribution: str) -> None:
        super().__init__(inner.config, inner.model)
        self.inner = inner
        self.origin = f"sampler {name!r} from plugin {plugin!r} (distribution {distribution!r})"

    def __getattr__(self, attribute: str) -> Any:
        """The wrapped sampler's own attributes (a mixture, a cache) stay reachable."""
        if attribute == "inner":  # not set yet (while unpickling or copying): no recursion
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except GenzooError:
            raise
        except PLUGIN_FAULTS as exc:
            raise GenzooError(f"{self.origin} failed while {what}: {first_line(describe(exc))}") from exc

    def fit(self, train: Split) -> None:
        self._call("fitting", lambda: self.inner.fit(train))

    def sample(self, n: int) -> torch.Tensor:
        images = self._call(f"drawing {n} samples", lambda: self.inner.sample(n))
        expected = (n, *self.model.sample_shape)
        if not isinstance(images, torch.Tensor) or tuple(images.shape) != expected:
            got = f"shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise GenzooError(f"{self.origin} returned {got} when asked for {n} samples, not {expected} "
                              "(the Sampler contract: n images of the model's sample shape)")
        return images

    def description(self, short: bool = False) -> str:
        text = self._call("describing itself", lambda: self.inner.description(short))
        if not isinstance(text, str):
            raise GenzooError(f"{self.origin} described itself with {type(text).__name__}, not a string")
        return text

    def fitted_state(self) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = self._call("giving its fit", self.inner.fitted_state)
        return state

    def load_fitted_state(self, state: dict[str, torch.Tensor]) -> None:
        self._call("loading its fit", lambda: self.inner.load_fitted_state(state))


def guarded(inner: Sampler, name: str, plugin: str, distribution: str) -> GuardedSampler:
    """``inner`` wrapped in :class:`GuardedSampler`, with its class attributes (``needs_fit``, ``fit_version``):
    the base class's defaults would otherwise shadow them, and its fit would never be cached."""
    kind: type[GuardedSampler] = type(f"Guarded{type(inner).__name__}", (GuardedSampler,),
                                      {"needs_fit": inner.needs_fit, "fit_version": inner.fit_version})
    return kind(inner, name, plugin, distribution)
