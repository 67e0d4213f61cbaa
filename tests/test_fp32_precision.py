"""``--fp32-precision``: training's fp32 products in bf16 where the CPU has bf16 units; evaluation always exact."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    SteeredVAE,
    assert_one_line_error,
    assert_same_run,
    assert_same_tensors,
    data_root,
    one_thread,
    reset_steering,
    run_main,
)

from genzoo import hookimpl, precision
from genzoo.checkpoint import load_checkpoint
from genzoo.run_folder import CONFIG
from genzoo.train_config import TrainConfig
from genzoo.trainer import Interrupted
from genzoo.training import resume_run, start_run

VAE = {"latent": 2, "hidden": 16}
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def flags() -> tuple[str, str]:
    return torch.backends.mkldnn.matmul.fp32_precision, torch.backends.mkldnn.conv.fp32_precision


class PrecisionVAE(SteeredVAE):
    """Records the precision of oneDNN's fp32 products in each training step (``seen["loss"]``) and each
    evaluation."""

    seen: dict[str, set[tuple[str, str]]] = {"loss": set(), "evaluate": set()}

    def stepped(self) -> None:
        """After each optimiser step of the model the trainer trains (the checks before training take none)."""
        type(self).seen["loss"].add(flags())
        super().stepped()

    def evaluate(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        type(self).seen["evaluate"].add(flags())
        return super().evaluate(x)


def reset() -> None:
    reset_steering()
    PrecisionVAE.steps, PrecisionVAE.interrupt_at = 0, None


class PrecisionPlugin:
    @hookimpl
    def register_models(self, register: Any) -> None:
        register("steered-vae", PrecisionVAE)


@pytest.fixture
def recorded(genzoo_register: Any) -> Any:
    reset()
    PrecisionVAE.seen = {"loss": set(), "evaluate": set()}
    genzoo_register(PrecisionPlugin(), "precision")
    yield PrecisionVAE.seen
    reset()


def config(data_root: Any, **changes: Any) -> TrainConfig:
    values = dict(model="steered-vae", epochs=2, batch_size=10, seed=3, device="cpu", data_root=str(data_root),
                  train_limit=115, test_limit=20)
    return TrainConfig(**{**values, **changes})


@pytest.mark.parametrize("has_bf16", [True, False])
def test_what_each_setting_trains_with_on_each_device(monkeypatch, has_bf16):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: has_bf16)
    native = "bf16" if has_bf16 else "ieee"
    assert precision.resolved("auto", CPU) == (native, None)
    assert precision.resolved("auto", CUDA) == ("default", None)
    assert precision.resolved("ieee", CPU) == ("ieee", None)
    assert precision.resolved("ieee", CUDA) == ("ieee", None)
    assert precision.resolved("tf32", CUDA) == ("tf32", None)
    assert precision.resolved("bf16", CPU) == (native, None if has_bf16 else
                                               "--fp32-precision bf16: this CPU has no native bf16 matrix units; "
                                               "training in exact fp32")
    assert precision.resolved("bf16", CUDA) == ("default", "--fp32-precision bf16 is for CPUs; on cuda training "
                                                "keeps torch's defaults")
    assert precision.resolved("tf32", CPU) == ("ieee", "--fp32-precision tf32 is for NVIDIA GPUs; on cpu training "
                                               "in exact fp32")


def test_the_setting_holds_inside_and_is_put_back_after_even_an_error():
    before = flags()
    with precision.fp32_precision("default", CPU):
        assert flags() == before
    with pytest.raises(RuntimeError, match="inside"):
        with precision.fp32_precision("bf16", CPU):
            assert flags() == ("bf16", "bf16")
            raise RuntimeError("inside")
    assert flags() == before


@pytest.mark.parametrize("setting,trained", [("bf16", ("bf16", "bf16")), ("ieee", ("ieee", "ieee"))])
def test_training_steps_run_in_the_runs_precision_and_every_evaluation_exactly(recorded, data_root, tmp_path,
                                                                               monkeypatch, setting, trained):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    before = flags()
    start_run(config(data_root, fp32_precision=setting), VAE, out=tmp_path / "run")
    assert recorded["loss"] == {trained}
    assert recorded["evaluate"] == {before}  # each epoch's test pass and the final metrics
    assert flags() == before
    assert json.loads((tmp_path / "run" / CONFIG).read_text())["train_config"]["fp32_precision"] == setting


def test_bf16_asked_of_a_cpu_without_bf16_units_is_one_warning_and_trains_exactly(recorded, data_root, tmp_path,
                                                                                  monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    start_run(config(data_root, epochs=1, fp32_precision="bf16"), VAE, out=tmp_path / "asked")
    lines = [line for line in capsys.readouterr().err.splitlines() if "fp32-precision" in line]
    assert lines == ["genzoo: warning: --fp32-precision bf16: this CPU has no native bf16 matrix units; "
                     "training in exact fp32"]
    assert recorded["loss"] == {("ieee", "ieee")}
    start_run(config(data_root, epochs=1, fp32_precision="ieee"), VAE, out=tmp_path / "exact")
    assert_same_tensors(load_checkpoint(tmp_path / "asked")["model_state"],
                        load_checkpoint(tmp_path / "exact")["model_state"])


@pytest.mark.skipif(not precision.cpu_has_bf16(), reason="this CPU has no native bf16 matrix units")
def test_bf16_training_is_deterministic_resumable_and_close_to_exact(recorded, data_root, tmp_path):
    cfg = config(data_root, fp32_precision="bf16")
    for name in ("a", "b"):
        start_run(cfg, VAE, out=tmp_path / name)
    start_run(config(data_root, fp32_precision="ieee"), VAE, out=tmp_path / "exact")
    a, b, exact = (load_checkpoint(tmp_path / name)["model_state"] for name in ("a", "b", "exact"))
    assert_same_tensors(a, b)
    weights, exact_weights = a["encoder.0.weight"], exact["encoder.0.weight"]
    assert not torch.equal(weights, exact_weights)  # the products did round
    assert torch.allclose(weights, exact_weights, atol=1e-3)
    for at in (12, 7):  # at an epoch's end and mid-epoch
        reset()
        PrecisionVAE.interrupt_at = at
        with pytest.raises(Interrupted):
            start_run(cfg, VAE, out=tmp_path / f"run{at}")
        reset()
        resume_run(tmp_path / f"run{at}")
        assert_same_run(tmp_path / f"run{at}", tmp_path / "a")


def test_a_precision_genzoo_does_not_know_is_one_line(recorded, data_root, tmp_path, capsys):
    start_run(config(data_root, epochs=1), VAE, out=tmp_path / "run")
    path = tmp_path / "run" / CONFIG
    written = json.loads(path.read_text())
    written["train_config"]["fp32_precision"] = "fast"
    path.write_text(json.dumps(written))
    code, _, err = run_main(["resume", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "fp32_precision must be one of auto, ieee, bf16, tf32, got 'fast'")
