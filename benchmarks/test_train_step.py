"""Training throughput and its scaling: one optimisation step per registered model and batch size.

Each model trains on real MNIST batches already on the device (a fixed cycle of
shuffled batches), so only the step itself is timed: forward, loss, backward and the
optimiser step(s) (the GAN's two). Images/s comes from the median round.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from benchmarks import common
from benchmarks.timing import rounds_for
from genzoo.data import TensorSplit
from genzoo.trainer import training_step

#: Distinct batches each benchmark cycles through, so the step sees varied data.
DISTINCT_BATCHES = 8


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    settings = metafunc.config._genzoo_bench  # type: ignore[attr-defined]
    if "model_name" in metafunc.fixturenames:
        metafunc.parametrize("model_name", common.bench_models())
    if "batch_size" in metafunc.fixturenames:
        metafunc.parametrize("batch_size", settings.batch_sizes)


def fixed_batches(train: TensorSplit, batch_size: int, count: int, seed: int = 0) -> list[torch.Tensor]:
    """``count`` shuffled batches gathered before timing (contiguous, on the device)."""
    generator = torch.Generator().manual_seed(seed)
    batches = itertools.islice(train.batches(batch_size, shuffle=True, generator=generator), count)
    return [x.contiguous() for x in batches]


def test_train_step(benchmark: Any, record: Any, settings: Any, mnist: dict[str, Any],
                    model_name: str, batch_size: int) -> None:
    device = settings.device
    model = common.build_model(model_name, device)
    optimizers = model.configure_optimizers()
    model.train()
    cycle = itertools.cycle(fixed_batches(mnist["train"], batch_size, DISTINCT_BATCHES))

    def step() -> None:
        training_step(model, next(cycle), optimizers)
        common.sync(device)

    rounds = rounds_for(step, settings.step_budget_s)
    benchmark.group = f"train step: {model_name}"
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=2)
    record("train_step", images=batch_size, model=model_name, batch_size=batch_size)
