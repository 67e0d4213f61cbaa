"""The article's loop, genzoo's trainer and the compute floor, side by side, in one run.

All five variants train the same VAE (latent 40, Adam 1e-3) for the same number of
steps of batch 100 from the same fresh weights each round: by default 600 steps, one
pass over MNIST's 60,000 training images. The article's loop is the REFERENCE written
in ``benchmarks/common.py``; it is not part of genzoo. Ratios between the variants are
added to each row's ``extra_info`` when the JSON is written (``report.add_ratios``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
from rich.console import Console

from benchmarks import common
from genzoo.train_config import TrainConfig
from genzoo.trainer import Trainer

VARIANTS = ("reference_article_workers0", "reference_article_workers4",
            "genzoo_trainer", "genzoo_steps", "floor")
#: Recorded beside the trainer's wall time: its own count of training seconds.
_trainer_seconds: list[float] = []


@pytest.fixture(scope="module")
def epoch_data(settings: Any, mnist: dict[str, Any]) -> dict[str, Any]:
    """The training images each variant sees (the first ``steps * 100``), built once."""
    images = settings.epoch_steps * common.BATCH
    train = mnist["train"] if images >= len(mnist["train"]) else mnist["train"].take(images)
    return {
        "train": train,
        "test": mnist["test"].take(common.BATCH),
        "article": common.article_dataset(limit=images),
    }


def _setups(variant: str, settings: Any, data: dict[str, Any], workdir: Path) -> Callable[[], Any]:
    """A ``setup`` for ``benchmark.pedantic``: fresh weights and untimed preparation per round."""
    device = settings.device
    counter = iter(range(1_000_000))

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        seed = next(counter)
        model = common.build_model("vae", device, seed=0, **common.VAE_OPTIONS)
        if variant.startswith("reference_article"):
            workers = int(variant.removeprefix("reference_article_workers"))
            return (model, common.adam(model), data["article"], workers, seed), {}
        if variant == "floor":
            return (model, common.adam(model), common.shuffled(data["train"].images, seed)), {}
        if variant == "genzoo_steps":
            return (model, model.configure_optimizers(), data["train"], seed), {}
        config = TrainConfig(model="vae", epochs=1, batch_size=common.BATCH, seed=seed, device=str(device))
        run_dir = workdir / f"round-{seed}"
        run_dir.mkdir()
        return (Trainer(model, data["train"], data["test"], config, run_dir, Console(quiet=True)),), {}

    return setup


def _run_trainer(trainer: Trainer) -> None:
    records = trainer.fit()
    _trainer_seconds.append(records[-1]["train_seconds"])


TARGETS: dict[str, Callable[..., Any]] = {
    "reference_article_workers0": common.reference_article_epoch,
    "reference_article_workers4": common.reference_article_epoch,
    "genzoo_trainer": _run_trainer,
    "genzoo_steps": common.genzoo_steps_epoch,
    "floor": common.floor_epoch,
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_epoch(benchmark: Any, record: Any, settings: Any, epoch_data: dict[str, Any], variant: str) -> None:
    steps = settings.epoch_steps
    _trainer_seconds.clear()
    with tempfile.TemporaryDirectory(prefix="genzoo-bench-") as workdir:
        benchmark.group = f"epoch: vae latent 40, {steps} steps of batch {common.BATCH}"
        benchmark.pedantic(TARGETS[variant], setup=_setups(variant, settings, epoch_data, Path(workdir)),
                           rounds=settings.epoch_rounds, warmup_rounds=1)
    extra: dict[str, Any] = {}
    if variant == "genzoo_trainer" and _trainer_seconds:
        # the trainer's own timer (steps only), one per round incl. warm-up; the last rounds were timed
        extra["trainer_train_seconds"] = _trainer_seconds[-settings.epoch_rounds:]
    record("epoch", images=steps * common.BATCH, variant=variant, model="vae", steps=steps,
           batch_size=common.BATCH, latent=common.VAE_OPTIONS["latent"], **extra)
