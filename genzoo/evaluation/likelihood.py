"""The VAE's test likelihood: negative ELBO and the importance-weighted (IWAE) NLL bound.

For K posterior samples z_k ~ q(z|x), the IWAE bound (Burda et al. 2016) is

    log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),

which equals the ELBO in expectation at K = 1 and tightens as K grows, so
``iwae_nll <= negative ELBO`` (up to sampling noise at small K).

Both come from the model through the Model interface: ``negative_elbo`` for models
with ``has_elbo`` and ``log_importance_weights`` for models with ``has_likelihood``
(:class:`genzoo.VariationalAutoencoder` supplies both). A model that has the
capability but not as configured (a VAE trained on ``mse``) raises ``GenzooError``,
and the report gives its message as the reason for "n/a"; so does a mean that is not
finite (a plugin's log of 0), which eval.json could not hold, and parts that break the
contract the report's "-ELBO (BCE + KL)" column files them under (:func:`checked_elbo_parts`),
or weights whose mean is not the model's own ELBO (:func:`check_weights_against_elbo`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from genzoo.data import Split
from genzoo.errors import GenzooError, PluginFault, blamed
from genzoo.evaluation.phases import Bar
from genzoo.model import Model
from genzoo.seeding import seeded

#: Decoded rows per chunk: bounds memory to about 60 MB of logits on MNIST.
ROWS_PER_CHUNK = 20_000


def iwae_unsupported(model: Model) -> str | None:
    """Why ``model`` gets no IWAE estimate, or None when it claims the capability and has it as built."""
    if not model.has_likelihood:
        return "the model offers no likelihood"
    return model.checked_lacking_capabilities().get("likelihood")


@torch.no_grad()
def negative_elbo(model: Model, test: Split, batch_size: int = 1000, seed: int = 0,
                  bar: Bar | None = None) -> dict[str, float] | None:
    """Mean per-image negative ELBO and its BCE and KL parts (nats), one seeded z per image."""
    if not model.has_elbo:
        return None
    model.eval()
    sums: dict[str, torch.Tensor] = {}  # on the device, in float64: read once, after the last batch
    images = 0
    with seeded(model.device, seed):
        for x in test.batches(batch_size):
            with blamed(f"{type(model).__name__}.negative_elbo"):
                parts = checked_elbo_parts(type(model).__name__, model.negative_elbo(x), x.shape[0])
            for key, value in parts.items():
                sums[key] = sums[key] + value.double().sum() if key in sums else value.double().sum()
            images += x.shape[0]
            if bar is not None:
                bar.advance(x.shape[0])
    means = {key: float(total) / images for key, total in sums.items()}
    broken = next(((key, value) for key, value in means.items() if not math.isfinite(value)), None)
    if broken is not None:  # never written: eval.json's readers refuse a non-finite number as damage
        raise PluginFault(f"{type(model).__name__}.negative_elbo gave a non-finite mean {broken[0]!r} "
                          f"({broken[1]}) over the test split")
    if means["kl"] < -elbo_noise(torch.float64) * (abs(means["bce"]) + abs(means["kl"])):
        raise PluginFault(f"{type(model).__name__}.negative_elbo gave a negative mean 'kl' ({means['kl']:.6g} nats) "
                          "over the test split: kl is KL(q(z|x) || p(z)), never negative, and the report files it as "
                          "the bound's KL part; return the KL divergence itself (its sign flipped?)")
    return {**means, "images": images}


#: The three per-image values the report's "-ELBO (BCE + KL)" column files (plugins.md, ``has_elbo``).
ELBO_PARTS = ("nelbo", "bce", "kl")


def elbo_noise(dtype: torch.dtype) -> float:
    """How far, relative to ``|bce| + |kl|``, ``nelbo`` may be from ``bce + kl`` (and a mean ``kl`` below 0) by
    rounding alone, for values of ``dtype``: 64 of its epsilons, never fewer than float32's.

    The model's own ``bce + kl`` in float32 is off by half an epsilon (6e-8 relative); one that sums its pixel
    and latent terms into ``nelbo`` in another order (or on a GPU) by a few epsilons times log2 of the terms
    (about 10 for 784 pixels). 64 epsilons (7.6e-6 relative in float32: 0.004 nats of 548) is above both, and
    below any KL a model forgot or weighted (a beta-VAE's objective reused): the hostile pass's forgotten KL of
    0.045 nats on a BCE of 548.8 is 8e-5 relative. Values kept in a float64 of float32 work get float32's noise;
    float16 and bfloat16 ones their own (coarse) epsilon's.
    """
    return 64 * max(torch.finfo(dtype).eps, torch.finfo(torch.float32).eps)


def checked_elbo_parts(name: str, parts: object, n: int) -> dict[str, torch.Tensor]:
    """``parts``, a model's ``negative_elbo`` of ``n`` images, refused as a :class:`PluginFault` unless it holds
    ``nelbo``, ``bce`` and ``kl``, each one real value per image, with ``nelbo`` = ``bce`` + ``kl`` per image to
    rounding (:func:`elbo_noise`).

    eval filed a ``nelbo`` that was ``bce`` alone (the KL forgotten) as the bound, shown as ``548.8 (548.8 + 0.0)``,
    exit 0 (eighteenth hostile pass, F10); a missing part was a ``KeyError`` traceback in the report, a batch mean
    was summed as if it were one image's value, and a complex value lost its imaginary part. The ELBO is then n/a
    with this line as the reason, the other metrics kept.
    """
    where = f"{name}.negative_elbo"
    if not isinstance(parts, dict):
        raise PluginFault(f"{where} returned a {type(parts).__name__}, not a dict of per-image values "
                          "(nelbo, bce and kl -> tensor of shape (batch,))")
    missing = [key for key in ELBO_PARTS if key not in parts]
    if missing:
        raise PluginFault(f"{where} returned {sorted(map(str, parts))}, without {', '.join(map(repr, missing))}: the "
                          "report's -ELBO (BCE + KL) needs nelbo, bce and kl, one value per image each")
    for key, value in parts.items():
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        if shape != (n,):
            raise PluginFault(f"{where} returned {key!r} of shape {shape}, not one value per image ({n},)")
        if not value.is_floating_point():
            raise PluginFault(f"{where} returned {key!r} of dtype {str(value.dtype).removeprefix('torch.')}, not "
                              "real floating-point values (nats)")
    nelbo, bce, kl = (parts[key].detach().double() for key in ELBO_PARTS)
    dtype = torch.promote_types(torch.promote_types(parts["nelbo"].dtype, parts["bce"].dtype), parts["kl"].dtype)
    finite = torch.isfinite(nelbo) & torch.isfinite(bce) & torch.isfinite(kl)  # a non-finite mean is said below
    off = finite & ((nelbo - (bce + kl)).abs() > elbo_noise(dtype) * (bce.abs() + kl.abs()))
    if bool(off.any()):
        i = int(off.nonzero()[0])
        raise PluginFault(f"{where} returned a 'nelbo' that is not 'bce' + 'kl': {float(nelbo[i]):.6g} for image "
                          f"{i} of a batch, where bce {float(bce[i]):.6g} + kl {float(kl[i]):.6g} = "
                          f"{float(bce[i] + kl[i]):.6g}; the report files nelbo as the bound and bce and kl as its "
                          "parts: return nelbo = bce + kl, per image")
    return parts


@torch.no_grad()
def iwae_nll(model: Model, test: Split, k: int, batch_size: int = 100, seed: int = 0,
             bar: Bar | None = None, nelbo: float | None = None) -> float:
    """Mean per-image IWAE estimate of -log p(x) in nats with ``k`` importance samples.

    ``nelbo``, the model's own mean negative ELBO over ``test`` when it has one, is what the weights' mean
    must estimate (:func:`check_weights_against_elbo`).
    """
    reason = iwae_unsupported(model)
    if reason is not None:
        raise ValueError(f"no IWAE estimate for {type(model).__name__}: {reason}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    model.eval()
    # -sum log p(x), sum log w, sum (log w)^2, then each draw's sum log w and sum (log w)^2 over the images, and
    # over the batches the sum and sum of squares of each draw's batch mean less the batch's: on the device, in
    # float64, read once after the last batch
    sums = torch.zeros(3 + 4 * k, dtype=torch.float64, device=model.device)
    images = batches = 0
    dtype = torch.float32
    with seeded(model.device, seed):
        for x in test.batches(batch_size):
            chunk = max(1, ROWS_PER_CHUNK // x.shape[0])
            parts = []
            for start in range(0, k, chunk):
                want = min(chunk, k - start)
                with blamed(f"{type(model).__name__}.log_importance_weights"):
                    part = model.log_importance_weights(x, want)
                shape = tuple(part.shape) if isinstance(part, torch.Tensor) else type(part).__name__
                if shape != (x.shape[0], want):  # (k, batch) or (batch, 1) would give a number labelled k
                    raise GenzooError(f"{type(model).__name__}.log_importance_weights gave {shape} for {x.shape[0]} "
                                      f"images and {want} samples, not (images, samples) = {(x.shape[0], want)}")
                parts.append(part)
            dtype = parts[0].dtype
            log_w = torch.cat(parts, dim=1).double()
            log_px = torch.logsumexp(log_w, dim=1) - math.log(k)
            apart = log_w.mean(dim=0) - log_w.mean()
            sums += torch.cat([torch.stack([-log_px.sum(), log_w.sum(), log_w.square().sum()]), log_w.sum(dim=0),
                               log_w.square().sum(dim=0), apart, apart.square()])
            images += x.shape[0]
            batches += 1
            if bar is not None:
                bar.advance(x.shape[0])
    values: list[float] = sums.tolist()
    total, sum_w, sum_w2 = values[:3]
    nll = total / images
    if not math.isfinite(nll):  # never written: eval.json's readers refuse a non-finite number as damage
        raise PluginFault(f"{type(model).__name__}.log_importance_weights gave a non-finite IWAE NLL ({nll}) "
                          "over the test split")
    draws = images * k
    mean = sum_w / draws
    draw_means = tuple(total_w / images for total_w in values[3:3 + k])
    within = sum(total_w2 / images - m * m for total_w2, m in zip(values[3 + k:3 + 2 * k], draw_means,
                                                                   strict=True)) / k
    apart_means = [total / batches for total in values[3 + 2 * k:3 + 3 * k]]
    between = sum(total2 / batches - m * m for total2, m in zip(values[3 + 3 * k:], apart_means, strict=True)) / k
    moments = WeightMoments(mean, max(sum_w2 / draws - mean * mean, 0.0), images, k, dtype, draw_means,
                            max(within, 0.0), batches, max(between, 0.0))
    if math.isfinite(moments.mean) and math.isfinite(moments.variance):  # a weight of 0 (log -inf): no mean
        if nelbo is not None:
            check_weights_against_elbo(type(model).__name__, nll, moments, nelbo)
        check_draws_alike(type(model).__name__, nll, moments)
    return nll


class WeightMoments(NamedTuple):
    """The log importance weights of a test split: their mean and variance over all ``images`` x ``k`` draws, the
    mean of each draw (the j-th of every image) over the images, the variance of a draw around its mean (the
    images' spread and the draws', pooled over the ``k`` draws), and over the ``batches`` the variance of a draw's
    batch mean less the batch's mean (pooled likewise)."""

    mean: float
    variance: float
    images: int
    k: int
    dtype: torch.dtype
    draw_means: tuple[float, ...]
    draw_variance: float
    batches: int = 1
    batch_variance: float = 0.0


#: Standard errors the weights' mean may be from the model's -ELBO: a correct model is never refused.
WEIGHT_SIGMAS = 8.0


def weights_noise(moments: WeightMoments, nelbo: float) -> float:
    """How far the negated mean log weight may be from the model's mean -ELBO ``nelbo`` by sampling and rounding.

    Both estimate the same -ELBO over the same images: the weights with ``images`` x ``k`` draws, the model's
    ``negative_elbo`` with one per image (or none, with a closed-form KL: less noise). So their difference has a
    variance of at most ``s2 (1 / (images k) + 1 / images)``, where ``s2``, the per-draw variance, is bounded above
    by the variance of every log weight around their mean (which adds the images' spread around theirs). Eight
    such standard errors (a mean of this many draws is close to normal: a correct model falls outside with odds
    below 1 in 10^14) plus the rounding :func:`elbo_noise` allows: with log weights spread by 30 nats, 2.4 nats
    for 10,000 test images at K = 200 and 24 for 100 images, where the hostile pass's forgotten term was 10^6.
    """
    spread = math.sqrt(moments.variance * (1 / (moments.images * moments.k) + 1 / moments.images))
    return WEIGHT_SIGMAS * spread + elbo_noise(moments.dtype) * (abs(moments.mean) + abs(nelbo))


def check_weights_against_elbo(name: str, nll: float, moments: WeightMoments, nelbo: float) -> None:
    """Refuse, as a :class:`PluginFault`, an IWAE NLL ``nll`` whose weights do not estimate the model's own
    mean -ELBO ``nelbo`` (beyond :func:`weights_noise`).

    A weight is ``log p(x, z) - log q(z|x)`` with z ~ q(z|x) (plugins.md, ``has_likelihood``): its mean over the
    draws is an unbiased estimate of the ELBO, and the IWAE estimate, the log of the weights' mean, is never below
    it (Jensen), so this check also holds the IWAE NLL at or below the -ELBO. Weights off by a constant (a
    normalising term forgotten: the twentieth hostile pass's +1e6, filed as an NLL of -999504.69 beside a -ELBO of
    497.65) are refused; the true NLL may lie far below the -ELBO (a poor posterior), so no bound of that kind is.
    """
    noise = weights_noise(moments, nelbo)
    if abs(-moments.mean - nelbo) > noise:
        raise PluginFault(f"{name}.log_importance_weights does not estimate the ELBO of {name}.negative_elbo: "
                          f"minus the weights' mean over the test split is {-moments.mean:.6g} nats, where the -ELBO "
                          f"is {nelbo:.6g} (they agree within {noise:.3g} nats at {moments.images} images x "
                          f"{moments.k} draws), so its IWAE NLL ({nll:.6g}) is not filed; return log p(x, z) - "
                          "log q(z|x) for z ~ q(z|x), every normalising term counted once")


def draw_noise(moments: WeightMoments, draw_mean: float) -> float:
    """How far one draw's mean over the test images, ``draw_mean``, may be from the mean over all draws by
    sampling and rounding.

    With every z ~ q(z|x), the j-th weights of the images are draws from the same distributions as the others:
    ``draw_mean - mean`` averages, over the images, one weight less the image's mean weight, whose variance is
    at most a draw's variance around its mean (:attr:`WeightMoments.draw_variance`: the images' spread too). So
    eight such standard errors, as :func:`weights_noise` allows (a correct model is refused with odds below 1 in
    10^14 per draw), plus rounding; a term that differs by draw adds nothing to this variance, however large.
    The built-in models trained one epoch on 3,000 images: the VAE's farthest draw (of 200, over 2,000 test
    images) was 0.71 nats from the mean where 8.5 are allowed; conv-vae's (of 50, over 1,000) 148 of 504.

    A model may draw one noise per draw for a whole batch (``torch.randn(k, 1, D)`` broadcast over the images):
    each image's draws are still z ~ q(z|x), but the images' j-th weights are no longer independent, and a
    draw's mean then varies by the number of batches, not of images (the review of plugins F7's fix: simulated,
    such weights were refused 3 times in 5). So the standard error is also measured from how far each draw's
    batch mean is from its batch's, batch to batch, and the larger of the two is taken; a term that differs by
    draw alike in every batch still adds nothing to either.
    """
    spread = math.sqrt(moments.draw_variance / moments.images)
    if moments.batches > 1:
        spread = max(spread, math.sqrt(moments.batch_variance / moments.batches))
    return WEIGHT_SIGMAS * spread + elbo_noise(moments.dtype) * (abs(draw_mean) + abs(moments.mean))


def check_draws_alike(name: str, nll: float, moments: WeightMoments) -> None:
    """Refuse, as a :class:`PluginFault`, an IWAE NLL ``nll`` whose weights differ by draw: each draw's mean over
    the test images must be the mean over all draws (beyond :func:`draw_noise`).

    The mean of the weights is held to the -ELBO (:func:`check_weights_against_elbo`), but not their spread, and
    the IWAE estimate, a log-mean-exp, follows the largest weights: +C on even draws and -C on odd ones kept the
    mean and filed an IWAE NLL of -29,742.8 beside a -ELBO of 283.5 at C = 30,000 (twenty-first hostile pass,
    plugins F7). Each draw must be z ~ q(z|x) and its weight computed alike, so each draw's mean estimates the
    same ELBO. A term that differs from image to image or at random, with a zero mean, is not seen: the weights
    of a poor posterior spread as widely (docs/evaluation.md).
    """
    if moments.images < 2:  # one image: no spread around a draw's mean to measure its noise by
        return
    worst = max(range(moments.k), key=lambda j: abs(moments.draw_means[j] - moments.mean))
    off = moments.draw_means[worst] - moments.mean
    noise = draw_noise(moments, moments.draw_means[worst])
    if abs(off) > noise:
        raise PluginFault(f"{name}.log_importance_weights gives weights that differ by draw: minus the mean of draw "
                          f"{worst + 1} of {moments.k} over the test split is {-moments.draw_means[worst]:.6g} nats, "
                          f"where minus the mean over all draws is {-moments.mean:.6g} (they agree within "
                          f"{noise:.3g} nats at {moments.images} images for draws alike), so its IWAE NLL "
                          f"({nll:.6g}) is not filed; return log p(x, z_k) - log q(z_k|x) for each z_k ~ q(z|x), "
                          "every draw's weight computed alike")


def check_batch_weights(name: str, log_w: torch.Tensor, nelbo: float) -> None:
    """:func:`check_weights_against_elbo` and :func:`check_draws_alike` for one batch's weights ``log_w``
    (images, k) against that batch's mean -ELBO ``nelbo``: the conformance kit holds a model to ``genzoo eval``'s
    checks."""
    w = log_w.detach().double()
    nll = -float((torch.logsumexp(w, dim=1) - math.log(w.shape[1])).mean())
    moments = WeightMoments(float(w.mean()), float(w.var(unbiased=False)), w.shape[0], w.shape[1], log_w.dtype,
                            tuple(w.mean(dim=0).tolist()), float(w.var(dim=0, unbiased=False).mean()))
    check_weights_against_elbo(name, nll, moments, nelbo)
    check_draws_alike(name, nll, moments)
