"""Checkpoint tensors, metric numbers and data archives from the third hostile pass (findings 5, 6, 11, 14).

A checkpoint's tensors must be what the freshly built model holds (dtype, layout,
device) before anything looks at them; huge but finite timings in ``metrics.jsonl``
give no rate rather than an OverflowError; a ``.gz`` in the data folder is unpacked
only as far as its IDX header (and the dataset) allows, and never leaves a file behind.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_support import one_thread, run_main  # noqa: F401 - one_thread is a fixture
from test_bad_input import RAW, train, workdir  # noqa: F401 - workdir is a fixture
from test_bad_input import refused as refused_in
from test_hostile_runs import END_OF_EPOCH_1, adam, edit_checkpoint
from test_run_files import EVAL, made, refused, run  # noqa: F401 - fixtures

from genzoo import GenzooError
from genzoo.building import load_model
from genzoo.checkpoint import FILENAME
from genzoo.evaluation.cost import training_throughput

pytestmark = pytest.mark.usefixtures("one_thread")

BIAS, WEIGHT = "encoder.0.bias", "encoder.0.weight"


def replace(name: str, make: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        state["model_state"][name] = make(state["model_state"][name])
    return change


# -- 5, 6: model weights of another dtype, layout or device -----------------------------------------

WEIGHT_EDITS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "int64 2**62": (replace(BIAS, lambda b: torch.full_like(b, 2**62, dtype=torch.long)), "torch.int64"),
    "float64 1e300": (replace(BIAS, lambda b: b.double().fill_(1e300)), "torch.float64"),
    "bool": (replace(BIAS, lambda b: b > 0), "torch.bool"),
    "complex64": (replace(BIAS, lambda b: b.to(torch.complex64)), "torch.complex64"),
    "meta": (replace(BIAS, lambda b: torch.empty_like(b, device="meta")), "meta"),
    "sparse": (replace(WEIGHT, lambda w: w.to_sparse()), "sparse"),
}


@pytest.mark.parametrize("name", list(WEIGHT_EDITS))
def test_weights_of_another_dtype_layout_or_device_are_refused_by_eval_compare_load_and_resume(name, run, capsys):
    """Before: int64 2**62 evaluated to NaN and wrote NaN into eval.json; float64 1e300 was cast to inf
    (traceback in eval, load_model gave inf weights); meta and sparse gave tracebacks everywhere."""
    change, what = WEIGHT_EDITS[name]
    edit_checkpoint(run, change)
    refused(["eval", str(run), *EVAL], run.parent, capsys, f"{run / FILENAME}", what)
    refused(["compare", "--from-runs", str(run), "--out", str(run.parent / "cmp"), *EVAL], run.parent, capsys,
            what)
    with pytest.raises(GenzooError, match=what):
        load_model(run)
    edit_checkpoint(run, lambda s: None, END_OF_EPOCH_1)
    line = refused(["resume", str(run)], run.parent, capsys, f"{run / FILENAME}", what)
    assert "last good checkpoint" not in line


OPTIMISER_EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "exp_avg meta": lambda s: adam(s)["state"][0].update(
        exp_avg=torch.empty_like(adam(s)["state"][0]["exp_avg"], device="meta")),
    "exp_avg sparse": lambda s: adam(s)["state"][0].update(exp_avg=adam(s)["state"][0]["exp_avg"].to_sparse()),
    "step meta": lambda s: adam(s)["state"][0].update(step=torch.empty_like(adam(s)["state"][0]["step"],
                                                                            device="meta")),
    "step complex": lambda s: adam(s)["state"][0].update(step=adam(s)["state"][0]["step"].to(torch.complex64)),
}


@pytest.mark.parametrize("name", list(OPTIMISER_EDITS))
def test_an_optimiser_tensor_of_another_layout_or_device_is_refused_by_resume(name, run, capsys):
    """Before: Tensor.item() cannot be called on meta tensors; a 128-line dispatcher dump for sparse."""
    edit_checkpoint(run, OPTIMISER_EDITS[name], END_OF_EPOCH_1)
    refused(["resume", str(run)], run.parent, capsys, f"{run / FILENAME}", "holds an optimiser state")


# -- 11: huge but finite timings in metrics.jsonl ----------------------------------------------------


def set_metric(run: Path, **values: float) -> None:
    path = run / "metrics.jsonl"
    records = [{**json.loads(line), **values} for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize("fields", [("train_seconds",), ("train_images_per_s", "train_seconds"), ("eval_seconds",)])
def test_huge_timings_give_no_rate_in_eval_and_compare(fields, run, capsys):
    """Before: the whole evaluation ran, then OverflowError in cost.training_throughput, no eval.json;
    compare --from-runs the same, leaving compare.json behind."""
    set_metric(run, **{field: 1.5e308 for field in fields})
    code, out, err = run_main(["eval", str(run), *EVAL], capsys)
    assert code == 0, err
    training = json.loads((run / "eval.json").read_text())["training"]
    assert all(v is None or math.isfinite(v) for v in training.values()), training
    code, out, err = run_main(["compare", "--from-runs", str(run), "--out", str(run.parent / "cmp"), *EVAL], capsys)
    assert code == 0, err
    assert (run.parent / "cmp" / "report.md").exists()


finite = st.none() | st.floats(min_value=-1.7e308, max_value=1.7e308, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({"epoch": st.integers(1, 5), "train_seconds": finite,
                                       "train_images_per_s": finite, "eval_seconds": finite}), max_size=4))
def test_training_throughput_is_total_and_finite_for_any_finite_metrics(records):
    """Any values a metric line may hold (finite numbers, null) give finite numbers or None, never an
    exception or inf/NaN (before: OverflowError from round(inf); negative seconds summing to 0 would
    divide by zero)."""
    result = training_throughput(records)
    if result is not None:
        json.dumps(result, allow_nan=False)
        assert result["images_per_s"] is None or result["images_per_s"] >= 0


# -- 14: a gzip bomb in the data folder --------------------------------------------------------------

IMAGES = "train-images-idx3-ubyte"


def bomb(workdir: Path, header_items: int, extra: int) -> None:
    """The training images as a .gz whose IDX header declares ``header_items`` images but that holds
    ``extra`` more bytes than those, the unpacked file removed (as a manual download leaves it)."""
    raw = workdir / RAW
    header = bytes([0, 0, 0x08, 3]) + b"".join(n.to_bytes(4, "big") for n in (header_items, 28, 28))
    body = bytes(header_items * 28 * 28 + extra)
    (raw / f"{IMAGES}.gz").write_bytes(gzip.compress(header + body, compresslevel=1))
    (raw / IMAGES).unlink()


def test_an_archive_longer_than_its_header_is_refused_and_leaves_no_file(workdir, capsys):
    """Before: the whole stream was unpacked (2 GB from 8.7 MB), then refused by check_idx, and the
    2 GB file stayed in the data folder, refused again by every later run."""
    bomb(workdir, 120, 5_000_000)
    refused_in(train("--no-download"), workdir, capsys, f"data/MNIST/raw/{IMAGES}.gz", "more than")
    assert not (workdir / RAW / IMAGES).exists()


def test_an_archive_whose_header_declares_more_than_the_dataset_holds_is_refused_before_unpacking(workdir, capsys):
    """A header may declare anything: 10**6 images is more than MNIST's 60,000, so nothing is unpacked."""
    raw = workdir / RAW
    header = bytes([0, 0, 0x08, 3]) + b"".join(n.to_bytes(4, "big") for n in (10**6, 28, 28))
    (raw / f"{IMAGES}.gz").write_bytes(gzip.compress(header + bytes(1000)))
    (raw / IMAGES).unlink()
    refused_in(train("--no-download"), workdir, capsys, f"data/MNIST/raw/{IMAGES}.gz", "more than")
    assert not (workdir / RAW / IMAGES).exists()
