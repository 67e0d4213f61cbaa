"""What a model costs: parameters, training and sampling throughput.

Training throughput is read from the run's ``metrics.jsonl`` (the trainer times the
optimisation steps of each epoch, not its evaluation); sampling throughput is
measured here, after one untimed warm-up batch, so it never includes start-up costs.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import torch

from genzoo.evaluation.phases import Bar, synchronize
from genzoo.sampler import Sampler, model_checked_once
from genzoo.seeding import seeded


def training_throughput(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Images/s over all epochs of a run (total images / total step time), or None without records.

    Each timing in ``metrics.jsonl`` is a finite number, but their sums and products
    can still overflow (``train_seconds`` 1.5e308 twice): a total that is not finite is
    no measurement and is None, like a rate it would make, rather than an OverflowError
    after the whole evaluation. The file is not refused for it: every other number the
    evaluation measures stands, and no bound on a timing would be more than a guess.
    """
    # A line without a positive time and rate (null, or negative by hand) is no timing of its epoch.
    timed = [r for r in records if (r.get("train_images_per_s") or 0) > 0 and (r.get("train_seconds") or 0) > 0]
    if not timed:
        return None
    seconds = _finite(sum(r["train_seconds"] for r in timed))
    images = _finite(sum(r["train_images_per_s"] * r["train_seconds"] for r in timed))
    return {
        "epochs": max(r["epoch"] for r in records),
        "images_per_s": None if images is None or seconds is None else _finite(images / seconds),
        "train_seconds": seconds,
        "eval_seconds": _finite(sum(r.get("eval_seconds") or 0.0 for r in records)),
        "images": None if images is None else round(images),
    }


def _finite(value: float) -> float | None:
    """``value``, or None when it overflowed to infinity (or NaN) on the way."""
    return value if math.isfinite(value) else None


@torch.no_grad()
def sampling_throughput(sampler: Sampler, images: int = 10_000, batch_size: int = 1000, seed: int = 0,
                        bar: Bar | None = None) -> dict[str, Any] | None:
    """Time ``sampler.sample`` for ``images`` images in batches; None for no images."""
    if images < 1:
        return None
    sampler.model.eval()
    with seeded(sampler.device, seed):
        sampler.sample(min(batch_size, images))  # warm-up, untimed
        synchronize()
        with model_checked_once(sampler, f"drawing {images} samples to time them"):  # not timed at each batch
            started = time.perf_counter()
            for start in range(0, images, batch_size):
                n = min(batch_size, images - start)
                sampler.sample(n)
                if bar is not None:
                    bar.advance(n)
            synchronize()
            seconds = time.perf_counter() - started
    return {"images": images, "batch_size": batch_size, "seconds": seconds,
            "images_per_s": images / seconds if seconds > 0 else None}
