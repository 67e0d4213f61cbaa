"""Sampling throughput: 1,000 samples from every registered model's default sampler.

Speed does not depend on training, so models are freshly initialised; a sampler that
fits to the training codes (the AE's ``gmm``) is fitted first, untimed, on a training subset.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import common
from benchmarks.timing import rounds_for
from genzoo.building import build_sampler

PRIOR_FIT_IMAGES = 10_000


@pytest.mark.parametrize("model_name", common.models_that_sample())
def test_sample(benchmark: Any, record: Any, settings: Any, mnist: dict[str, Any], model_name: str) -> None:
    device = settings.device
    n = settings.sample_batch
    model = common.build_model(model_name, device)
    model.after_training(mnist["train"].take(PRIOR_FIT_IMAGES))
    model.eval()
    sampler = build_sampler(model, model_name, None, lambda: mnist["train"].take(PRIOR_FIT_IMAGES))

    def sample() -> None:
        sampler.sample(n)
        common.sync(device)

    rounds = rounds_for(sample, settings.step_budget_s)
    benchmark.group = f"sample: batch {n}"
    benchmark.pedantic(sample, rounds=rounds, warmup_rounds=2)
    record("sample", images=n, model=model_name, batch_size=n)
