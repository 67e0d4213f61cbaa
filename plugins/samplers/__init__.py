"""The built-in samplers: ``model`` (the model's own prior), ``normal`` (N(0, I) codes) and ``gmm``.

``normal`` and ``gmm`` draw codes themselves and decode them with the model's ``decode``,
so they work with any model that can encode and decode (AE, VAE, third-party models).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from genzoo_plugins.samplers.gmm import GaussianMixture

from genzoo import Model, Register, Sampler, SamplerConfig, Split, hookimpl, require_positive_int

#: The seed of the mixture's k-means++ initialisation: the fit is the same on every call.
FIT_SEED = 0
#: Training codes are computed this many images at a time.
ENCODE_BATCH = 1000


class ModelSampler(Sampler):
    """The model's own sampler (:meth:`Model.sample`): a VAE's N(0, I) prior, a GAN's generator."""

    @classmethod
    def unsupported(cls, model: type[Model] | Model) -> str | None:
        return None if model.can_sample else "it has no sampler of its own (Model.sample)"

    def sample(self, n: int) -> torch.Tensor:
        return self.model.sample(n)

    def description(self, short: bool = False) -> str:
        own = self.model.sampling_description(short)
        return own or ("its own prior" if short else "its own latent prior (model.sample)")


class NormalSampler(Sampler):
    """N(0, I) codes of the model's latent size, decoded: the prior a VAE is trained towards."""

    def sample(self, n: int) -> torch.Tensor:
        return self.model.decode(torch.randn(n, self.model.config.latent, device=self.device))

    def description(self, short: bool = False) -> str:
        return "N(0, I) codes" if short else "decodes N(0, I) codes of its latent size"


@dataclass
class GMMConfig(SamplerConfig):
    components: int = field(default=10, metadata={"help": "Components of the Gaussian mixture fitted to the codes."})

    def __post_init__(self) -> None:
        require_positive_int("components", self.components)


class GMMSampler(Sampler):
    """A full-covariance Gaussian mixture fitted to the training codes, decoded (Ghosh et al. 2020).

    The fit is deterministic (EM from k-means++ seeds drawn with :data:`FIT_SEED`), so it is
    made again whenever the sampler is built rather than stored.
    """

    Config = GMMConfig
    config: GMMConfig
    needs_fit = True

    def __init__(self, config: SamplerConfig, model: Model) -> None:
        super().__init__(config, model)
        self.mixture = GaussianMixture(self.config.components, model.config.latent).to(model.device)

    @torch.no_grad()
    def fit(self, train: Split) -> None:
        was_training = self.model.training
        self.model.eval()
        codes = torch.cat([self.model.encode(x) for x in train.batches(ENCODE_BATCH)])
        self.model.train(was_training)
        self.mixture.fit(codes, generator=torch.Generator().manual_seed(FIT_SEED))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.model.decode(self.mixture.sample(n))

    def description(self, short: bool = False) -> str:
        k = self.config.components
        if short:
            return f"{k}-component GMM fitted to codes"
        return f"decodes draws from a {k}-component Gaussian mixture fitted to its training codes"


@hookimpl
def register_samplers(register: Register) -> None:
    register("model", ModelSampler)
    register("normal", NormalSampler)
    register("gmm", GMMSampler)
