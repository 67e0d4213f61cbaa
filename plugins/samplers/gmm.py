"""A full-covariance Gaussian mixture fitted by EM, in torch (the ``gmm`` sampler's density).

A model without a prior of its own (the autoencoder) is sampled by decoding draws from
a mixture fitted to its training codes: the "ex-post density estimation" of Ghosh et al. (2020).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genzoo import GenzooError


class GaussianMixture(nn.Module):
    """K full-covariance Gaussians, as buffers (so ``.to(device)`` moves the fit)."""

    log_weights: torch.Tensor
    means: torch.Tensor
    scale_tril: torch.Tensor
    fitted: torch.Tensor

    def __init__(self, components: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("log_weights", torch.full((components,), -math.log(components)))
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("scale_tril", torch.eye(dim).repeat(components, 1, 1))
        self.register_buffer("fitted", torch.tensor(False))

    def _log_prob_components(self, x: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(x | mu_k, Sigma_k), shape (N, K).

        One triangular solve per component on (D, N): broadcasting all components at
        once would expand the Cholesky factors to an (N, K, D, D) tensor (gigabytes).
        """
        maha = torch.stack([
            torch.linalg.solve_triangular(tril, (x - mean).T, upper=False).pow(2).sum(0)
            for mean, tril in zip(self.means, self.scale_tril)
        ], dim=1)
        log_det = self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        d = x.shape[1]
        return self.log_weights - 0.5 * (maha + d * math.log(2 * math.pi)) - log_det

    @torch.no_grad()
    def fit(self, x: torch.Tensor, iterations: int = 100, tol: float = 1e-4, reg: float = 1e-4,
            generator: torch.Generator | None = None) -> "GaussianMixture":
        """EM from k-means++ seeds; stops when the mean log-likelihood settles."""
        x = x.to(self.means.device, torch.float64)
        n, d = x.shape
        k = self.means.shape[0]
        if n < k:
            raise GenzooError(f"cannot fit {k} mixture components to {n} codes")
        if not bool(torch.isfinite(x).all()):
            raise GenzooError("cannot fit a Gaussian mixture to codes that are NaN or infinite")
        means = _kmeans_plus_plus(x, k, generator)
        # One code has no sample covariance (n - 1 = 0): its Gaussian is the regulariser's alone.
        cov = torch.cov(x.T, correction=1 if n > 1 else 0) + reg * torch.eye(d, dtype=x.dtype, device=x.device)
        self.means = means
        self.scale_tril = _cholesky(cov).repeat(k, 1, 1)
        self.log_weights = torch.full((k,), -math.log(k), dtype=x.dtype, device=x.device)
        previous = -math.inf
        for _ in range(iterations):
            log_p = self._log_prob_components(x)
            log_norm = torch.logsumexp(log_p, dim=1, keepdim=True)
            resp = (log_p - log_norm).exp()  # N, K
            mean_ll = float(log_norm.mean())
            counts = resp.sum(0) + 1e-10
            self.log_weights = (counts / n).log()
            self.means = (resp.T @ x) / counts[:, None]
            covs = torch.stack([
                ((x - mean) * r[:, None]).T @ (x - mean) for mean, r in zip(self.means, resp.T)
            ]) / counts[:, None, None]
            covs = covs + reg * torch.eye(d, dtype=x.dtype, device=x.device)
            self.scale_tril = _cholesky(covs)
            if abs(mean_ll - previous) < tol * max(1.0, abs(mean_ll)):
                break
            previous = mean_ll
        self.log_weights = self.log_weights.float()
        self.means = self.means.float()
        self.scale_tril = self.scale_tril.float()
        self.fitted = torch.tensor(True, device=self.means.device)
        return self

    def sample(self, n: int) -> torch.Tensor:
        if not bool(self.fitted):
            raise GenzooError("the Gaussian mixture is not fitted yet: fit it to codes first")
        weights = self.log_weights.exp()
        if not (bool(torch.isfinite(weights).all()) and bool((weights >= 0).all()) and float(weights.sum()) > 0):
            raise GenzooError("the Gaussian mixture is damaged: its mixture weights are not a "
                              "distribution (exp(log_weights) not finite, negative or all zero)")
        component = torch.multinomial(weights, n, replacement=True)
        eps = torch.randn(n, self.means.shape[1], 1, device=self.means.device)
        return self.means[component] + (self.scale_tril[component] @ eps).squeeze(-1)


def _cholesky(cov: torch.Tensor) -> torch.Tensor:
    """The Cholesky factor of each covariance; one that stays not positive-definite is one line.

    Codes of about 1e10 or more (a diverged encoder) swamp the regulariser in float64.
    """
    factor: torch.Tensor
    factor, info = torch.linalg.cholesky_ex(cov)
    if bool((info != 0).any()):
        largest = float(cov.diagonal(dim1=-2, dim2=-1).abs().max())
        raise GenzooError(f"cannot fit a Gaussian mixture to these codes: a covariance (largest variance "
                          f"{largest:.3g}) is not positive-definite even regularised")
    return factor


def _kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """Spread-out initial means: each next seed drawn with probability ~ squared distance."""
    first = int(torch.randint(len(x), (1,), generator=generator))
    seeds = [x[first]]
    nearest = (x - seeds[0]).pow(2).sum(1)
    for _ in range(1, k):
        total = nearest.sum()
        # Every code already sits on a seed (a collapsed encoder): any point will do.
        weights = (nearest / total if total > 0 else torch.ones_like(nearest)).cpu().float()
        pick = int(torch.multinomial(weights, 1, generator=generator))
        seeds.append(x[pick])
        nearest = torch.minimum(nearest, (x - x[pick]).pow(2).sum(1))
    return torch.stack(seeds).clone()
