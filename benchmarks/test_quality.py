"""Quality after a fixed small training budget, through genzoo's evaluation module.

Each registered model is trained once per session by genzoo's trainer (seed 0, batch
100, the budget in ``Settings``: by default 5 epochs of the 60,000 training images, the
article's budget; in quick mode 1 epoch of 3,000), then evaluated on the MNIST test
split (quick mode: its first 2,000 images). The benchmark times the evaluation; the metric
itself goes into ``extra_info``. FID with Inception features is opt-in (``--inception``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from rich.console import Console

from benchmarks import common
from genzoo.building import build_sampler
from genzoo.evaluation import fid, negative_elbo, reconstruction_metrics
from genzoo.evaluation.frechet import reference_statistics
from genzoo.model import Model
from genzoo.train_config import TrainConfig
from genzoo.trainer import Trainer

SEED = 0


class Trained:
    """Models trained on first use and kept for the module: training is not what is timed."""

    def __init__(self, settings: Any, mnist: dict[str, Any], workdir: Path) -> None:
        self.settings = settings
        self.train = mnist["train"]
        if settings.quality_train_images:
            self.train = self.train.take(settings.quality_train_images)
        self.test = mnist["test"]
        if settings.quality_test_images:
            self.test = self.test.take(settings.quality_test_images)
        self.workdir = workdir
        self.models: dict[str, tuple[Model, dict[str, Any]]] = {}

    def budget(self) -> str:
        epochs = self.settings.quality_epochs
        return (f"{epochs} epoch{'s' if epochs > 1 else ''} × {len(self.train):,} images, batch 100; "
                f"tested on {len(self.test):,}")

    def get(self, name: str) -> tuple[Model, dict[str, Any]]:
        if name not in self.models:
            s = self.settings
            model = common.build_model(name, s.device, seed=SEED)
            config = TrainConfig(model=name, epochs=s.quality_epochs, batch_size=common.BATCH,
                                 seed=SEED, device=str(s.device))
            run_dir = self.workdir / name
            run_dir.mkdir()
            started = time.perf_counter()
            records = Trainer(model, self.train, self.test, config, run_dir, Console(quiet=True)).fit()
            info = {"budget": self.budget(), "train_wall_seconds": time.perf_counter() - started,
                    "trainer_last_epoch": records[-1]}
            self.models[name] = (model.eval(), info)
        return self.models[name]


@pytest.fixture(scope="module")
def trained(settings: Any, mnist: dict[str, Any]) -> Iterator[Trained]:
    with tempfile.TemporaryDirectory(prefix="genzoo-bench-quality-") as workdir:
        yield Trained(settings, mnist, Path(workdir))


def _store(record: Any, metric: str, model_name: str, info: dict[str, Any], values: dict[str, Any]) -> None:
    record("quality", metric=metric, model=model_name, budget=info["budget"],
           train_wall_seconds=info["train_wall_seconds"], **values)


@pytest.mark.parametrize("model_name", common.models_with("can_reconstruct"))
def test_reconstruction(benchmark: Any, record: Any, trained: Trained, model_name: str) -> None:
    model, info = trained.get(model_name)
    test = trained.test
    benchmark.group = "quality: reconstruction (test split)"
    result = benchmark.pedantic(reconstruction_metrics, args=(model, test), rounds=1, warmup_rounds=1)
    _store(record, "reconstruction", model_name, info, dict(result))


@pytest.mark.parametrize("model_name", common.models_with("has_elbo"))
def test_negative_elbo(benchmark: Any, record: Any, trained: Trained, model_name: str) -> None:
    model, info = trained.get(model_name)
    test = trained.test
    benchmark.group = "quality: negative ELBO (test split)"
    result = benchmark.pedantic(negative_elbo, args=(model, test), kwargs={"seed": SEED},
                                rounds=1, warmup_rounds=1)
    _store(record, "nelbo", model_name, info, dict(result))


def _fid(benchmark: Any, record: Any, trained: Trained, model_name: str, features: str,
         samples: int, reference_images: int) -> None:
    model, info = trained.get(model_name)
    test = trained.test
    reference = test if reference_images >= len(test) else test.take(reference_images)
    # warm-up: the reference statistics are computed and cached first, so the timed
    # round costs what every later FID costs (drawing and extracting the samples)
    reference_statistics(reference, features, device=trained.settings.device)
    benchmark.group = f"quality: FID, {features} features"
    sampler = build_sampler(model, model_name, None, lambda: trained.train)  # its default, as genzoo eval draws
    result = benchmark.pedantic(fid, args=(sampler, reference, features, samples),
                                kwargs={"seed": SEED}, rounds=1)
    _store(record, f"fid-{features}", model_name, info, dict(result))


@pytest.mark.parametrize("model_name", common.models_that_sample())
def test_fid_mnist(benchmark: Any, record: Any, settings: Any, trained: Trained, model_name: str) -> None:
    _fid(benchmark, record, trained, model_name, "mnist", settings.fid_samples, len(trained.test))


@pytest.mark.inception
@pytest.mark.parametrize("model_name", common.models_that_sample())
def test_fid_inception(benchmark: Any, record: Any, settings: Any, trained: Trained, model_name: str) -> None:
    n = settings.inception_samples
    _fid(benchmark, record, trained, model_name, "inception", n, n)

