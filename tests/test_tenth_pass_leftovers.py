"""Left alone by the tenth hostile pass, fixed since (docs/reliability.md, "Left alone by the tenth pass").

An FID asked of a test split too small to be its reference is refused before any work,
not after every other metric (``eval``) or after every model trained (``compare``). An
export named near the file-name limit is written. A sampler whose ``__init__`` changes
the model it draws from is refused, the model put back, as its other calls are.
"""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
)
from test_reliability_ninth_a import Harmless, vae_run  # noqa: F401 - vae_run is a fixture

from genzoo import GenzooError, hookimpl
from genzoo.plugin_registry import registry

TOO_FEW = "FID needs at least 2 test images as its reference, and the test split has 1"


def test_eval_of_an_fid_against_one_test_image_is_refused_before_any_metric(data_root: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    code, _, err = run_main(["train", "ae", "--data-root", str(data_root), "--epochs", "1", "--batch-size", "40",
                             "--train-limit", "40", "--test-limit", "20", "--device", "cpu", "--out", str(run)], capsys)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    code, out, err = run_main(["eval", str(run), "--test-limit", "1", "--fid-samples", "10", "--features", "mnist",
                               "--device", "cpu"], capsys)
    assert_one_line_error(code, err, TOO_FEW, "--fid-samples 0")
    assert "reconstruction" not in out + err  # no phase ran
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # no eval.json


def test_compare_with_an_fid_against_one_test_image_is_refused_before_anything_trains(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cmp"
    code, _, err = run_main(["compare", "ae", "--data-root", str(data_root), "--epochs", "1", "--batch-size", "40",
                             "--train-limit", "40", "--test-limit", "1", "--fid-samples", "10", "--features", "mnist",
                             "--device", "cpu", "--out", str(out)], capsys)
    assert_one_line_error(code, err, TOO_FEW)
    assert not out.exists()


@pytest.fixture
def finished_run(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    run = tmp_path / "run"
    code, _, err = run_main(["train", "ae", "--data-root", str(data_root), "--epochs", "1", "--batch-size", "40",
                             "--train-limit", "40", "--test-limit", "20", "--device", "cpu", "--out", str(run)], capsys)
    assert code == 0, err
    return run


def test_an_export_named_near_the_file_name_limit_is_written(finished_run: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    """Its hidden temporary folder took the name plus 17 bytes: 'File name too long' named the temporary,
    and the export folder was left behind, empty."""
    out = tmp_path / "exports" / ("x" * 250)
    code, _, err = run_main(["export", str(finished_run), "--format", "safetensors", "--out", str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "metrics.jsonl", "model.safetensors"]
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left


def test_an_export_whose_temporary_cannot_be_made_leaves_no_folder(finished_run: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    import tempfile

    def refuse(*args: object, **kwargs: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    out = tmp_path / "exports" / "ae"
    code, _, err = run_main(["export", str(finished_run), "--format", "safetensors", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "No space left on device")
    assert not (tmp_path / "exports").exists()


# -- a sampler whose __init__ changes the model it draws from ------------------------------------------------------


class ScalingInit(Harmless):
    """Halves the decoder's last weights once, when built (``mul_`` where a copy was meant): every sample, and
    every metric measured after it, would be of another model."""

    def __init__(self, config: Any, model: Any) -> None:
        super().__init__(config, model)
        with torch.no_grad():
            model.decoder[-1].weight.mul_(0.5)


@hookimpl
def register_samplers(register: Any) -> None:
    register("scaling-init", ScalingInit)


def test_a_sampler_that_changes_the_model_while_being_built_is_refused_and_the_model_put_back(
        genzoo_register: Any, vae_run: Path) -> None:
    from genzoo.building import load_model

    genzoo_register(types.SimpleNamespace(register_samplers=register_samplers), "leftovers", "test-leftovers")
    model = load_model(vae_run)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(GenzooError, match=re.escape("sampler 'scaling-init' from plugin 'leftovers' (distribution "
                                                    "'test-leftovers') changed the model's decoder.")):
        registry().build_sampler("scaling-init", model, "vae")
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


class EvalInit(Harmless):
    """Puts the model in eval mode when built, as it will draw (twelfth hostile pass: compare refused it up
    front, on models fresh in training mode, while sample and eval accepted it)."""

    def __init__(self, config: Any, model: Any) -> None:
        super().__init__(config, model)
        model.eval()


@hookimpl
def register_eval_init(register: Any) -> None:
    register("eval-init", EvalInit)


@pytest.mark.parametrize("training", [True, False])
def test_a_sampler_that_puts_the_model_in_eval_mode_when_built_is_accepted_in_either_mode(
        genzoo_register: Any, vae_run: Path, training: bool) -> None:
    from genzoo.building import load_model

    genzoo_register(types.SimpleNamespace(register_samplers=register_eval_init), "leftovers-eval", "test-eval")
    model = load_model(vae_run)
    model.train(training)
    registry().build_sampler("eval-init", model, "vae")
    assert model.training is training  # the caller's mode, back


def test_a_failed_staged_write_names_the_folder_asked_for_not_the_temporary(finished_run: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            capsys: pytest.CaptureFixture) -> None:
    """Twelfth hostile pass, minor: on a full disk, latent's (and export's) line named the hidden temporary."""
    from genzoo import sharing

    def full(path: Path, state: object) -> None:
        raise GenzooError(f"could not write {path}: No space left on device")

    monkeypatch.setattr(sharing, "save_weights", full)
    out = tmp_path / "exports" / "ae"
    code, _, err = run_main(["export", str(finished_run), "--format", "safetensors", "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"could not write {out}/model.safetensors: No space left on device")
    assert not (tmp_path / "exports").exists()
