"""Numeric options at and beyond their edges, and runs that could never finish.

Every value of a numeric option either starts a valid run or is refused in one line
before anything is written (Hypothesis tries many); seeds are checked against the
range every use genzoo makes of them accepts; a split a model cannot train on to the
end is refused, or coped with, before a run folder exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from reliability_support import TRAIN_IMAGES, one_thread, run_main  # noqa: F401
from test_bad_input import refused, train, workdir  # noqa: F401

from genzoo import GenzooError
from genzoo.evaluation import EvalConfig
from genzoo.run_folder import read_metrics
from genzoo.seeding import MAX_SEED
from genzoo.train_config import TrainConfig

# -- seeds -----------------------------------------------------------------------------------


def test_the_seed_range_is_what_every_use_of_the_seed_accepts():
    """torch takes seeds in [-2**63, 2**64); the trainer seeds evaluation with seed + epoch;
    torch-fidelity gives the seed to numpy's RandomState, which takes [0, 2**32): the last is
    the narrowest, so it is genzoo's range, and seed + epoch stays far inside torch's."""
    np.random.RandomState(0)
    np.random.RandomState(MAX_SEED)
    for outside in (-1, MAX_SEED + 1):
        with pytest.raises(ValueError):
            np.random.RandomState(outside)
    torch.manual_seed(MAX_SEED + 10**9)
    torch.Generator().manual_seed(MAX_SEED + 10**9)
    with pytest.raises((ValueError, RuntimeError, OverflowError)):
        torch.manual_seed(2**64)


@pytest.mark.parametrize("seed", [str(2**70), "18446744073709551615", str(MAX_SEED + 1), "-1"])
def test_a_seed_out_of_range_is_refused_before_anything(seed, workdir, capsys):
    refused(train("--seed", seed), workdir, capsys, "--seed", f"is not in the range 0<=x<={MAX_SEED}")


def test_compare_with_a_seed_out_of_range_leaves_no_folder(workdir, capsys):
    refused(["compare", "vae", "--seed", str(2**70), "--out", "X", "--data-root", "data"], workdir, capsys,
            "--seed", f"is not in the range 0<=x<={MAX_SEED}")
    assert not (workdir / "X").exists()


def test_the_largest_seed_trains_to_the_end(workdir, capsys):
    code, _, err = run_main(train("--seed", str(MAX_SEED), "--latent", "2", "--test-limit", "20", "--out", "run"),
                            capsys)
    assert code == 0, err
    assert [r["epoch"] for r in read_metrics(workdir / "run")] == [1]


@pytest.mark.parametrize("make", [lambda seed: TrainConfig(model="vae", seed=seed),
                                  lambda seed: EvalConfig(seed=seed)], ids=["TrainConfig", "EvalConfig"])
@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, 2**70, True, 1.5, "3"])
def test_configs_refuse_a_seed_out_of_range(make, seed):
    """config.json read back on resume goes through the same check."""
    with pytest.raises(GenzooError, match="seed must be an integer from 0 to"):
        make(seed)


# -- runs that could never finish ------------------------------------------------------------


def test_a_gan_trains_through_a_last_batch_of_one_image(workdir, capsys):
    """Batch norm needs two images; the generator's batch is the GAN's own, so it draws two."""
    assert TRAIN_IMAGES % 17 == 1
    code, _, err = run_main(["train", "gan", "--data-root", "data", "--epochs", "1", "--batch-size", "17",
                             "--latent", "2", "--test-limit", "20", "--out", "run"], capsys)
    assert code == 0, err
    assert [r["epoch"] for r in read_metrics(workdir / "run")] == [1]


@pytest.mark.parametrize("options", [["--prior-components", str(TRAIN_IMAGES + 1)],
                                     ["--prior-components", "600", "--train-limit", "50"]])
def test_an_ae_prior_with_more_components_than_training_images_is_refused_first(options, workdir, capsys):
    images = 50 if "--train-limit" in options else TRAIN_IMAGES
    refused(["train", "ae", "--data-root", "data", "--epochs", "1", "--batch-size", "10", *options],
            workdir, capsys, f"more mixture components ({options[1]}) than training images ({images})",
            "--prior-components")


def test_an_ae_trains_on_a_single_image(workdir, capsys):
    """One code has no sample covariance; its mixture is one Gaussian of the regulariser's width."""
    code, _, err = run_main(["train", "ae", "--data-root", "data", "--epochs", "1", "--batch-size", "1",
                             "--train-limit", "1", "--prior-components", "1", "--latent", "2",
                             "--test-limit", "20", "--out", "run"], capsys)
    assert code == 0, err
    assert (workdir / "run" / "samples.png").is_file()


# -- any number: a valid start or one line ---------------------------------------------------

#: Each property runs this many examples (milliseconds each: no training, no data).
EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Started(Exception):
    """Raised in place of the work: the command got past every check."""


@pytest.fixture
def stop_before_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop each command once its options are checked, instead of training or evaluating.

    What got through must then be usable: the model's config builds, and the seed is
    one torch and torch-fidelity's numpy accept (else a traceback fails the property).
    """
    import genzoo.compare
    import genzoo.evaluation
    import genzoo.training
    from genzoo.plugin_registry import registry

    def start_run(config, model_options=None, **_):
        registry().model(config.model).Config.from_dict(model_options or {})
        torch.manual_seed(config.seed)
        raise Started

    def compare(config, **_):
        torch.manual_seed(config.training.seed)
        np.random.RandomState(config.evaluation.seed)
        raise Started

    def evaluate_run(run_dir, config, **_):
        np.random.RandomState(config.seed)
        raise Started

    monkeypatch.setattr(genzoo.training, "start_run", start_run)
    monkeypatch.setattr(genzoo.compare, "compare", compare)
    monkeypatch.setattr(genzoo.evaluation, "evaluate_run", evaluate_run)


#: Numbers as a user might type them: huge, negative, zero, edges, floats, words.
NUMBERS = st.one_of(
    st.integers().map(str),
    st.sampled_from([str(2**32 - 1), str(2**32), str(2**63), str(2**64 - 1), str(2**64), str(2**70), "0", "-0"]),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(alphabet="0123456789eE+-.x_ ", max_size=8),
)

TRAIN_OPTIONS = ["--seed", "--latent", "--epochs", "--batch-size", "--lr", "--train-limit", "--test-limit",
                 "--checkpoint-every"]
COMPARE_OPTIONS = ["--seed", "--latent", "--epochs", "--batch-size", "--train-limit", "--test-limit",
                   "--fid-samples", "--iwae-k"]
EVAL_OPTIONS = ["--fid-samples", "--iwae-k", "--test-limit"]


def started_or_one_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code, out, err = run_main(args, capsys)
    except Started:
        event("started")
        return
    event("refused in one line")
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), (args, err)


@EXAMPLES
@given(option=st.sampled_from(TRAIN_OPTIONS), value=NUMBERS)
def test_any_number_for_a_train_option_starts_or_is_one_line(option, value, stop_before_work, capsys):
    started_or_one_line(["train", "ae", option, value], capsys)


@EXAMPLES
@given(option=st.sampled_from(COMPARE_OPTIONS), value=NUMBERS)
def test_any_number_for_a_compare_option_starts_or_is_one_line(option, value, stop_before_work, capsys):
    started_or_one_line(["compare", "ae", "vae", option, value], capsys)


@EXAMPLES
@given(option=st.sampled_from(EVAL_OPTIONS), value=NUMBERS)
def test_any_number_for_an_eval_option_starts_or_is_one_line(option, value, stop_before_work, capsys,
                                                             tmp_path: Path):
    started_or_one_line(["eval", str(tmp_path), option, value], capsys)
