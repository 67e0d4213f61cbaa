"""The latent space of a model that encodes: test codes in 2-D, interpolations, traversals, and numbers.

The source article claims that an autoencoder's codes form clusters with gaps between
them, while a VAE's fill a continuous space, so that points between two codes decode to
digits. The pictures show it; the numbers measure it, as Ghosh et al. (2020) do in their
"Interp" column: decode the midpoints of random pairs of test codes and take the FID of
those images against the test split, beside the FID of the test images' own
reconstructions (the decoder's quality without any gap to cross) and the MNIST
classifier's mean confidence (its largest softmax probability) on both. Everything goes
through the Model interface (``can_encode``, ``encode``, ``decode``, ``gaussian_prior``):
no model is named here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from genzoo import figures
from genzoo.building import load_model, load_split, select_device
from genzoo.checks import NotCodes, NotPixels, NotShaped, check_pixels, kept_copy
from genzoo.data import Split
from genzoo.errors import GenzooError, blamed
from genzoo.evaluation.frechet import check_cache, fid, to_uint8_rgb
from genzoo.evaluation.limits import DEFAULT_PAIRS, MAX_PAIRS
from genzoo.evaluation.mnist_classifier import load_classifier
from genzoo.files import atomic_write_json, plain_path
from genzoo.model import Model
from genzoo.run_folder import CONFIG, read_run, refuse_used_folder, run_labels, staged_run_dir
from genzoo.sampler import model_call, model_images
from genzoo.seeding import check_seed

#: The pictures: pairs of test digits interpolated, steps between them, dimensions traversed.
GRID_PAIRS = 8
STEPS = 10
TRAVERSED = 10
#: What ``genzoo latent`` writes into its folder.
PICTURES = ("latent.png", "interpolation.png", "traversal.png")
RESULT_FILE = "latent.json"
#: What the lines that refuse its ``--out`` call that folder: it holds pictures, not a run.
PICTURE_FOLDER = "picture folder"


def require_latent(model: Model, name: str) -> None:
    """Refuse, in one line, a model with no codes to draw."""
    if not model.can_encode:
        raise GenzooError(f"{name} cannot encode, so it has no latent space to draw or measure "
                          "(genzoo latent needs a model that can encode, such as an autoencoder)")


@torch.no_grad()
def test_codes(model: Model, test: Split, batch_size: int = 1000) -> torch.Tensor:
    """The codes of every test image, ``(images, latent)``, on the CPU."""
    model.eval()
    codes = torch.cat([kept_copy(model.checked_codes(x)) for x in test.batches(batch_size)])  # each its own
    name = type(model).__name__
    if codes.shape[0] != len(test):
        raise NotCodes(f"{name}.encode gave {codes.shape[0]} codes for {len(test)} test images; it must give one "
                       "code per image, (images, latent)")
    broken = int((~torch.isfinite(codes)).any(dim=1).sum())
    if broken:  # the shape is right: say what is wrong (nineteenth hostile pass, plugins M1)
        raise NotCodes(f"{name}.encode gave codes holding NaN or infinite values for {broken} of {len(test)} test "
                       "images; it must give finite codes")
    return codes


def split_labels(split: Split) -> torch.Tensor | None:
    """The split's labels on the CPU, when it carries one per image (a :class:`TensorSplit` from a labelled dataset,
    as it is or in a plugin's split class, which genzoo guards: ``building.GuardedSplit``)."""
    labels = getattr(split, "labels", None)
    if isinstance(labels, torch.Tensor) and labels.dim() == 1 and len(labels) == len(split):
        return labels.cpu()
    return None


def project(codes: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
    """Points in 2-D and the names of their axes: the codes themselves for a latent of size 2
    (1: against zero), else their first two principal components, with the share of variance each holds.

    An SVD's signs are arbitrary; each axis is turned so that its largest entry is positive,
    so the same codes always give the same picture.
    """
    size = codes.shape[1]
    if size == 2:
        return codes, ["z1", "z2"]
    if size == 1:
        return torch.cat([codes, torch.zeros_like(codes)], dim=1), ["z1", "(latent size 1)"]
    centred = codes.double() - codes.double().mean(dim=0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:2]
    axes = axes * torch.sign(axes.gather(1, axes.abs().argmax(dim=1, keepdim=True)))
    variance = singular.pow(2)
    share = variance[:2] / variance.sum().clamp_min(torch.finfo(torch.float64).tiny)
    return (centred @ axes.T).float(), [f"PC{i + 1} ({100 * float(share[i]):.0f}% of variance)" for i in range(2)]


def interpolation_kind(model: Model) -> str:
    """Spherical for a Gaussian prior (the path keeps to the prior's shell, as is customary), else linear."""
    return "spherical" if model.gaussian_prior else "linear"


def interpolate(model: Model, a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Codes from each row of ``a`` to the same row of ``b`` in ``steps`` steps: ``(pairs, steps, latent)``."""
    t = torch.linspace(0, 1, steps, dtype=a.dtype)[None, :, None]
    a, b = a[:, None], b[:, None]
    linear = (1 - t) * a + t * b
    if not model.gaussian_prior:
        return linear
    # slerp (Shoemake 1985; White 2016 for generative models) of the directions, the norm going linearly
    # from one code's to the other's. Slerp of the raw codes would divide by the sine of their angle: two
    # codes of unequal norms in almost opposite directions would throw the midpoint far out.
    unit_a, unit_b = torch.nn.functional.normalize(a, dim=2), torch.nn.functional.normalize(b, dim=2)
    angle = torch.acos((unit_a * unit_b).sum(2, keepdim=True).clamp(-1, 1))
    sine = torch.sin(angle)
    turned = torch.sin((1 - t) * angle) * unit_a + torch.sin(t * angle) * unit_b
    direction = torch.nn.functional.normalize(turned, dim=2)  # a unit vector in exact arithmetic; kept one in float32
    spherical = ((1 - t) * a.norm(dim=2, keepdim=True) + t * b.norm(dim=2, keepdim=True)) * direction
    return torch.where(sine < 1e-6, linear, spherical)  # (anti)parallel codes: no plane to turn in


def random_pairs(n: int, pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``pairs`` random pairs of distinct indices below ``n``, drawn from their own seeded stream."""
    if n < 2:
        raise GenzooError(f"interpolation needs at least 2 test images, got {n}")
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(n, (pairs,), generator=generator)
    second = (first + torch.randint(1, n, (pairs,), generator=generator)) % n
    return first, second


@torch.no_grad()
def decode(model: Model, codes: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Images of the codes (any leading shape flattened), on the CPU: taken as reconstructions are
    (:func:`model_images`), or complex ones would lose their imaginary part here and be measured; of
    the model's sample shape (:class:`NotShaped` else)."""
    model.eval()
    flat = codes.reshape(-1, codes.shape[-1])
    who = type(model).__name__
    decoded = []
    for z in flat.split(batch_size):
        # Its own copy: a decode that edits its input in place (``z *= 2``) must not change the codes drawn
        # in the scatter, or the next batch's (eleventh hostile pass F4).
        with blamed(f"{who}.decode"):
            raw = model.decode(z.to(model.device, copy=True))
        images = model_images(raw, who, "decode", "decoded images")
        if tuple(images.shape) != (expected := (len(z), *model.sample_shape)):  # else the extractor is blamed
            raise NotShaped(who, f"shape {tuple(images.shape)}, not {expected}", "decode", "decoded images")
        try:  # here, or the FID after it blames images "given" to it, and sample
            check_pixels(images, who)
        except NotPixels as exc:
            raise NotPixels(who, exc.found, "decode", "decoded images") from None
        decoded.append(kept_copy(images))  # a decode that refills one buffer must not have each batch be the last
    return torch.cat(decoded)


def midpoint_images(model: Model, codes: torch.Tensor, pairs: int, seed: int, batch_size: int = 1000) -> torch.Tensor:
    """The decoded midpoints of ``pairs`` random pairs of ``codes``."""
    first, second = random_pairs(codes.shape[0], pairs, seed)
    return decode(model, interpolate(model, codes[first], codes[second], 3)[:, 1], batch_size)


@torch.no_grad()
def classifier_confidence(images: torch.Tensor, batch_size: int = 1000) -> float:
    """The MNIST classifier's mean largest softmax probability: how surely each image is some digit.

    The images are quantised to 8 bits first, as the FID extractors see them.
    """
    net, _ = load_classifier()
    total = 0.0
    for batch in images.split(batch_size):
        grey = to_uint8_rgb(batch.cpu()).float().mean(dim=1, keepdim=True) / 255
        total += float(torch.softmax(net(grey), dim=1).max(dim=1).values.double().sum())
    return total / images.shape[0]


def interpolation_metrics(model: Model, test: Split, pairs: int = DEFAULT_PAIRS, *, seed: int = 0,
                          dataset: str = "mnist", cache: Path | None = None,
                          codes: torch.Tensor | None = None, batch_size: int = 1000, features: str = "mnist",
                          inception_path: str | Path | None = None, download: bool = True) -> dict[str, Any]:
    """Interpolation FID and classifier confidence of decoded midpoints, beside the same for reconstructions.

    FID uses ``features`` against ``test`` (its statistics cached as ``genzoo eval`` caches
    them): the cheap ``mnist`` ones by default, Inception where a protocol measures with it
    (Ghosh et al.'s REC and Interp. columns); pairs are drawn under ``seed``, so the numbers
    repeat exactly.
    """
    require_latent(model, type(model).__name__)
    if pairs < 2:
        raise GenzooError(f"interpolation FID needs at least 2 pairs, got {pairs}")
    codes = test_codes(model, test, batch_size) if codes is None else codes
    midpoints = midpoint_images(model, codes, pairs, seed, batch_size)
    reconstructions = decode(model, codes, batch_size)
    originals = torch.cat([x.float().cpu() for x in test.batches(batch_size)])
    where: dict[str, Any] = {"dataset": dataset, "seed": seed, "cache": cache, "inception_path": inception_path,
                             "download": download}
    return {
        "pairs": pairs,
        "interpolation": interpolation_kind(model),
        "seed": seed,
        "test_images": len(test),
        "midpoint_fid": fid(midpoints, test, features, **where),
        "reconstruction_fid": fid(reconstructions, test, features, **where),
        "midpoint_confidence": classifier_confidence(midpoints, batch_size),
        "reconstruction_confidence": classifier_confidence(reconstructions, batch_size),
        "test_confidence": classifier_confidence(originals, batch_size),
    }


def interpolation_grid(model: Model, test: Split, codes: torch.Tensor, seed: int,
                       pairs: int = GRID_PAIRS, steps: int = STEPS) -> torch.Tensor:
    """Rows of: a test image, ``steps`` decoded codes from its code to another's, that other image."""
    first, second = random_pairs(codes.shape[0], pairs, seed)
    path = decode(model, interpolate(model, codes[first], codes[second], steps)).view(pairs, steps, *model.sample_shape)
    originals = torch.cat([x.float().cpu() for x in test.batches(1000)])
    return torch.cat([originals[first, None], path, originals[second, None]], dim=1).flatten(0, 1)


def traversal_grid(model: Model, codes: torch.Tensor, dims: int = TRAVERSED,
                   steps: int = STEPS) -> tuple[torch.Tensor, list[int]]:
    """One row per latent dimension (the ``dims`` along which the test codes spread most): the median
    test code with that one coordinate moved from its 2nd to its 98th percentile. Also the dimensions."""
    chosen = [int(d) for d in torch.argsort(codes.std(dim=0), descending=True, stable=True)[:dims]]
    base = codes.median(dim=0).values
    low, high = torch.quantile(codes, 0.02, dim=0), torch.quantile(codes, 0.98, dim=0)
    rows = base.repeat(len(chosen), steps, 1)
    for row, d in enumerate(chosen):
        rows[row, :, d] = torch.linspace(float(low[d]), float(high[d]), steps)
    return decode(model, rows), chosen


@dataclass
class LatentRun:
    """One run drawn and measured by ``genzoo latent``."""

    run: Path
    model: Model
    name: str
    dataset: str
    data_root: str | None
    #: ``MODEL (FOLDER)``, told from the other run's as compare tells reused runs apart (:func:`run_labels`;
    #: escaped there: a folder name that is not UTF-8 holds a surrogate, which matplotlib cannot draw, pass 11 F9).
    label: str

    @property
    def title(self) -> str:
        return f"{self.label}, latent {self.model.config.latent}"


def open_runs(run_dirs: Sequence[str | Path], device: torch.device) -> list[LatentRun]:
    """The finished runs' models, each able to encode, all trained on one dataset."""
    if not 1 <= len(run_dirs) <= 2:
        raise GenzooError(f"genzoo latent draws one run, or two side by side; got {len(run_dirs)}")
    descriptions = [read_run(Path(run_dir)) for run_dir in run_dirs]
    # Two runs in folders of one name (a/run, b/run) used to share one title (eighteenth hostile pass, M1).
    labels = run_labels([(description.model, Path(run_dir)) for description, run_dir in zip(descriptions, run_dirs)])
    runs = []
    for run_dir, description, label in zip(run_dirs, descriptions, labels):
        model = load_model(run_dir, str(device), description.raw)  # only a finished run's
        require_latent(model, f"{description.model} (run {run_dir})")
        runs.append(LatentRun(Path(run_dir), model, description.model, description.train_config.dataset,
                              description.train_config.data_root, label))
    datasets = sorted({r.dataset for r in runs})
    if len(datasets) > 1:
        raise GenzooError(f"the runs were trained on different datasets ({', '.join(datasets)}); "
                          "genzoo latent draws two runs on one test split")
    return runs


def draw_latent_space(run_dirs: Sequence[str | Path], out: str | Path | None = None, *,
                      pairs: int = DEFAULT_PAIRS, seed: int = 0, test_limit: int | None = None,
                      data_root: str | None = None, device: str = "auto",
                      cache: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """``genzoo latent``: draw and measure one run's latent space, or two side by side.

    Writes ``latent.png`` (test codes in 2-D, by label), ``interpolation.png``,
    ``traversal.png`` and ``latent.json`` (the numbers, with ``pairs`` midpoints; 0: none)
    into ``out`` (default ``runs/latent-<timestamp>``), made only once everything is computed.
    """
    check_seed(seed)
    if not (isinstance(pairs, int) and (pairs == 0 or 2 <= pairs <= MAX_PAIRS)):
        raise GenzooError(f"--pairs must be 0 (no numbers) or from 2 to {MAX_PAIRS:,}, got {pairs!r}")
    if out is not None:
        out = plain_path(out)  # before the work: OLD/new/.. is OLD, a used folder
        refuse_used_folder(out, PICTURE_FOLDER)
    target = select_device(device)
    if pairs:
        check_cache(["mnist"], cache)
    runs = open_runs(run_dirs, target)
    dataset = runs[0].dataset
    test = load_split(dataset, "test", data_root or runs[0].data_root, test_limit, target,
                      recorded_in=None if data_root else runs[0].run / CONFIG)
    if len(test) < 2:
        raise GenzooError(f"genzoo latent needs at least 2 test images, got {len(test)}")
    labels = split_labels(test)
    scatter, interpolations, traversals, results = [], [], [], []
    # The models' encode and decode are guarded here as a sampler's calls are: one that moved the working directory
    # had the pictures written in the other folder, "wrote OUT" and exit 0 (twenty-fourth hostile pass, plugins F6).
    with model_call(" and ".join(sorted({type(run.model).__name__ for run in runs})), "drawing the latent space"):
        for run in runs:
            codes = test_codes(run.model, test)
            points, axes = project(codes)
            scatter.append(figures.LatentPanel(run.title, points.numpy(), None if labels is None else labels.numpy(),
                                               axes))
            kind = interpolation_kind(run.model)
            interpolations.append((f"{run.title}\n{kind}", interpolation_grid(run.model, test, codes, seed), STEPS + 2))
            grid, dims = traversal_grid(run.model, codes)
            traversals.append((f"{run.title}\nrows: z{', z'.join(str(d + 1) for d in dims)}", grid, STEPS))
            started = time.perf_counter()
            metrics = (interpolation_metrics(run.model, test, pairs, seed=seed, dataset=dataset, cache=cache,
                                             codes=codes) if pairs else None)
            results.append({"run": str(run.run), "label": run.label, "model": run.name,
                            "latent": run.model.config.latent, "projection": axes,
                            "interpolation": kind, "traversed_dimensions": [d + 1 for d in dims],
                            "metrics": metrics, "seconds": time.perf_counter() - started})
    result = {"dataset": dataset, "test_images": len(test), "pairs": pairs, "seed": seed, "runs": results,
              "pictures": list(PICTURES)}

    def write(folder: Path) -> None:
        figures.save_latent_scatter(scatter, folder / PICTURES[0], f"{dataset} test codes"
                                    + ("" if labels is not None else " (the split has no labels)"))
        figures.save_grids(interpolations, folder / PICTURES[1],
                           "interpolations between test images (first and last column: the images)")
        figures.save_grids(traversals, folder / PICTURES[2],
                           "one latent dimension at a time, from the median test code")
        atomic_write_json(folder / RESULT_FILE, result)

    # Staged as an export is: stopped between two pictures, it leaves no half-written --out (hostile pass 11 F7).
    return staged_run_dir("latent", out, "latent", write, what=PICTURE_FOLDER), result
