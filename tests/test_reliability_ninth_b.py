"""Found by the ninth look (eighth hostile pass), helper B's part: float8 tensors in the finiteness checks (H8-5).

torch implements ``isfinite`` for neither float8_e4m3fn nor the ``fnuz`` float8 kinds: a model with such a
buffer ended every training in a traceback before its first checkpoint. The checks (training's, before each
checkpoint; the loader's) share one helper, :func:`genzoo.checks.all_finite`. Each test failed before its fix
(docs/reliability.md, "Found by the ninth look").
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import data_root, one_thread, run_main  # noqa: F401 - data_root and one_thread are fixtures
from test_reliability_writes import Fragile, train_fragile

from genzoo import hookimpl
from genzoo.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from genzoo.checks import all_finite

#: The float8 kinds torch's ``isfinite`` does not take, and one it does.
FLOAT8 = [torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz, torch.float8_e5m2]


@pytest.mark.parametrize("dtype", FLOAT8)
def test_all_finite_takes_float8(dtype: torch.dtype) -> None:
    assert all_finite(torch.ones(4).to(dtype))
    assert not all_finite(torch.tensor([1.0, float("nan")]).to(dtype))
    assert all_finite(torch.tensor([1, 2])) and not all_finite(torch.tensor([complex(float("inf"), 0.0)]))


class Float8Buffer(Fragile):
    """A stored float8 scale (as fp8 training keeps); at ``bad_step`` it goes NaN, or its loss does (None: never)."""

    bad_step: int | None = None
    breaks = "scale"

    def __init__(self, config: Any, sample_shape: Any) -> None:
        super().__init__(config, sample_shape)
        self.register_buffer("scale8", torch.ones(4, dtype=torch.float8_e4m3fn))

    def training_step(self, x: torch.Tensor, optimizers: Any) -> dict[str, torch.Tensor]:
        stats = super().training_step(x, optimizers)
        if self.steps == self.bad_step and self.breaks == "scale":
            self.scale8.fill_(float("nan"))
        return stats


class NaNFloat8Buffer(Float8Buffer):
    bad_step = 10


class StoppedFloat8Buffer(Float8Buffer):
    """A NaN loss in epoch 2 (step 15 of 12 a epoch): the run stops with epoch 1's checkpoint, to be resumed."""

    bad_step = 15
    breaks = "loss"


@hookimpl
def register_models(register: Any) -> None:
    register("f8-buffer", Float8Buffer)
    register("nan-f8-buffer", NaNFloat8Buffer)
    register("stopped-f8-buffer", StoppedFloat8Buffer)


@pytest.fixture
def float8(genzoo_register: Any) -> None:
    """The models above registered as plugin ``ninthb`` for one test."""
    genzoo_register(types.SimpleNamespace(register_models=register_models), "ninthb")


def test_a_model_with_a_float8_buffer_trains_to_a_complete_run_and_resumes(float8, data_root, tmp_path, capsys):
    """H8-5: ``NotImplementedError: "isfinite" not implemented for 'Float8_e4m3fn'`` before the first checkpoint,
    every try; the run folder held only config.json."""
    run = tmp_path / "run"
    code, _, err = train_fragile("f8-buffer", data_root, run, capsys)
    assert code == 0 and "Traceback" not in err, err
    state = load_checkpoint(run)
    assert state["position"]["epoch"] == 2 and state["model_state"]["scale8"].dtype == torch.float8_e4m3fn

    stopped = tmp_path / "stopped"  # stops in epoch 2 (a NaN loss), with epoch 1's checkpoint: the resume loads it
    code, _, err = train_fragile("stopped-f8-buffer", data_root, stopped, capsys)
    assert code == 1 and "non-finite loss at epoch 2" in err and "Traceback" not in err, err
    assert load_checkpoint(stopped)["position"]["epoch"] == 1
    code, _, err = run_main(["resume", str(stopped), "--device", "cpu", "--data-root", str(data_root)], capsys)
    assert code == 0 and "Traceback" not in err, err  # its epoch 2 takes 12 steps: the NaN (step 15) never comes
    state = load_checkpoint(stopped)
    assert state["position"]["epoch"] == 2 and bool((state["model_state"]["scale8"].float() == 1).all())


def test_a_float8_buffer_that_went_nan_is_never_checkpointed(float8, data_root, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = train_fragile("nan-f8-buffer", data_root, run, capsys, "--checkpoint-every", "5")
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        "Error: training diverged: non-finite weights ('scale8') at epoch 1, step 10; "
        f"the last good checkpoint is kept at {run / FILENAME}")
    assert (load_checkpoint(run)["position"]["epoch"], load_checkpoint(run)["position"]["step"]) == (0, 5)


def test_a_checkpoint_with_a_nan_float8_buffer_is_refused_by_the_loader(float8, data_root, tmp_path: Path, capsys):
    run = tmp_path / "run"
    code, _, err = train_fragile("f8-buffer", data_root, run, capsys, "--epochs", "1")
    assert code == 0, err
    state = load_checkpoint(run)
    state["model_state"]["scale8"] = torch.tensor([1.0, float("nan"), 1.0, 1.0]).to(torch.float8_e4m3fn)
    save_checkpoint(run / FILENAME, {k: v for k, v in state.items() if k not in ("format", "version")})
    for args in (["resume", str(run)], ["eval", str(run), "--test-limit", "20", "--iwae-k", "2"]):
        code, _, err = run_main([*args, "--device", "cpu", "--data-root", str(data_root)], capsys)
        assert code == 1 and "Traceback" not in err, err
        assert err.strip().splitlines()[-1] == (
            f"Error: {run / FILENAME} holds non-finite weights ('scale8' has NaN or infinite values); it is damaged "
            "or not a trained model"), err
