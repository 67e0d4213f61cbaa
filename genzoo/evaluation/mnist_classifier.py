"""A small MNIST classifier whose penultimate layer is genzoo's ``mnist`` FID feature space.

Inception-v3 features are the standard for FID but cost about 0.1 s per image on a
2-core CPU; this network reads a 28x28 digit in well under a millisecond, so tests and
CPU benchmarks can afford FID on 10,000 samples. Its weights ship with the package
(``mnist_classifier.pt``, about 1 MB) and ``genzoo/evaluation/train_classifier.py``
reproduces them from the MNIST training split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from genzoo.checks import all_finite, data_problem, printable
from genzoo.errors import GenzooError
from genzoo.evaluation.weights import load_weights

WEIGHTS = Path(__file__).with_name("mnist_classifier.pt")
#: The name torch-fidelity knows the extractor by (``feature_extractor=...``).
EXTRACTOR_NAME = "genzoo-mnist-classifier"
FEATURE_LAYER = "128"
FEATURE_SIZE = 128


class MNISTClassifier(nn.Module):
    """Three 3x3 conv blocks (32, 64, 128 channels) and a 128-unit layer before the 10 logits."""

    def __init__(self) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

        self.convs = nn.Sequential(*block(1, 32), *block(32, 64), *block(64, 128), nn.Flatten())
        self.features = nn.Sequential(nn.Linear(128 * 3 * 3, FEATURE_SIZE), nn.ReLU())
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_SIZE, 10)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations of images ``(N, 1, 28, 28)`` in [0, 1]."""
        features: torch.Tensor = self.features(self.convs(x))
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.dropout(self.embed(x)))
        return logits


def load_classifier(path: str | Path | None = None) -> tuple[MNISTClassifier, dict[str, Any]]:
    """The trained classifier (eval mode) and the metadata saved beside its weights."""
    path = Path(path or WEIGHTS)
    if not path.is_file():
        raise GenzooError(f"MNIST feature weights not found at {path}; "
                          "recreate them with: python -m genzoo.evaluation.train_classifier")
    saved, _ = load_weights(path)
    net = MNISTClassifier()
    weights = saved.get("state_dict")
    if isinstance(weights, dict):
        for key, value in weights.items():
            # Read as a checkpoint's tensors are: a meta or sparse tensor was refused without naming it, and a NaN
            # weight was loaded (every feature of every image NaN).
            problem = data_problem(value) if isinstance(value, torch.Tensor) else None
            if problem is None and isinstance(value, torch.Tensor) and not all_finite(value):
                problem = "not finite everywhere (NaN or infinite values)"
            if problem is not None:
                raise GenzooError(f"{path} does not hold genzoo's MNIST classifier weights: "
                                  f"{printable(str(key))} is {problem}")
    try:
        net.load_state_dict(weights)  # type: ignore[arg-type]
    except (KeyError, TypeError, RuntimeError) as exc:
        raise GenzooError(f"{path} does not hold genzoo's MNIST classifier weights") from exc
    return net.eval(), {k: v for k, v in saved.items() if k != "state_dict"}


class MNISTFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity adapter: uint8 images ``(N, 1 or 3, 28, 28)`` -> 128-d features.

    It takes the same uint8 RGB batches as ``inception-v3-compat``, so one generator
    wrapper and one reference dataset serve both extractors; colour channels are
    averaged back to grey.
    """

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name, features_list)
        self.net, _ = load_classifier(feature_extractor_weights_path)
        self.requires_grad_(False)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return (FEATURE_LAYER, "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return FEATURE_LAYER if metric in ("fid", "kid", "prc") else "logits"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 28, 28, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-2:] != (28, 28):
            raise GenzooError(f"the mnist feature extractor takes uint8 (N, C, 28, 28) images, got "
                              f"{tuple(x.shape)} {x.dtype}")
        grey = x.float().mean(dim=1, keepdim=True) / 255
        h = self.net.embed(grey)
        out = {FEATURE_LAYER: h, "logits": self.net.head(h)}
        return tuple(out[name] for name in self.features_list)


def register() -> None:
    """Make ``EXTRACTOR_NAME`` known to torch-fidelity (idempotent)."""
    if EXTRACTOR_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(EXTRACTOR_NAME, MNISTFeatureExtractor)
