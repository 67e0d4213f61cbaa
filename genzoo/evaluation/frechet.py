"""Frechet distance between generated samples and the test split, with torch-fidelity's extractors.

Samples are drawn from the model (or a sampler) in the batches torch-fidelity's own loop
would draw, so the numbers are those torch-fidelity gives; genzoo runs the extractor itself
(batch norms folded, channels-last, one host copy). Images reach the extractors as uint8
RGB (grey replicated), as saved PNGs would.

genzoo keeps the reference statistics itself, never in torch-fidelity's cache, which
reads its files with a full unpickler (a file planted there would run code). They are
stored as ``.npz`` of plain float64 arrays, read with ``allow_pickle=False``, under a
name made of the dataset, the image count and a digest of the pixels, in a folder named
after the extractor and a digest of its weights; the file holds the full digests of the
pixels and of the weights, and a digest of its arrays, all checked on every read. A
file that fails a check is refused with one line (delete it to have it computed again),
so statistics are never reused for other data or other weights and never unpickled.
The generated samples are never cached.

Two extractors, always labelled in the output:

* ``mnist``: genzoo's own MNIST classifier (:mod:`genzoo.evaluation.mnist_classifier`),
  128-d penultimate features; fast on CPU.
* ``inception``: torch-fidelity's ``inception-v3-compat`` (2048-d pool3), comparable
  to published FIDs when 10k samples meet the 10k test images; ~0.1 s/image on CPU.

The features are computed by genzoo's own loop (:func:`_features`), not torch-fidelity's:
under ``torch.inference_mode``, kept on the device and moved to the host once, and, for
Inception, with each batch norm folded into its convolution and the network in
channels-last layout (:func:`fast_inference`). Those change the features only by float
rounding (at most 1.8e-5 on values up to 5.9; the FID of 100 training images against
100 test images moved by 2e-5), so statistics cached before stay valid and their digest
is unchanged: it names the weights and the layer, which did not change
(docs/evaluation.md, "Speed of the evaluation").
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

from genzoo.checks import check_pixels
from genzoo.data import CACHE_ENV, Split, cache_root
from genzoo.errors import GenzooError
from genzoo.evaluation import mnist_classifier
from genzoo.evaluation.phases import Bar
from genzoo.evaluation.weights import file_sha256, inception_extractor, inception_weights
from genzoo.files import atomic_write, plain_path, private_folder
from genzoo.model import Model
from genzoo.sampler import Sampler
from genzoo.seeding import seeded

FEATURES = ("mnist", "inception")


@dataclass(frozen=True)
class Extractor:
    """How one feature label maps onto torch-fidelity."""

    label: str
    name: str  # torch-fidelity's feature_extractor
    layer: str
    size: int  # feature dimensions
    batch_size: int
    describe: str

    def build(self, weights: Path, sha256: str, cuda: bool) -> FeatureExtractorBase:
        """The extractor with ``weights``, loaded weights-only (torch-fidelity never opens the file)."""
        if self.label == "inception":
            net: FeatureExtractorBase = fast_inference(inception_extractor(weights, self.layer, sha256))
        else:
            net = mnist_classifier.MNISTFeatureExtractor(self.name, [self.layer],
                                                         feature_extractor_weights_path=str(weights))
        net.requires_grad_(False).eval()
        return net.cuda() if cuda else net

    @property
    def statistics_bytes(self) -> int:
        """About what one reference's statistics take on disk (float64 mean and covariance)."""
        return 8 * self.size * (self.size + 1) + 4096


EXTRACTORS = {
    "mnist": Extractor("mnist", mnist_classifier.EXTRACTOR_NAME, mnist_classifier.FEATURE_LAYER,
                       mnist_classifier.FEATURE_SIZE, 1000, "genzoo MNIST classifier, 128-d penultimate features"),
    "inception": Extractor("inception", "inception-v3-compat", "2048", 2048, 50,
                           "torch-fidelity inception-v3-compat, 2048-d pool3 features"),
}


def fast_inference(net: FeatureExtractorBase) -> FeatureExtractorBase:
    """``net`` with every conv + batch-norm block folded into one conv, in channels-last layout.

    Inception has 94 such blocks; folding saves a pass over each activation, and oneDNN's
    convolutions on this CPU run faster on channels-last tensors. Both change the
    features only by float rounding (measured by ``benchmarks/inception_speed.py``).
    """
    for block in net.modules():
        conv, norm = getattr(block, "conv", None), getattr(block, "bn", None)
        if isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d):
            block.conv = fuse_conv_bn_eval(conv, norm)
            block.bn = torch.nn.Identity()
    return net.to(memory_format=torch.channels_last)


def default_features(device: torch.device | str) -> list[str]:
    """Both extractors on a GPU; on CPU only ``mnist`` (Inception costs ~18 min per 10k images)."""
    return list(FEATURES) if torch.device(device).type == "cuda" else ["mnist"]


def resolve_features(choice: str, device: torch.device | str) -> list[str]:
    """``auto``, ``mnist``, ``inception`` or ``all`` -> the labels to compute."""
    if choice == "auto":
        return default_features(device)
    if choice == "all":
        return list(FEATURES)
    if choice in FEATURES:
        return [choice]
    raise GenzooError(f"unknown features {choice!r}; use auto, mnist, inception or all")


def cache_dir() -> Path:
    """``$GENZOO_CACHE``, else ``$XDG_CACHE_HOME/genzoo``, else ``~/.cache/genzoo`` (data downloads share it)."""
    return cache_root()


def fid_cache(cache: Path | None = None) -> Path:
    """Where reference statistics live: ``cache`` (its ``..`` taken as ``$GENZOO_CACHE``'s), else
    ``cache_dir()/fid``."""
    return plain_path(cache) if cache is not None else cache_dir() / "fid"


def _extractor_folder(root: Path, label: str, weights_sha: str) -> Path:
    """The cache folder of one extractor's statistics: its label and its weights' digest."""
    return root / f"{label}-{weights_sha[:12]}"


def _cache_advice(cache: Path | None) -> str:
    if cache is not None:
        return "choose another cache folder"
    return f"set {CACHE_ENV} to a folder genzoo can write (now {os.environ.get(CACHE_ENV) or 'unset'})"


def _private_cache(folder: Path, cache: Path | None) -> None:
    """Make ``folder`` of the FID cache if missing; one line unless only this user can change it (F2 of the
    twelfth hostile pass: under a parent's default ACL another user could swap the statistics in)."""
    problem = private_folder(folder)[1]
    if problem is not None:
        raise GenzooError(f"the FID cache {folder} {problem}, so another user could change the FIDs genzoo reports; "
                          f"{_cache_advice(cache)}")


def check_cache(features: list[str], cache: Path | None = None, inception_path: str | Path | None = None,
                download: bool = True) -> Path:
    """Fail now, before any work, if the FID cache cannot take the statistics of ``features``.

    Creates the folder, writes and removes a probe file, and compares the free space
    with what the statistics need (about 34 MB for Inception's, 130 kB for mnist's).
    Each extractor's own folder in it (named by its weights) must be a folder or absent:
    a file there would fail only when the statistics are stored, after the evaluation.
    """
    root = fid_cache(cache)
    try:
        _private_cache(root, cache)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=root)
        os.close(fd)
        os.unlink(probe)
        free = shutil.disk_usage(root).free
    except OSError as exc:
        raise GenzooError(f"the FID cache {root} cannot be written ({exc.strerror or exc}); "
                          f"{_cache_advice(cache)}") from exc
    need = sum(EXTRACTORS[f].statistics_bytes for f in features)
    if free < need:
        raise GenzooError(f"the FID cache {root} has {free / 1e6:.2f} MB free and the reference statistics "
                          f"need {need / 1e6:.2f} MB; free some space or {_cache_advice(cache)}")
    for label in features:
        folder = _extractor_folder(root, label, file_sha256(_weights(label, inception_path, download)))
        if os.path.lexists(folder) and not folder.is_dir():
            raise GenzooError(f"{folder} is not a folder (a file or a broken link): the FID cache keeps the {label} "
                              f"statistics there; move it away or {_cache_advice(cache)}")
        if os.path.lexists(folder):
            _private_cache(folder, cache)
    return root


def _weights(label: str, inception_path: str | Path | None, download: bool) -> Path:
    if label == "inception":
        return inception_weights(inception_path, download)
    return mnist_classifier.WEIGHTS


# -- inputs ------------------------------------------------------------------------------

def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1], ``(N, 1 or 3, H, W)`` -> uint8 ``(N, 3, H, W)``, as a PNG would hold them."""
    x = (images.detach().float() * 255).round().clamp(0, 255).to(torch.uint8)
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


class ImageSet(Dataset[torch.Tensor]):
    """Fixed images as uint8 RGB on the CPU, fetched a batch at a time (torch-fidelity's input)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = to_uint8_rgb(images.cpu())

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        return list(self.images[indices].unbind(0))


def _features(net: FeatureExtractorBase, layer: str, batches: Iterable[torch.Tensor],
              bar: Bar | None) -> torch.Tensor:
    """``layer``'s features of uint8 RGB batches, kept on the device and moved to the host once.

    torch-fidelity's own loop runs under ``no_grad`` and moves each batch's features to
    the host (a device sync per batch); only the extractor runs under ``inference_mode``
    here, so whatever produces the batches (a model's ``sample``) runs as it would elsewhere.
    """
    out = []
    for images in batches:
        with torch.inference_mode():
            out.append(net.convert_features_tuple_to_dict(net(images))[layer])
        if bar is not None:
            bar.advance(images.shape[0])
    return torch.cat(out).cpu()


def _image_batches(images: torch.Tensor, batch: int, device: torch.device) -> Iterable[torch.Tensor]:
    """Fixed images in [0, 1] as uint8 RGB batches on ``device``."""
    pixels = ImageSet(images).images
    return (pixels[start:start + batch].to(device) for start in range(0, len(pixels), batch))


def _sample_batches(source: Model | Sampler, n: int, batch: int) -> Iterable[torch.Tensor]:
    """``n`` samples of a model (its own) or of a sampler, as uint8 RGB, ``batch`` at a time, from the RNG
    :func:`fid` seeds.

    The batches are those torch-fidelity drew, so the samples are too. Each must be pixels
    in [0, 1] (uint8 would clamp NaN to black without a word): the first batch is checked
    at once, the others by their extremes, kept on the device and checked once at the end.
    """
    who = type(source.model if isinstance(source, Sampler) else source).__name__
    extremes = []
    for start in range(0, n, batch):
        with torch.no_grad():
            drawn = source.sample(min(batch, n - start)).detach()
        if start == 0:
            check_pixels(drawn, who)
        extremes.append(torch.stack([drawn.amin(), drawn.amax()]))
        yield to_uint8_rgb(drawn)
    check_pixels(torch.stack(extremes), who)


def split_sha256(split: Split) -> str:
    """The sha256 (hex) of a split's pixels as uint8."""
    h = hashlib.sha256()
    for x in split.batches(10_000):
        h.update(to_uint8_rgb(x[:, :1].cpu())[:, 0].numpy().tobytes())
    return h.hexdigest()


def split_digest(split: Split) -> str:
    """First 12 hex digits of the sha256 of a split's pixels as uint8."""
    return split_sha256(split)[:12]


def reference_cache_name(dataset: str, split: Split, digest: str | None = None) -> str:
    """Stable cache name of a reference split: dataset, image count and pixel digest."""
    return f"genzoo-{dataset}-test-{len(split)}-{(digest or split_sha256(split))[:12]}"


# -- reference statistics on disk --------------------------------------------------------

FORMAT = "genzoo-fid-statistics-1"
_TEXT = ("format", "reference", "weights", "extractor", "digest")
_ARRAYS = ("mu", "sigma")


def statistics(features: torch.Tensor) -> dict[str, np.ndarray]:
    """FID statistics of ``(N, D)`` features, in float64: mean and covariance (as torch-fidelity's)."""
    x = features.detach().cpu().numpy().astype(np.float64)
    return {"mu": x.mean(axis=0), "sigma": np.cov(x, rowvar=False)}


def _arrays_digest(mu: np.ndarray, sigma: np.ndarray) -> str:
    return hashlib.sha256(mu.tobytes() + sigma.tobytes()).hexdigest()


class _Invalid(Exception):
    """Why a statistics file was refused."""


# -- the metric --------------------------------------------------------------------------

@dataclass
class _Setup:
    """Everything one FID computation against one reference needs, resolved once."""

    extractor: Extractor
    weights: Path
    weights_sha: str
    reference: Split
    reference_sha: str
    dataset: str
    cache: Path | None

    @property
    def path(self) -> Path:
        """The statistics file: folder per extractor and weights, name per reference."""
        folder = _extractor_folder(fid_cache(self.cache), self.extractor.label, self.weights_sha)
        name = reference_cache_name(self.dataset, self.reference, self.reference_sha)
        return folder / f"{name}-{self.extractor.name}-{self.extractor.layer}.npz"

    @property
    def cached(self) -> bool:
        """Whether something is on disk under the statistics' name (:meth:`load` checks it)."""
        return os.path.lexists(self.path)

    def expected(self) -> dict[str, str]:
        """The text members a file for this reference, extractor and weights must hold."""
        return {
            "format": FORMAT,
            "reference": f"{self.reference_sha} {self.dataset} test split, {len(self.reference)} images",
            "weights": self.weights_sha,
            "extractor": f"{self.extractor.name} layer {self.extractor.layer}",
        }

    def load(self) -> dict[str, np.ndarray] | None:
        """The verified statistics on disk, or None when there are none; anything wrong is one line."""
        path = self.path
        if not self.cached:
            return None
        try:
            return self._read(path)
        except _Invalid as exc:
            raise GenzooError(f"FID cache file {path} is not valid genzoo reference statistics: {exc}; "
                              "delete it to have them computed again") from None

    def _members(self, path: Path) -> dict[str, np.ndarray]:
        """The archive's arrays, after checking its member names, sizes and array headers."""
        d = self.extractor.size
        shapes = {"mu": (d,), "sigma": (d, d)}
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise _Invalid("it is not a numpy archive (a single array)")
            if sorted(archive.files) != sorted(_TEXT + _ARRAYS):
                raise _Invalid(f"unexpected contents ({len(archive.files)} members, "
                               f"not genzoo's {len(_TEXT + _ARRAYS)})")
            zipped = archive.zip
            assert zipped is not None, "an NpzFile's zip is open until the archive is closed"
            for name in archive.files:
                member = f"{name}.npy"
                if zipped.getinfo(member).file_size > 8 * d * d + 2048:
                    raise _Invalid(f"unexpected contents (member {name} is too large)")
                with zipped.open(member) as f:  # the header only: no array is built before it is checked
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                if dtype.hasobject:
                    raise _Invalid("it holds objects, not plain arrays")
                if name in shapes and (shape != shapes[name] or dtype != np.float64):
                    raise _Invalid(f"its arrays are not float64 of shapes ({d},) and ({d}, {d})")
                if name not in shapes and (shape != () or dtype.kind != "U"):
                    raise _Invalid(f"unexpected contents ({name} is not a string)")
            return {name: archive[name] for name in archive.files}

    def _read(self, path: Path) -> dict[str, np.ndarray]:
        if not path.is_file():
            raise _Invalid("it is not a regular file")
        try:
            data = self._members(path)
        except _Invalid:
            raise
        except Exception as exc:  # zipfile and numpy report a damaged archive in many ways
            raise _Invalid(f"it is not a numpy archive ({type(exc).__name__})") from exc
        text = {name: str(data[name]) for name in _TEXT}
        mu, sigma = data["mu"], data["sigma"]
        expected = self.expected()
        if text["format"] != FORMAT:
            raise _Invalid(f"it has format {text['format'][:40]!r}, not {FORMAT!r}")
        if text["digest"] != _arrays_digest(mu, sigma):
            raise _Invalid("its arrays do not match their digest")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise _Invalid("its arrays are not finite")
        # The digest finds damage, not forgery: a covariance must also be one.
        scale = max(float(np.abs(sigma).max()), 1e-30)
        if not np.allclose(sigma, sigma.T, rtol=0, atol=1e-9 * scale) or \
                float(np.linalg.eigvalsh(sigma).min()) < -1e-6 * scale:
            raise _Invalid("its sigma is not a covariance (not symmetric positive semi-definite)")
        if text["weights"] != expected["weights"]:
            raise _Invalid("it was written for other extractor weights")
        if text["extractor"] != expected["extractor"]:
            raise _Invalid("it was written for another extractor")
        if text["reference"] != expected["reference"]:
            raise _Invalid("it was written for other reference data")
        return {"mu": mu, "sigma": sigma}

    def store(self, stats: dict[str, np.ndarray]) -> None:
        """Write the statistics atomically; a cache that cannot take them is named as the FID cache."""
        path = self.path
        # Any: numpy's stubs would read a member named like savez's allow_pickle as that flag.
        members: dict[str, Any] = {**{k: np.array(v) for k, v in self.expected().items()},
                   "digest": np.array(_arrays_digest(stats["mu"], stats["sigma"])), **stats}
        try:
            _private_cache(path.parent, self.cache)
            atomic_write(path, lambda f: np.savez(f, **members))
        except (OSError, GenzooError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise GenzooError(f"the FID cache cannot hold the reference statistics ({reason}); "
                              f"{_cache_advice(self.cache)}") from exc

    def compute(self, net: FeatureExtractorBase, cuda: bool, bar: Bar | None) -> dict[str, np.ndarray]:
        """Extract the reference's features, store their statistics, return them."""
        images = torch.cat(list(self.reference.batches(10_000)))
        device = torch.device("cuda" if cuda else "cpu")
        stats = statistics(_features(net, self.extractor.layer, _image_batches(images, self.extractor.batch_size,
                                                                               device), bar))
        self.store(stats)
        return stats

    def describe(self) -> dict[str, str]:
        name = reference_cache_name(self.dataset, self.reference, self.reference_sha)
        return {
            "extractor": _described(self.extractor, self.weights_sha),
            "reference": f"{self.dataset} test split, {len(self.reference)} images ({name})",
        }


def _described(extractor: Extractor, weights_sha: str) -> str:
    """How an FID record names its extractor: what it is and the start of its weights' digest."""
    return f"{extractor.describe}, weights sha256 {weights_sha[:12]}"


def extractor_description(features: str, inception_path: str | Path | None = None, download: bool = True) -> str:
    """The ``extractor`` an FID of ``features`` measured now records (:func:`fid`), weights digest included.

    A record whose ``extractor`` differs is of other weights (another Inception file, another ``$TORCH_HOME``, an
    older genzoo's MNIST classifier): its number is not one this extractor gives, and whoever reuses records (the
    leaderboard) compares the two first.
    """
    if features not in EXTRACTORS:
        raise GenzooError(f"unknown features {features!r}; use {' or '.join(FEATURES)}")
    return _described(EXTRACTORS[features], file_sha256(_weights(features, inception_path, download)))


def _setup(reference: Split, features: str, dataset: str, cache: Path | None,
           inception_path: str | Path | None, download: bool) -> _Setup:
    if features not in EXTRACTORS:
        raise GenzooError(f"unknown features {features!r}; use {' or '.join(FEATURES)}")
    if len(reference) < 2:
        raise GenzooError("FID needs at least 2 reference images")
    weights = _weights(features, inception_path, download)
    return _Setup(EXTRACTORS[features], weights, file_sha256(weights), reference, split_sha256(reference),
                  dataset, cache)


def reference_path(reference: Split, features: str = "mnist", *, dataset: str = "mnist",
                   cache: Path | None = None, inception_path: str | Path | None = None,
                   download: bool = True) -> Path:
    """The file that holds (or will hold) the reference's FID statistics for ``features``."""
    return _setup(reference, features, dataset, cache, inception_path, download).path


def reference_cached(reference: Split, features: str = "mnist", *, dataset: str = "mnist",
                     cache: Path | None = None, inception_path: str | Path | None = None,
                     download: bool = True) -> bool:
    """Whether the reference's FID statistics for ``features`` are on disk (verified when used)."""
    return _setup(reference, features, dataset, cache, inception_path, download).cached


def reference_statistics(reference: Split, features: str = "mnist", *, dataset: str = "mnist",
                         cache: Path | None = None, inception_path: str | Path | None = None,
                         download: bool = True, device: torch.device | str = "cpu",
                         bar: Bar | None = None) -> bool:
    """Compute and cache the reference's FID statistics now, so no model's FID time includes them.

    Returns whether they were already cached (then they are verified and nothing is extracted).
    """
    setup = _setup(reference, features, dataset, cache, inception_path, download)
    if setup.load() is not None:
        return True
    if bar is not None:
        bar.set_total(len(reference))
    cuda = torch.device(device).type == "cuda"
    setup.compute(setup.extractor.build(setup.weights, setup.weights_sha, cuda), cuda, bar)
    return False


def fid(
    source: Model | Sampler | torch.Tensor,
    reference: Split,
    features: str = "mnist",
    samples: int = 10_000,
    *,
    dataset: str = "mnist",
    seed: int = 0,
    cache: Path | None = None,
    inception_path: str | Path | None = None,
    download: bool = True,
    bar: Bar | None = None,
) -> dict[str, Any]:
    """FID of ``samples`` draws from a model (or of fixed images in [0, 1]) against ``reference``.

    Progress goes to ``bar`` as images reach the extractor (the reference only when its
    statistics are not cached). The returned dict names the extractor, sample count and
    reference, so the number is never reported without them.
    """
    setup = _setup(reference, features, dataset, cache, inception_path, download)
    n = source.shape[0] if isinstance(source, torch.Tensor) else samples
    if n < 2:
        raise GenzooError("FID needs at least 2 samples")
    if isinstance(source, Model) and not source.can_sample:
        raise GenzooError(f"{type(source).__name__} cannot sample, so it has no FID")
    if isinstance(source, torch.Tensor):
        check_pixels(source, "given as images")
    stored = setup.load()
    if bar is not None:
        bar.set_total(n + (0 if stored is not None else len(reference)))
    device = source.device
    cuda = device.type == "cuda"
    net = setup.extractor.build(setup.weights, setup.weights_sha, cuda)
    reference_stats = stored if stored is not None else setup.compute(net, cuda, bar)
    batch = setup.extractor.batch_size
    with seeded(device, seed):
        if isinstance(source, torch.Tensor):
            batches = _image_batches(source, batch, device)
        else:
            (source.model if isinstance(source, Sampler) else source).eval()
            batches = _sample_batches(source, n, batch)
        drawn = _features(net, setup.extractor.layer, batches, bar)
    value = float(fid_statistics_to_metric(statistics(drawn), reference_stats, False)[KEY_METRIC_FID])
    # A distance of nearly equal statistics can come out a hair below 0 in floating point: it is 0 (genzoo's
    # readers refuse a negative FID, so writing one would make the file unreadable to genzoo itself).
    value = 0.0 if value < 0 else value
    return {
        "features": features,
        **setup.describe(),
        "samples": n,
        "reference_cached": stored is not None,
        "seed": seed,
        "fid": value,
    }
