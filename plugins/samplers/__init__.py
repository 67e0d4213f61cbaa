"""The built-in samplers: ``model`` (the model's own prior), ``normal`` (N(0, I) codes) and ``gmm``.

``normal`` and ``gmm`` draw codes themselves and decode them with the model's ``decode``,
so they work with any model that can encode and decode (AE, VAE, third-party models).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from genzoo_plugins.samplers.gmm import GaussianMixture

from genzoo import GenzooError, Model, Register, Sampler, SamplerConfig, Split, hookimpl, require_positive_int

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
        return self.model.checked_decode(torch.randn(n, self.model.config.latent, device=self.device))

    def description(self, short: bool = False) -> str:
        return "N(0, I) codes" if short else "decodes N(0, I) codes of its latent size"


@dataclass
class GMMConfig(SamplerConfig):
    components: int = field(default=10, metadata={"help": "Components of the Gaussian mixture fitted to the codes."})

    def __post_init__(self) -> None:
        require_positive_int("components", self.components)


class GMMSampler(Sampler):
    """A full-covariance Gaussian mixture fitted to the training codes, decoded (Ghosh et al. 2020).

    The fit is deterministic (EM from k-means++ seeds drawn with :data:`FIT_SEED`); its
    weights, means and Cholesky factors are what genzoo caches (one fit of 60,000 codes
    takes minutes on a CPU).
    """

    Config = GMMConfig
    config: GMMConfig
    needs_fit = True
    #: Change it with anything that changes the fit: EM, :data:`FIT_SEED`, :data:`ENCODE_BATCH`.
    fit_version = "1"
    #: The mixture's tensors that make up a fit.
    STATE = ("log_weights", "means", "scale_tril")

    def __init__(self, config: SamplerConfig, model: Model) -> None:
        super().__init__(config, model)
        self.mixture = GaussianMixture(self.config.components, model.config.latent).to(model.device)

    @torch.no_grad()
    def fit(self, train: Split) -> None:
        was_training = self.model.training
        self.model.eval()
        try:  # the model's mode put back even when its codes are refused: the guard would blame this sampler
            # Each batch copied: an encode that refills one buffer would have every batch be the last one.
            codes = torch.cat([self.model.checked_codes(x).clone() for x in train.batches(ENCODE_BATCH)])
        finally:
            self.model.train(was_training)
        self.mixture.fit(codes, generator=torch.Generator().manual_seed(FIT_SEED))

    def fitted_state(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self.mixture, name) for name in self.STATE}

    def load_fitted_state(self, state: dict[str, torch.Tensor]) -> None:
        """The fitted mixture, checked to be one: forged tensors would otherwise draw nonsense without a word."""
        k, d = self.config.components, self.model.config.latent
        shapes = {"log_weights": (k,), "means": (k, d), "scale_tril": (k, d, d)}
        if sorted(state) != sorted(shapes):
            raise GenzooError(f"it holds {', '.join(sorted(state)) or 'nothing'}, not {', '.join(sorted(shapes))}")
        for name, shape in shapes.items():
            if tuple(state[name].shape) != shape or state[name].dtype != torch.float32:
                raise GenzooError(f"its {name} is not float32 of shape {shape}")
            if not bool(torch.isfinite(state[name]).all()):
                raise GenzooError(f"its {name} is not finite")
        tril = state["scale_tril"]
        if not (torch.equal(tril, tril.tril()) and bool((tril.diagonal(dim1=-2, dim2=-1) > 0).all())):
            raise GenzooError("its scale_tril are not Cholesky factors (lower triangular, positive diagonal)")
        if abs(float(torch.logsumexp(state["log_weights"].double(), 0))) > 1e-3:
            raise GenzooError("its log_weights are not a distribution")
        for name in shapes:
            setattr(self.mixture, name, state[name].to(self.device))
        self.mixture.fitted = torch.tensor(True, device=self.device)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.model.checked_decode(self.mixture.sample(n))

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
