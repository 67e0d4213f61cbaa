"""The Model interface every generative model plugin implements.

A model is an ``nn.Module`` built from a small config dataclass. It declares what it
can do (reconstruct, sample, encode, ELBO) and owns its optimisers and its training
step, so that one trainer fits an autoencoder and a two-optimiser GAN alike.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from genzoo.errors import GenzooError
from genzoo.runfiles import shown

if TYPE_CHECKING:
    from genzoo.data import Split


def require_positive_int(name: str, value: object) -> None:
    """Refuse anything but an ``int`` of at least 1 (``True`` included), in one line."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise GenzooError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class ModelConfig:
    """Hyper-parameters shared by every model; plugins subclass it to add their own."""

    latent: int = 40
    lr: float = 1e-3

    #: The field that ``--loss NAME`` sets (``None``: this model has no loss to choose).
    loss_option: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        require_positive_int("latent", self.latent)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise GenzooError(f"lr must be a positive finite number, got {self.lr!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON has them (tuples become lists), so config.json and checkpoints agree."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Build a config, refusing keys this model does not know.

        The key ``loss`` stands for the model's own loss field (``loss_option``), so
        the command line offers one ``--loss`` for every model.
        """
        if "loss" in values:
            if cls.loss_option is None:
                raise GenzooError(f"{cls.__name__} has no loss to choose; leave out --loss")
            values = dict(values)
            loss = values.pop("loss")
            if values.get(cls.loss_option, loss) != loss:
                raise GenzooError(f"--loss {loss!r} contradicts {cls.loss_option} {values[cls.loss_option]!r}")
            values[cls.loss_option] = loss
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GenzooError(
                f"unknown option(s) for {cls.__name__}: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        hints = typing.get_type_hints(cls)
        values = {k: tuple(v) if isinstance(v, list) and typing.get_origin(hints[k]) is tuple else v
                  for k, v in values.items()}  # JSON brought tuples back as lists
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:  # a check such as ``0 <= beta1 < 1`` met a string
            raise GenzooError(f"invalid options for {cls.__name__} ({shown(values)}): {exc}") from exc


Batch = torch.Tensor
Stats = dict[str, torch.Tensor]


class Model(nn.Module):
    """Base class of genzoo models.

    Subclasses set ``Config`` and the capability flags and implement
    :meth:`configure_optimizers`, :meth:`training_step` and :meth:`evaluate`, plus
    whichever of :meth:`sample`, :meth:`encode` and :meth:`reconstruct` they can do.
    Images are float tensors in [0, 1] of shape ``(batch, *sample_shape)``.
    """

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    can_reconstruct: ClassVar[bool] = False
    can_sample: ClassVar[bool] = False
    can_encode: ClassVar[bool] = False
    has_elbo: ClassVar[bool] = False
    #: Which of the per-epoch metrics the progress bar and the loss curve show.
    loss_names: ClassVar[tuple[str, ...]] = ("loss",)
    #: The fewest images every training batch must hold, the last, partial one included
    #: (2 for a model that batch-normalises the images it is given: batch norm cannot
    #: train on one). :meth:`check_training_split` enforces it.
    min_batch_size: ClassVar[int] = 1

    def __init__(self, config: ModelConfig, sample_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.config = config
        self.sample_shape = tuple(sample_shape)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @classmethod
    def capabilities(cls) -> dict[str, bool]:
        return {
            "reconstruct": cls.can_reconstruct,
            "sample": cls.can_sample,
            "encode": cls.can_encode,
            "elbo": cls.has_elbo,
        }

    @classmethod
    def check_training_split(cls, config: ModelConfig, images: int, batch_size: int) -> None:
        """Raise :class:`GenzooError` if training on ``images`` images in ``batch_size`` batches cannot finish.

        Called before a run folder is made and again before a resume trains, so a run
        that would fail in its last batch or in :meth:`after_training` is refused up
        front rather than failing after its epochs, and on every resume. The default
        checks :attr:`min_batch_size` against the smallest batch; a model with other
        needs (the AE's mixture has at most one component per image) extends it.
        """
        smallest = images % batch_size or min(images, batch_size)
        if smallest < cls.min_batch_size:
            raise GenzooError(
                f"{cls.__name__} trains on batches of at least {cls.min_batch_size} images, but "
                f"{images} training images in batches of {batch_size} leave a last batch of {smallest}; "
                "choose another --batch-size or --train-limit"
            )

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Return the optimisers by name; the trainer checkpoints each of them."""
        return {"adam": torch.optim.Adam(self.parameters(), lr=self.config.lr)}

    def training_step(self, x: Batch, optimizers: dict[str, torch.optim.Optimizer]) -> Stats:
        """Take one optimisation step on ``x``; return per-image losses (detached)."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, x: Batch) -> Stats:
        """Return metrics on ``x`` *summed* over the batch; the trainer averages them."""
        raise NotImplementedError

    def after_training(self, train: Split) -> None:
        """Called once when training ends (the AE fits its sampling prior here)."""

    def sample(self, n: int) -> torch.Tensor:
        raise GenzooError(f"{type(self).__name__} cannot sample")

    def encode(self, x: Batch) -> torch.Tensor:
        raise GenzooError(f"{type(self).__name__} cannot encode")

    def reconstruct(self, x: Batch) -> torch.Tensor:
        """Decode the encoder's mean: Bernoulli means in [0, 1]."""
        raise GenzooError(f"{type(self).__name__} cannot reconstruct")

    def negative_elbo(self, x: Batch) -> Stats:
        """Per-image negative ELBO and its parts, for models with ``has_elbo``."""
        raise GenzooError(f"{type(self).__name__} has no ELBO")
