"""The training settings of a run: what the trainer needs besides the model, saved in ``config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from genzoo.checks import require_count, shown
from genzoo.errors import GenzooError
from genzoo.seeding import check_seed


@dataclass
class TrainConfig:
    """What the trainer needs besides the model; saved in ``config.json``."""

    model: str
    dataset: str = "mnist"
    epochs: int = 5
    batch_size: int = 100
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    checkpoint_every: int | None = None
    eval_batch_size: int = 1000
    #: Optimisers step with torch's fused kernels where they offer them (Adam, AdamW, SGD, Adagrad).
    fused: bool = True
    #: The objective's forward and backward pass compiled with ``torch.compile``.
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            require_count(name, getattr(self, name))
        for name in ("train_limit", "test_limit", "checkpoint_every"):
            if getattr(self, name) is not None:
                require_count(name, getattr(self, name))
        check_seed(self.seed)
        for name in ("fused", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise GenzooError(f"{name} must be true or false, got {shown(getattr(self, name))}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
