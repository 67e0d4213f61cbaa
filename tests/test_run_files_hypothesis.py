"""Property tests of the run-file readers: any content is a valid run or one line, never a traceback.

Each reader gets arbitrary bytes, arbitrary JSON, and valid files with a few fields
damaged (deleted, or replaced by any JSON value). ``event`` tallies what happened;
run with ``--hypothesis-show-statistics`` to see the counts.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from genzoo import GenzooError
from genzoo.checkpoint import Position
from genzoo.data import TensorSplit
from genzoo.evaluation.frechet import reference_cache_name
from genzoo.plugin_registry import registry
from genzoo.run_folder import CONFIG, METRICS, RunDescription, check_record, read_metrics, read_run
from genzoo.train_config import TrainConfig
from genzoo.trainer import Trainer, training_step

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)

VALID_CONFIG = {
    "model": "vae",
    "model_config": {"latent": 2, "hidden": 16},
    "train_config": {"model": "vae", "dataset": "mnist", "epochs": 2, "batch_size": 10, "seed": 3,
                     "device": "cpu", "data_root": None, "train_limit": None, "test_limit": 20,
                     "checkpoint_every": None, "eval_batch_size": 1000},
    "sample_shape": [1, 28, 28],
    "device": "cpu",
}
#: What Python's parser refuses with other exceptions than JSONDecodeError.
HUGE_INT = b"1" * 5000  # ValueError: exceeds the limit for integer string conversion
DEEP = b"[" * 100_000  # RecursionError
VALID_POSITION = {"epoch": 1, "step": 5, "global_step": 17, "sums": {"loss": 300.0}, "images": 50, "seconds": 1.0}
#: Epoch sums of a VAE's step statistics, which ``Trainer.restore`` checks mid-epoch.
VAE_SUMS = {"nelbo": 300.0, "bce": 280.0, "kl": 20.0}


@st.composite
def damaged(draw: st.DrawFn, valid: dict[str, Any], nested: tuple[str, ...] = ()) -> Any:
    """``valid`` with up to three fields (top level or inside ``nested``) deleted or replaced."""
    value = json.loads(json.dumps(valid))
    for _ in range(draw(st.integers(0, 3))):
        where = value
        if nested and draw(st.booleans()):
            inner = draw(st.sampled_from(nested))
            if not isinstance(value.get(inner), dict):
                continue
            where = value[inner]
        if not where:
            continue
        key = draw(st.sampled_from(sorted(where)))
        if draw(st.booleans()):
            del where[key]
        else:
            where[key] = draw(JSON)
    return value


def one_line(exc: GenzooError, path: Path) -> str:
    message = str(exc)
    assert "\n" not in message and str(path) in message, message
    return message


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


@EXAMPLES
@given(content=st.one_of(st.binary(max_size=200), JSON.map(encoded), damaged(VALID_CONFIG, ("train_config",)).map(encoded)))
@example(content=HUGE_INT)
@example(content=DEEP)
@example(content=encoded(VALID_CONFIG).replace(b'"epochs": 2', b'"epochs": 1' + b"0" * 400))
def test_any_config_json_is_a_checked_run_or_one_line(tmp_path, content):
    (tmp_path / CONFIG).write_bytes(content)
    try:
        run = read_run(tmp_path)
    except GenzooError as exc:
        reason = one_line(exc, tmp_path / CONFIG).split("configuration: ")[-1]
        event("refused: " + reason.replace(str(tmp_path / CONFIG), "config.json").split(" ")[0 if "config.json" not in reason else 2])
        return
    event("a valid run")
    assert isinstance(run, RunDescription) and isinstance(run.model, str) and run.model
    assert isinstance(run.model_config, dict)
    assert all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in run.sample_shape)
    config = run.train_config
    assert isinstance(config, TrainConfig) and config.model == run.model
    for name in ("epochs", "batch_size", "eval_batch_size"):
        value = getattr(config, name)
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 1


def record(epoch: int) -> dict[str, Any]:
    return {"epoch": epoch, "step": 12 * epoch, "train_loss": 1.0 / epoch, "test_loss": 2.0,
            "train_images_per_s": None}


LINE = st.one_of(
    st.integers(1, 4).map(lambda e: encoded(record(e))),  # valid, though perhaps out of order
    damaged(record(1)).map(encoded),
    JSON.map(encoded),
    st.binary(max_size=40).filter(lambda b: b"\n" not in b),
)


@st.composite
def run_lines(draw: st.DrawFn) -> list[bytes]:
    """The lines of a run's epochs 1..n, one of them perhaps replaced by any line."""
    lines = [encoded(record(e)) for e in range(1, draw(st.integers(0, 4)) + 1)]
    if lines and draw(st.booleans()):
        lines[draw(st.integers(0, len(lines) - 1))] = draw(LINE)
    return lines


@EXAMPLES
@given(lines=st.one_of(run_lines(), st.lists(LINE, max_size=5)), tail=st.one_of(st.just(b""), LINE))
@example(lines=[HUGE_INT, encoded(record(1))], tail=b"")
@example(lines=[DEEP], tail=DEEP)
@example(lines=[encoded({**record(1), "test_loss": 10**400})], tail=b"")
def test_any_metrics_jsonl_is_checked_records_or_one_line(tmp_path, lines, tail):
    """``tail`` is a last line without its newline: what a crash mid-append leaves."""
    (tmp_path / METRICS).write_bytes(b"".join(line + b"\n" for line in lines) + tail)
    try:
        records = read_metrics(tmp_path)
    except GenzooError as exc:
        one_line(exc, tmp_path / METRICS)
        event("refused")
        return
    event(f"{len(records)} records")
    assert all(check_record(r) is None for r in records)
    epochs = [r["epoch"] for r in records]
    assert epochs == sorted(set(epochs))  # each epoch once, in order
    whole = [json.loads(line) for line in lines if line.strip()]
    assert records[: len(whole)] == whole  # no complete line was skipped


@EXAMPLES
@given(value=st.one_of(JSON, damaged(VALID_POSITION, ("sums",)), st.builds(
    dict, epoch=st.integers(-3, 4), step=st.integers(-1, 14), global_step=st.integers(-1, 50),
    sums=st.dictionaries(st.sampled_from(["loss", "kl"]), st.floats()), images=st.integers(-1, 130),
    seconds=st.floats())))
@example(value={**VALID_POSITION, "sums": {"loss": 10**400}})
@example(value={**VALID_POSITION, "seconds": 10**400})
def test_any_checkpoint_position_is_a_possible_one_or_one_line(value, tmp_path):
    path = tmp_path / "checkpoint.pt"
    try:
        position = Position.from_checkpoint(value, 2, path)
    except GenzooError as exc:
        one_line(exc, path)
        event("refused")
        return
    event("accepted")
    assert 0 <= position.epoch <= 2 and position.step >= 0 and position.global_step >= 0
    assert (position.step > 0) == (position.images > 0)  # no sums divided by zero images
    assert all(math.isfinite(v) for v in position.sums.values()) and math.isfinite(position.seconds)


@pytest.fixture(scope="module")
def trainer_and_state(tmp_path_factory) -> tuple[Trainer, dict[str, Any]]:
    """A tiny VAE trainer (12 steps an epoch) and a checkpoint of it 5 steps into epoch 2."""
    torch.manual_seed(0)
    images = torch.rand(120, 1, 28, 28)
    config = TrainConfig(model="vae", epochs=2, batch_size=10, device="cpu")
    model = registry().build_model("vae", (1, 28, 28), latent=2, hidden=16)
    trainer = Trainer(model, TensorSplit(images), TensorSplit(images[:10]), config, tmp_path_factory.mktemp("run"))
    training_step(model, images[:10], trainer.optimizers)  # so Adam holds state, its step counts set per example
    trainer.position = Position(**{**VALID_POSITION, "sums": dict(VAE_SUMS)})
    trainer.save()
    return trainer, torch.load(trainer.checkpoint_path, weights_only=True)


@st.composite
def near_possible(draw: st.DrawFn) -> dict[str, Any]:
    """A position this run can be at, perhaps with one count off by one."""
    epoch = draw(st.integers(0, 2))
    step = 0 if epoch == 2 else draw(st.integers(0, 12))
    value = {"epoch": epoch, "step": step, "global_step": 12 * epoch + step, "images": min(10 * step, 120),
             "sums": dict(VAE_SUMS) if step else {}, "seconds": 1.0}
    if draw(st.booleans()):
        key = draw(st.sampled_from(["epoch", "step", "global_step", "images"]))
        value[key] += draw(st.sampled_from([-1, 1]))
    return value


@EXAMPLES
@given(position=st.one_of(near_possible(), damaged(VALID_POSITION, ("sums",)), st.builds(
    dict, epoch=st.integers(0, 3), step=st.integers(0, 13), global_step=st.integers(0, 40),
    sums=st.just(VAE_SUMS), images=st.integers(0, 130), seconds=st.just(1.0))))
def test_restore_accepts_only_a_position_this_run_can_be_at(trainer_and_state, position):
    trainer, state = trainer_and_state
    optimizers = copy.deepcopy(state["optimizers"])  # Adam's state agrees with the position, as the trainer's does
    steps = position.get("global_step") if isinstance(position, dict) else None
    for entry in optimizers["adam"]["state"].values():
        entry["step"].fill_(steps if isinstance(steps, int) else 1)
    if steps == 0:
        optimizers["adam"]["state"] = {}
    try:
        trainer.restore({**state, "position": position, "optimizers": optimizers})
    except GenzooError as exc:
        one_line(exc, trainer.checkpoint_path)
        event("refused")
        return
    event("restored")
    restored = trainer.position
    assert restored.global_step == 12 * restored.epoch + restored.step
    assert restored.images == min(10 * restored.step, 120)


RUN_CONFIG = {"model_config": {"latent": 2}, "train_config": {"epochs": 2}}
#: The test split the earlier evaluation below was made on (its FID reference names it).
TEST = TensorSplit(torch.zeros(20, 1, 28, 28))
EARLIER = {"run_config": RUN_CONFIG,
           "fid": {"mnist": {"fid": 12.5, "samples": 30, "extractor": "e", "features": "mnist",
                             "reference": f"mnist test split, 20 images ({reference_cache_name('mnist', TEST)})",
                             "seed": 0, "seconds": 1.0}},
           "iwae": {"nll": 90.0, "k": 2, "images": 20, "seconds": 1.0},
           "eval_config": {"fid_samples": 30, "seed": 0, "features": "mnist", "iwae_k": 2}, "test_images": 20, "environment": {"evaluated_at": "then"},
           "unavailable": {}, "kept": {}}


@EXAMPLES
@given(content=st.one_of(st.binary(max_size=100), JSON.map(encoded),
                         damaged(EARLIER, ("fid", "kept", "environment", "run_config")).map(encoded)))
@example(content=HUGE_INT)
@example(content=DEEP)
def test_any_earlier_eval_json_merges_or_is_one_line(tmp_path, content):
    """The new evaluation (no FID, no IWAE) keeps what the earlier one measured, or refuses it in one line."""
    from genzoo.evaluation.run_evaluation import EVAL_FILE, earlier_evaluation, evaluation_problem, merge_earlier

    (tmp_path / EVAL_FILE).write_bytes(content)
    try:
        earlier = earlier_evaluation(tmp_path)
    except GenzooError as exc:
        one_line(exc, tmp_path / EVAL_FILE)
        event("refused")
        return
    result = {"run_config": RUN_CONFIG, "eval_config": {}, "dataset": "mnist", "fid": {}, "iwae": None,
              "unavailable": {"fid": "skipped", "iwae": "skipped"}}
    merge_earlier(result, earlier, tmp_path / EVAL_FILE, TEST)
    event(f"kept {len(result.get('kept', {}))}")
    assert evaluation_problem(result) is None  # only well-formed entries are kept (and then printed)
    for name, measured_under in result.get("kept", {}).items():
        group, _, label = name.partition(".")
        assert (result[group][label] if label else result[group]) is not None and isinstance(measured_under, dict)


VALUE_OR_TENSOR = st.one_of(JSON, st.lists(st.integers(0, 30), max_size=4).map(torch.tensor),
                            st.just(torch.zeros(3, dtype=torch.uint8)))
IDENTITY = {"model": "vae", "model_config": VALID_CONFIG["model_config"],
            "train_config": VALID_CONFIG["train_config"], "sample_shape": [1, 28, 28]}


@EXAMPLES
@given(identity=st.fixed_dictionaries({}, optional={key: VALUE_OR_TENSOR for key in IDENTITY}),
       inner=st.dictionaries(st.sampled_from(["latent", "epochs", 3]), VALUE_OR_TENSOR, max_size=2))
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_any_checkpoint_identity_matches_its_run_or_is_one_line(identity, inner, tmp_path):
    """What a checkpoint says it is (any values ``weights_only`` can hold, tensors too) against the run."""
    from genzoo.checkpoint import check_matches

    state = {**IDENTITY, **identity}
    for key in ("model_config", "train_config"):
        if isinstance(state[key], dict):
            state[key] = {**state[key], **inner}
    path = tmp_path / "checkpoint.pt"
    try:
        check_matches(state, "vae", IDENTITY["model_config"], path, train_config=IDENTITY["train_config"],
                      sample_shape=IDENTITY["sample_shape"])
    except GenzooError as exc:
        one_line(exc, path)
        event("refused")
        return
    event("matches")
    assert {key: state[key] for key in IDENTITY} == IDENTITY


@st.composite
def model_and_options(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A built-in model and its default options with up to three replaced by any JSON value or removed."""
    from genzoo.plugin_registry import registry

    name = draw(st.sampled_from(["ae", "vae", "gan"]))
    defaults = registry().model(name).Config().to_dict()
    return name, draw(damaged(defaults))


@EXAMPLES
@given(chosen=model_and_options())
@example(chosen=("gan", {"beta1": "x"}))
@example(chosen=("ae", {"prior_components": 2**63}))  # torch's error spans lines with C++ frames
def test_any_model_config_in_a_run_builds_its_model_or_is_one_line(chosen):
    """``config.json``'s ``model_config`` is the model's own business, but must not crash ``eval`` or ``resume``."""
    from genzoo.plugin_registry import registry

    name, options = chosen
    try:
        model = registry().build_model(name, (1, 28, 28), **options)
    except GenzooError as exc:
        assert "\n" not in str(exc)
        event(f"{name}: refused")
        return
    event(f"{name}: built")
    assert model.config.to_dict() == {**registry().model(name).Config().to_dict(), **options}
