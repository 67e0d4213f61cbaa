"""The training settings of a run: what the trainer needs besides the model, saved in ``config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from genzoo.checks import require_count, shown
from genzoo.errors import GenzooError
from genzoo.seeding import check_seed

#: The most samples of an FID measured after every epoch: more would cost more than the epoch.
MAX_CURVE_SAMPLES = 10_000

#: Training settings added after runs were first saved, as a run saved without them trained; it resumes so.
#: Read into both a run's ``config.json`` and its checkpoint's copy, so an older run matches its own checkpoint.
ADDED_LATER: dict[str, Any] = {"fused": False, "compile": False, "fid_curve": 0}


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
    #: Samples of the FID measured after every epoch (``fid_curve.jsonl``; 0: none): where a ranking settles.
    fid_curve: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            require_count(name, getattr(self, name))
        for name in ("train_limit", "test_limit", "checkpoint_every"):
            if getattr(self, name) is not None:
                require_count(name, getattr(self, name))
        check_seed(self.seed)
        require_count("fid_curve", self.fid_curve, minimum=0)
        if self.fid_curve == 1 or self.fid_curve > MAX_CURVE_SAMPLES:
            raise GenzooError(f"fid_curve (--fid-curve) must be 0 (none) or 2 to {MAX_CURVE_SAMPLES:,} samples, "
                              f"got {self.fid_curve!r}")
        for name in ("fused", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise GenzooError(f"{name} must be true or false, got {shown(getattr(self, name))}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
