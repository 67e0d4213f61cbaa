"""Fused optimiser steps and the compiled training step: recorded in config.json, deterministic, resumable.

Compiling costs seconds even for a tiny model, so this module compiles one tiny VAE
for two batch shapes (full batches and the last partial one) and reuses it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    SteeredVAE,
    assert_same_run,
    assert_same_tensors,
    data_root,
    one_thread,
    reset_steering,
    run_main,
    steered,
)

from genzoo.checkpoint import checkpoint_file, load_checkpoint, save_checkpoint
from genzoo.run_folder import CONFIG, read_run
from genzoo.train_config import TrainConfig
from genzoo.trainer import Interrupted, fuse
from genzoo.training import resume_run, start_run

VAE = {"latent": 2, "hidden": 16}


def config(data_root: Any, **changes: Any) -> TrainConfig:
    """Two epochs of 115 images in batches of 10: eleven full batches and one of 5."""
    values = dict(model="steered-vae", epochs=2, batch_size=10, seed=3, device="cpu", data_root=str(data_root),
                  train_limit=115, test_limit=20)
    return TrainConfig(**{**values, **changes})


def test_fuse_sets_torchs_fused_step_and_names_optimisers_without_one():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    optimizers = {"adam": torch.optim.Adam(a.parameters()), "rms": torch.optim.RMSprop(b.parameters())}
    assert fuse(optimizers, True) == ["rms"]
    assert optimizers["adam"].param_groups[0]["fused"] is True
    assert fuse(optimizers, False) == []
    assert optimizers["adam"].param_groups[0]["fused"] is False


def test_fused_is_recorded_deterministic_and_differs_from_unfused_in_the_last_bits(steered, data_root, tmp_path):
    for name, fused in (("a", True), ("b", True), ("plain", False)):
        start_run(config(data_root, epochs=1, fused=fused), VAE, out=tmp_path / name)
    assert json.loads((tmp_path / "plain" / CONFIG).read_text())["train_config"]["fused"] is False
    a, b, plain = (load_checkpoint(tmp_path / name) for name in ("a", "b", "plain"))
    assert_same_tensors(a["model_state"], b["model_state"])
    assert a["optimizers"]["adam"]["param_groups"][0]["fused"] is True
    assert plain["optimizers"]["adam"]["param_groups"][0]["fused"] is False
    weights, plain_weights = a["model_state"]["encoder.0.weight"], plain["model_state"]["encoder.0.weight"]
    assert not torch.equal(weights, plain_weights) and torch.allclose(weights, plain_weights, atol=1e-4)


def test_a_run_folder_from_before_these_settings_resumes_unfused_and_uncompiled(steered, data_root, tmp_path,
                                                                                   capsys):
    """A run saved before fused, compile, fid_curve and fp32_precision existed (in config.json and in its
    checkpoint) resumes and evaluates as it trained: unfused, uncompiled, without a curve, exact fp32."""
    cfg = config(data_root, fused=False, fp32_precision="ieee")
    start_run(cfg, VAE, out=tmp_path / "reference")
    reset_steering()
    SteeredVAE.interrupt_at = 7
    with pytest.raises(Interrupted):
        start_run(cfg, VAE, out=tmp_path / "run")
    reset_steering()
    path = tmp_path / "run" / CONFIG
    written = json.loads(path.read_text())
    state = load_checkpoint(tmp_path / "run")
    for key in ("fused", "compile", "fid_curve", "fp32_precision"):
        del written["train_config"][key]
        del state["train_config"][key]
    path.write_text(json.dumps(written))
    save_checkpoint(checkpoint_file(tmp_path / "run"), state)
    training = read_run(tmp_path / "run").train_config
    assert (training.fused, training.compile, training.fid_curve, training.fp32_precision) == (False, False, 0, "ieee")
    code, _, err = run_main(["resume", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert_same_tensors(load_checkpoint(tmp_path / "run")["model_state"],
                        load_checkpoint(tmp_path / "reference")["model_state"])
    code, _, err = run_main(["eval", str(tmp_path / "run"), "--fid-samples", "0", "--iwae-k", "2"], capsys)
    assert code == 0, err


def test_a_setting_that_is_not_true_or_false_is_one_line(steered, data_root, tmp_path, capsys):
    start_run(config(data_root, epochs=1), VAE, out=tmp_path / "run")
    path = tmp_path / "run" / CONFIG
    written = json.loads(path.read_text())
    written["train_config"]["fused"] = "yes"
    path.write_text(json.dumps(written))
    code, _, err = run_main(["resume", str(tmp_path / "run")], capsys)
    assert code == 1 and err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    assert "fused must be true or false, got 'yes'" in err


def test_compiled_run_interrupted_and_resumed_equals_an_uninterrupted_compiled_run(steered, data_root, tmp_path):
    from torch._dynamo.utils import counters

    cfg = config(data_root, compile=True)
    start_run(cfg, VAE, out=tmp_path / "reference")
    assert counters["stats"]["unique_graphs"] >= 1  # it did compile
    for at in (12, 7):  # after the partial last batch of epoch 1 (its shape compiled first); mid-epoch
        reset_steering()
        SteeredVAE.interrupt_at = at
        with pytest.raises(Interrupted):
            start_run(cfg, VAE, out=tmp_path / f"run{at}")
        reset_steering()
        resume_run(tmp_path / f"run{at}")
        assert_same_run(tmp_path / f"run{at}", tmp_path / "reference")


def test_a_failed_compilation_is_one_line_and_trains_as_uncompiled(steered, data_root, tmp_path, monkeypatch, capsys):
    import torch._dynamo
    import torch._inductor.compile_fx

    def no_compiler(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no working C++ compiler")

    torch._dynamo.reset()  # the earlier test's compiled code would be used without compiling
    monkeypatch.setattr(torch._inductor.compile_fx, "compile_fx", no_compiler)
    start_run(config(data_root, epochs=1, compile=True), VAE, out=tmp_path / "tried")
    lines = [line for line in capsys.readouterr().err.splitlines() if "--compile" in line]
    assert lines == ["genzoo: warning: --compile: torch.compile failed (backend='inductor' raised: RuntimeError: "
                     "no working C++ compiler); training uncompiled"]
    torch._dynamo.reset()
    start_run(config(data_root, epochs=1), VAE, out=tmp_path / "eager")
    assert_same_tensors(load_checkpoint(tmp_path / "tried")["model_state"],
                        load_checkpoint(tmp_path / "eager")["model_state"])


def test_a_model_stepping_its_own_optimisers_trains_uncompiled_with_one_line(steered, data_root, tmp_path, capsys):
    start_run(config(data_root, model="steered-gan", epochs=1, compile=True), {"latent": 4}, out=tmp_path / "gan")
    lines = [line for line in capsys.readouterr().err.splitlines() if "--compile" in line]
    assert lines == ["genzoo: warning: --compile: SteeredGAN steps its own optimisers; training uncompiled"]
    assert (tmp_path / "gan" / "samples.png").is_file()
