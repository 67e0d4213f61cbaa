"""Sampling throughput: ``model.sample(1000)`` for every registered model that samples.

Speed does not depend on training, so models are freshly initialised; the Model
interface's ``after_training`` hook runs first on a training subset, because a model
may need it to sample at all (the AE fits its Gaussian-mixture prior there).
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import common
from benchmarks.timing import rounds_for

PRIOR_FIT_IMAGES = 10_000


@pytest.mark.parametrize("model_name", common.models_with("can_sample"))
def test_sample(benchmark: Any, record: Any, settings: Any, mnist: dict[str, Any], model_name: str) -> None:
    device = settings.device
    n = settings.sample_batch
    model = common.build_model(model_name, device)
    model.after_training(mnist["train"].take(PRIOR_FIT_IMAGES))
    model.eval()

    def sample() -> None:
        model.sample(n)
        common.sync(device)

    rounds = rounds_for(sample, settings.step_budget_s)
    benchmark.group = f"sample: batch {n}"
    benchmark.pedantic(sample, rounds=rounds, warmup_rounds=2)
    record("sample", images=n, model=model_name, batch_size=n)
