"""The training settings of a run: what the trainer needs besides the model, saved in ``config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from genzoo.checks import require_count, shown
from genzoo.errors import GenzooError
from genzoo.files import MAX_JSON_BYTES
from genzoo.precision import PRECISIONS
from genzoo.seeding import check_seed

#: The most samples of an FID measured after every epoch: more would cost more than the epoch.
MAX_CURVE_SAMPLES = 10_000

#: The most epochs of a run: each appends a line of over 64 bytes (its timings alone) to ``metrics.jsonl``, which
#: genzoo reads only up to ``MAX_JSON_BYTES`` (64 MiB), so a run of more could never be read back. A count read
#: from a file (a forged export's 10**15) is refused in one line before any work, never listed or looped over.
#: The bound for a model's own, longer lines is ``genzoo.trainer.check_metrics_fit``'s, before its run trains.
MAX_EPOCHS = MAX_JSON_BYTES // 64

#: Training settings added after runs were first saved, as a run saved without them trained; it resumes so.
#: Read into both a run's ``config.json`` and its checkpoint's copy, so an older run matches its own checkpoint.
ADDED_LATER: dict[str, Any] = {"fused": False, "compile": False, "fid_curve": 0, "fp32_precision": "ieee"}


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
    #: How training computes fp32 matrix products and convolutions (``genzoo.precision``): ``auto`` is bf16 products
    #: on a CPU with bf16 units, torch's defaults on a GPU; evaluation always multiplies exactly.
    fp32_precision: str = "auto"
    #: Samples of the FID measured after every epoch (``fid_curve.jsonl``; 0: none): where a ranking settles.
    fid_curve: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            require_count(name, getattr(self, name))
        for name in ("train_limit", "test_limit", "checkpoint_every"):
            if getattr(self, name) is not None:
                require_count(name, getattr(self, name))
        if self.epochs > MAX_EPOCHS:
            raise GenzooError(f"epochs must be at most {MAX_EPOCHS:,} (each epoch's line in metrics.jsonl is over 64 "
                              f"bytes, and genzoo reads that file only up to {MAX_JSON_BYTES // 2**20} MiB), "
                              f"got {shown(self.epochs)}")
        check_seed(self.seed)
        require_count("fid_curve", self.fid_curve, minimum=0)
        if self.fid_curve == 1 or self.fid_curve > MAX_CURVE_SAMPLES:
            raise GenzooError(f"fid_curve (--fid-curve) must be 0 (none) or 2 to {MAX_CURVE_SAMPLES:,} samples, "
                              f"got {self.fid_curve!r}")
        if self.fp32_precision not in PRECISIONS:
            raise GenzooError(f"fp32_precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {shown(self.fp32_precision)}")
        for name in ("fused", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise GenzooError(f"{name} must be true or false, got {shown(getattr(self, name))}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
