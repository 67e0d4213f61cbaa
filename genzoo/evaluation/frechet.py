"""Frechet distance between generated samples and the test split, through torch-fidelity.

torch-fidelity draws the samples itself: the model is wrapped as a
``GenerativeModelModuleWrapper`` whose forward returns ``model.sample(n)`` for each
batch it asks for. Images reach the extractors as uint8 RGB (grey replicated), as
saved PNGs would. The reference statistics of the test split are cached under a name
made of the dataset, the image count and a digest of the pixels, in a folder named
after the extractor and a digest of its weights, so they are computed once and can
never be reused for other data or other weights.

Two extractors, always labelled in the output:

* ``mnist``: genzoo's own MNIST classifier (:mod:`genzoo.evaluation.mnist_classifier`),
  128-d penultimate features; fast on CPU.
* ``inception``: torch-fidelity's ``inception-v3-compat`` (2048-d pool3), comparable
  to published FIDs when 10k samples meet the 10k test images; ~0.1 s/image on CPU.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.metric_fid import fid_input_id_to_statistics_cached
from torch_fidelity.utils import create_feature_extractor

from genzoo.data import Split
from genzoo.errors import GenzooError
from genzoo.evaluation import mnist_classifier
from genzoo.evaluation.phases import Bar
from genzoo.evaluation.weights import file_digest, inception_weights
from genzoo.model import Model
from genzoo.seeding import seeded

FEATURES = ("mnist", "inception")
CACHE_ENV = "GENZOO_CACHE"


@dataclass(frozen=True)
class Extractor:
    """How one feature label maps onto torch-fidelity."""

    label: str
    name: str  # torch-fidelity's feature_extractor
    layer: str
    batch_size: int
    describe: str


EXTRACTORS = {
    "mnist": Extractor("mnist", mnist_classifier.EXTRACTOR_NAME, mnist_classifier.FEATURE_LAYER, 1000,
                       "genzoo MNIST classifier, 128-d penultimate features"),
    "inception": Extractor("inception", "inception-v3-compat", "2048", 50,
                           "torch-fidelity inception-v3-compat, 2048-d pool3 features"),
}


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
    """``$GENZOO_CACHE``, else ``$XDG_CACHE_HOME/genzoo``, else ``~/.cache/genzoo``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "genzoo"


def _weights(label: str, inception_path: str | Path | None, download: bool) -> Path:
    if label == "inception":
        return inception_weights(inception_path, download)
    return mnist_classifier.WEIGHTS


# -- inputs ------------------------------------------------------------------------------

def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1], ``(N, 1 or 3, H, W)`` -> uint8 ``(N, 3, H, W)``, as a PNG would hold them."""
    x = (images.detach().float() * 255).round().clamp(0, 255).to(torch.uint8)
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x


class ImageSet(Dataset):
    """Fixed images as uint8 RGB on the CPU, fetched a batch at a time (progress per batch)."""

    def __init__(self, images: torch.Tensor, bar: Bar | None = None) -> None:
        self.images = to_uint8_rgb(images.cpu())
        self.bar = bar

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        if self.bar is not None:
            self.bar.advance(len(indices))
        return list(self.images[indices].unbind(0))


class _Sampler(torch.nn.Module):
    """What torch-fidelity calls: one batch of the model's own samples per noise batch.

    torch-fidelity's noise only sets the batch size; the model draws its latents
    itself (the AE from its fitted mixture), from the RNG :func:`fid` seeds.
    """

    def __init__(self, model: Model, bar: Bar | None) -> None:
        super().__init__()
        self.model = model
        self.bar = bar

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        images = to_uint8_rgb(self.model.sample(noise.shape[0]))
        if self.bar is not None:
            self.bar.advance(noise.shape[0])
        return images


def split_digest(split: Split) -> str:
    """First 12 hex digits of the sha256 of a split's pixels as uint8."""
    h = hashlib.sha256()
    for x in split.batches(10_000):
        h.update(to_uint8_rgb(x[:, :1].cpu())[:, 0].numpy().tobytes())
    return h.hexdigest()[:12]


def reference_cache_name(dataset: str, split: Split) -> str:
    """Stable cache name of a reference split: dataset, image count and pixel digest."""
    return f"genzoo-{dataset}-test-{len(split)}-{split_digest(split)}"


# -- the metric --------------------------------------------------------------------------

@dataclass
class _Setup:
    """Everything one FID computation against one reference needs, resolved once."""

    extractor: Extractor
    weights: Path
    root: Path
    cache_name: str
    reference: Split
    dataset: str

    @property
    def cached(self) -> bool:
        """Whether the reference statistics are on disk (torch-fidelity's file naming)."""
        name = f"{self.cache_name}-{self.extractor.name}-stat-fid-{self.extractor.layer}.pt"
        return (self.root / name).is_file()

    def kwargs(self, cuda: bool, seed: int, bar: Bar | None) -> dict[str, Any]:
        """``calculate_metrics`` arguments with the reference as input2, cached under its name."""
        return dict(
            input2=ImageSet(torch.cat(list(self.reference.batches(10_000))), bar),
            input2_cache_name=self.cache_name,
            fid=True,
            feature_extractor=self.extractor.name,
            feature_layer_fid=self.extractor.layer,
            feature_extractor_weights_path=str(self.weights),
            cuda=cuda,
            batch_size=self.extractor.batch_size,
            cache=True,
            cache_root=str(self.root),
            save_cpu_ram=True,  # no DataLoader worker processes for in-memory images
            rng_seed=seed,
            verbose=False,
        )

    def describe(self) -> dict[str, str]:
        return {
            "extractor": f"{self.extractor.describe}, weights sha256 {file_digest(self.weights)}",
            "reference": f"{self.dataset} test split, {len(self.reference)} images ({self.cache_name})",
        }


def _setup(reference: Split, features: str, dataset: str, cache: Path | None,
           inception_path: str | Path | None, download: bool) -> _Setup:
    if features not in EXTRACTORS:
        raise GenzooError(f"unknown features {features!r}; use {' or '.join(FEATURES)}")
    if len(reference) < 2:
        raise GenzooError("FID needs at least 2 reference images")
    weights = _weights(features, inception_path, download)
    mnist_classifier.register()
    root = (cache or cache_dir() / "fid") / f"{features}-{file_digest(weights)}"
    root.mkdir(parents=True, exist_ok=True)
    return _Setup(EXTRACTORS[features], weights, root, reference_cache_name(dataset, reference), reference, dataset)


def reference_cached(reference: Split, features: str = "mnist", *, dataset: str = "mnist",
                     cache: Path | None = None, inception_path: str | Path | None = None,
                     download: bool = True) -> bool:
    """Whether the reference's FID statistics for ``features`` are already cached."""
    return _setup(reference, features, dataset, cache, inception_path, download).cached


def reference_statistics(reference: Split, features: str = "mnist", *, dataset: str = "mnist",
                         cache: Path | None = None, inception_path: str | Path | None = None,
                         download: bool = True, device: torch.device | str = "cpu",
                         bar: Bar | None = None) -> bool:
    """Compute and cache the reference's FID statistics now, so no model's FID time includes them.

    Returns whether they were already cached (then nothing is extracted).
    """
    setup = _setup(reference, features, dataset, cache, inception_path, download)
    if setup.cached:
        return True
    if bar is not None:
        bar.set_total(len(reference))
    kwargs = setup.kwargs(torch.device(device).type == "cuda", 0, bar)
    extractor = create_feature_extractor(setup.extractor.name, [setup.extractor.layer], **kwargs)
    fid_input_id_to_statistics_cached(2, extractor, setup.extractor.layer, **kwargs)
    return False


def fid(
    source: Model | torch.Tensor,
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

    Progress goes to ``bar`` as images reach the extractor (the reference only on a
    cache miss). The returned dict names the extractor, sample count and reference,
    so the number is never reported without them.
    """
    setup = _setup(reference, features, dataset, cache, inception_path, download)
    cached = setup.cached
    n = source.shape[0] if isinstance(source, torch.Tensor) else samples
    if n < 2:
        raise GenzooError("FID needs at least 2 samples")
    if bar is not None:
        bar.set_total(n + (0 if cached else len(reference)))
    if isinstance(source, torch.Tensor):
        input1: Any = ImageSet(source, bar)
        device = source.device
    else:
        if not source.can_sample:
            raise GenzooError(f"{type(source).__name__} cannot sample, so it has no FID")
        source.eval()
        device = source.device
        input1 = torch_fidelity.GenerativeModelModuleWrapper(_Sampler(source, bar), 1, "normal", 0)
    with seeded(device, seed):
        metrics = torch_fidelity.calculate_metrics(
            input1=input1, input1_model_num_samples=n, **setup.kwargs(device.type == "cuda", seed, bar))
    return {
        "features": features,
        **setup.describe(),
        "samples": n,
        "reference_cached": cached,
        "seed": seed,
        "fid": float(metrics[torch_fidelity.KEY_METRIC_FID]),
    }
