"""One set of value checks (genzoo.checks): JSON's true is never a count, wherever a count is read.

Before, three validators disagreed: ``TrainConfig(epochs=True)`` and ``EvalConfig(iwae_k=True)``
were accepted (``True`` is an ``int`` in Python), while run files and plugins' configs refused it.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genzoo import GenzooError, require_positive_int
from genzoo.checks import is_count, is_number, require_count
from genzoo.errors import first_line
from genzoo.evaluation.run_evaluation import EvalConfig
from genzoo.seeding import check_seed
from genzoo.train_config import TrainConfig


@pytest.mark.parametrize("build", [
    lambda v: TrainConfig(model="vae", epochs=v),
    lambda v: TrainConfig(model="vae", batch_size=v),
    lambda v: TrainConfig(model="vae", train_limit=v),
    lambda v: EvalConfig(iwae_k=v),
    lambda v: EvalConfig(fid_samples=v),
    lambda v: EvalConfig(batch_size=v),
    lambda v: require_positive_int("hidden", v),
    check_seed,
], ids=["epochs", "batch_size", "train_limit", "iwae_k", "fid_samples", "eval batch_size", "plugin field", "seed"])
def test_true_is_refused_as_a_count_everywhere(build):
    with pytest.raises(GenzooError, match="got True"):
        build(True)


def fits_a_finite_float(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.booleans(), st.integers(), st.integers(min_value=2**1023), st.floats(allow_nan=True),
                 st.text(max_size=3), st.none()))
def test_the_checks_agree_with_their_definition(value):
    assert is_count(value, 0) == (type(value) is int and value >= 0)
    assert is_number(value) == (type(value) in (int, float) and fits_a_finite_float(value))
    if is_count(value):
        require_count("n", value)
    else:
        with pytest.raises(GenzooError, match="^n must be a positive integer, got "):
            require_count("n", value)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_first_line_is_one_stripped_line_of_the_message(text):
    """Messages quote torch's errors, which run to pages: the first non-blank line stands for them."""
    line = first_line(text)
    assert "\n" not in line and "\r" not in line and line == line.strip()
    assert line == next((part.strip() for part in text.splitlines() if part.strip()), "")
    assert first_line("\n  RuntimeError: boom  \n  at frame 1\n") == "RuntimeError: boom"
