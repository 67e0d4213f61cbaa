"""What a model costs: parameters, training and sampling throughput.

Training throughput is read from the run's ``metrics.jsonl`` (the trainer times the
optimisation steps of each epoch, not its evaluation); sampling throughput is
measured here, after one untimed warm-up batch, so it never includes start-up costs.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from genzoo.evaluation.phases import Bar, synchronize
from genzoo.model import Model
from genzoo.seeding import seeded


def training_throughput(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Images/s over all epochs of a run (total images / total step time), or None without records."""
    timed = [r for r in records if r.get("train_images_per_s") and r.get("train_seconds")]
    if not timed:
        return None
    seconds = sum(r["train_seconds"] for r in timed)
    images = sum(r["train_images_per_s"] * r["train_seconds"] for r in timed)
    return {
        "epochs": max(r["epoch"] for r in records),
        "images_per_s": images / seconds,
        "train_seconds": seconds,
        "eval_seconds": sum(r.get("eval_seconds") or 0.0 for r in records),
        "images": round(images),
    }


@torch.no_grad()
def sampling_throughput(model: Model, images: int = 10_000, batch_size: int = 1000, seed: int = 0,
                        bar: Bar | None = None) -> dict[str, Any] | None:
    """Time ``model.sample`` for ``images`` images in batches; None if the model cannot sample."""
    if not model.can_sample or images < 1:
        return None
    model.eval()
    with seeded(model.device, seed):
        model.sample(min(batch_size, images))  # warm-up, untimed
        synchronize()
        started = time.perf_counter()
        for start in range(0, images, batch_size):
            n = min(batch_size, images - start)
            model.sample(n)
            if bar is not None:
                bar.advance(n)
        synchronize()
        seconds = time.perf_counter() - started
    return {"images": images, "batch_size": batch_size, "seconds": seconds,
            "images_per_s": images / seconds if seconds > 0 else None}
