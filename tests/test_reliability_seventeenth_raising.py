"""Found by the seventeenth look (fifteenth hostile pass, F5, F10, F16, F17): plugin code that raises.

A model's ``configure_optimizers``, ``loss``, ``evaluate``, ``reconstruct``, ``encode``, ``decode``,
``negative_elbo`` or ``log_importance_weights`` that raised, and a dataset's ``check()`` or ``fetch()``
that raised, were tracebacks: before the run folder, mid-training (the run left unresumable with no word),
after the final checkpoint (no ``loss.png``), in ``eval`` (no ``eval.json``), ``latent``, ``graph`` and
``genzoo data check`` (where one bad plugin hid every dataset). Each is now one line naming the class and
method (:func:`genzoo.errors.blamed`), or, for a measurement or picture of a finished run, that
measurement n/a with the reason. Each test failed before the fix (docs/reliability.md, "Found by the
sixteenth look").
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.datasets.mnist import MNIST
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    EVAL,
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
)

from genzoo import FileCheck, GenzooError, hookimpl
from genzoo.autograd_graph import step_loss
from genzoo.plugin_registry import registry

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2", "--hidden", "16"]


class TypoOptVAE(VAE):
    def configure_optimizers(self) -> Any:
        return {"adam": torch.optim.Adam(self.parameters(), lr=self.config.learning_rate)}


class BadEvalVAE(VAE):
    def evaluate(self, x: torch.Tensor) -> Any:
        stats = super().evaluate(x)
        stats["sharp"] = x.view(x.shape[0], -1) @ torch.ones(10)  # a shape mistake
        return stats


class BadLossVAE(VAE):
    def loss(self, x: torch.Tensor) -> Any:
        raise ValueError("not implemented for this input yet")


class LateLossVAE(VAE):
    """A bug that shows in the third training step only (the first of a second epoch of two steps)."""

    fail_at = 3

    def __init__(self, config: Any, sample_shape: tuple[int, ...]) -> None:
        super().__init__(config, sample_shape)
        self.calls = 0

    def loss(self, x: torch.Tensor) -> Any:
        if self.training:
            self.calls += 1
            if self.calls == self.fail_at:
                return {"nelbo": {}["oops"]}
        return super().loss(x)


class ReconRaiseVAE(VAE):
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


class EncodeRaiseVAE(VAE):
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("encode: not for this shape")


class DecodeRaiseVAE(VAE):
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise TypeError("decode() missing 1 required positional argument: 'c'")


class ElboRaiseVAE(VAE):
    def negative_elbo(self, x: torch.Tensor) -> Any:
        raise KeyError("bce")


class IwRaiseVAE(VAE):
    def log_importance_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        raise IndexError("k out of range")


class CheckBugMNIST(MNIST):
    name = "checkbug"

    def check(self) -> list[FileCheck]:
        files = {"train": "a.bin"}
        return [FileCheck(path=self.root / files["test"], ok=None, detail="missing")]

    def fetch(self) -> None:
        raise ValueError("mirror list is empty")


class YesCheckMNIST(MNIST):
    name = "yescheck"

    def check(self) -> list[FileCheck]:
        return [FileCheck(path=self.root / "a.bin", ok="yes", detail="fine")]  # type: ignore[arg-type]


MODELS = {"typoopt": TypoOptVAE, "badeval": BadEvalVAE, "badloss": BadLossVAE, "lateloss": LateLossVAE,
          "reconraise": ReconRaiseVAE, "encraise": EncodeRaiseVAE, "decraise": DecodeRaiseVAE,
          "elboraise": ElboRaiseVAE, "iwraise": IwRaiseVAE}


@hookimpl
def register_models(register: Any) -> None:
    for name, cls in MODELS.items():
        register(name, cls)


@hookimpl
def register_datasets(register: Any) -> None:
    register("checkbug", CheckBugMNIST)
    register("yescheck", YesCheckMNIST)


@pytest.fixture
def raising(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models, register_datasets=register_datasets),
                    "seventeenth", "test-seventeenth")


def train(model: str, data: Path, run: Path, capsys: pytest.CaptureFixture, *more: str) -> tuple[int, str, str]:
    return run_main(["train", model, "--data-root", str(data), *TINY, *more, "--out", str(run)], capsys)


# -- F5: before the run folder, and mid-training --------------------------------------------------


@pytest.mark.parametrize(("model", "says"), [
    ("typoopt", "TypoOptVAE.configure_optimizers raised AttributeError: 'VAEConfig' object has no attribute"),
    ("badeval", "BadEvalVAE.evaluate raised RuntimeError: size mismatch"),
    ("badloss", "BadLossVAE.loss raised ValueError: not implemented for this input yet"),
])
def test_model_code_that_raises_before_training_is_one_line_before_the_run_folder(
        raising: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, model: str, says: str) -> None:
    run = tmp_path / "run"
    code, _, err = train(model, data_root, run, capsys)
    assert_one_line_error(code, err, says)
    assert not run.exists()


def test_the_traceback_of_model_code_that_raised_is_shown_with_debug(raising: None, data_root: Path,
                                                                     tmp_path: Path) -> None:
    from genzoo.cli import main

    with pytest.raises(GenzooError, match="BadLossVAE.loss raised ValueError") as info:
        main(["--debug", "train", "badloss", "--data-root", str(data_root), *TINY, "--out", str(tmp_path / "run")])
    assert isinstance(info.value.__cause__, ValueError)  # the plugin's own exception, chained for the traceback


@pytest.mark.parametrize(("epochs", "kept"), [(1, "no checkpoint had been written yet"),
                                              (2, "resume with: genzoo resume ")])
def test_loss_that_raises_mid_training_is_one_line_and_the_run_resumes_once_mended(
        raising: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch, epochs: int, kept: str) -> None:
    run = tmp_path / "run"
    monkeypatch.setattr(LateLossVAE, "fail_at", 2 * epochs - 1)  # the first step of the last epoch
    code, _, err = train("lateloss", data_root, run, capsys, "--epochs", str(epochs))
    *epoch_lines, last = err.strip().splitlines()
    assert len(epoch_lines) == epochs - 1 and all(line.startswith("epoch ") for line in epoch_lines), err
    assert_one_line_error(code, last, "LateLossVAE.loss raised KeyError: 'oops'", kept)
    assert (run / "checkpoint.pt").exists() == (epochs > 1)
    if epochs > 1:  # as the line says: mended, the run resumes from the epoch's checkpoint and finishes
        monkeypatch.setattr(LateLossVAE, "fail_at", 0)
        code, _, err = run_main(["resume", str(run)], capsys)
        assert code == 0, err
        assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_graph_of_a_loss_that_raises_is_one_line(raising: None) -> None:
    model = registry().build_model("badloss", (1, 28, 28), latent=2, hidden=16)
    with pytest.raises(GenzooError, match=r"^BadLossVAE.loss raised ValueError: not implemented for this input"):
        step_loss(model)


# -- F16, F17: reconstruct, encode, decode, negative_elbo, log_importance_weights ------------------


@pytest.mark.parametrize(("model", "says"), [
    ("reconraise", "ReconRaiseVAE.reconstruct raised RuntimeError: mat1 and mat2 shapes cannot be multiplied"),
    ("encraise", "EncodeRaiseVAE.encode raised ValueError: encode: not for this shape"),
    ("decraise", "DecodeRaiseVAE.reconstruct raised TypeError: decode() missing 1 required positional argument"),
])
def test_a_finished_run_whose_reconstruct_raises_keeps_its_run_and_loss_picture(
        raising: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, model: str, says: str) -> None:
    run = tmp_path / "run"
    code, _, err = train(model, data_root, run, capsys)
    assert code == 0, err
    warning = [line for line in err.splitlines() if "reconstructions.png" in line]
    assert len(warning) == 1 and says in warning[0] and warning[0].startswith("genzoo: warning: "), err
    assert "Traceback" not in err
    assert (run / "loss.png").exists() and not (run / "reconstructions.png").exists()


@pytest.mark.parametrize(("model", "missing", "says"), [
    ("reconraise", ["reconstruction"], "ReconRaiseVAE.reconstruct raised RuntimeError: mat1 and mat2 shapes"),
    ("encraise", ["reconstruction", "interpolation"], "EncodeRaiseVAE.encode raised ValueError: encode: not for"),
    ("decraise", ["reconstruction", "interpolation"], "TypeError: decode() missing 1 required positional argument"),
    ("elboraise", ["negative_elbo"], "ElboRaiseVAE.negative_elbo raised KeyError: 'bce'"),
    ("iwraise", ["iwae"], "IwRaiseVAE.log_importance_weights raised IndexError: k out of range"),
])
def test_eval_gives_a_measurement_whose_model_code_raises_as_na_and_keeps_the_others(
        raising: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, model: str,
        missing: list[str], says: str) -> None:
    run = tmp_path / "run"
    code, _, err = train(model, data_root, run, capsys)
    assert code == 0, err
    code, _, err = run_main(["eval", str(run), "--fid-samples", "10", "--features", "mnist", "--data-root",
                             str(data_root), *EVAL], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    result = json.loads((run / "eval.json").read_text())
    for name in missing:
        assert result[name] is None and says in result["unavailable"][name], result["unavailable"]
        assert any(line.startswith("genzoo: warning: ") and result["unavailable"][name] in line
                   for line in err.splitlines()), err
    kept = {"reconstruction", "negative_elbo", "iwae", "interpolation"} - set(missing)
    assert all(result[name] is not None for name in kept), result["unavailable"]
    assert bool(result["fid"]) == (model != "decraise"), result["unavailable"]  # the samples are decoded too


@pytest.mark.parametrize(("model", "says"), [
    ("encraise", "EncodeRaiseVAE.encode raised ValueError: encode: not for this shape"),
    ("decraise", "DecodeRaiseVAE.decode raised TypeError: decode() missing 1 required positional argument"),
])
def test_latent_of_a_model_whose_encode_or_decode_raises_is_one_line(
        raising: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, model: str, says: str) -> None:
    run = tmp_path / "run"
    code, _, err = train(model, data_root, run, capsys)
    assert code == 0, err
    code, _, err = run_main(["latent", str(run), "--pairs", "2", "--test-limit", "20", "--device", "cpu",
                             "--data-root", str(data_root), "--out", str(tmp_path / "latent")], capsys)
    assert_one_line_error(code, err, says)


# -- F10: a dataset's check() and fetch() ---------------------------------------------------------


def test_data_check_names_a_dataset_plugin_that_raises_and_checks_the_others(
        raising: None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_main(["data", "check", "--data-root", str(tmp_path / "empty")], capsys)
    assert_one_line_error(code, err, "dataset checkbug, yescheck could not be checked (error above)")
    rows = out.splitlines()
    assert any(row.startswith("-") and "mnist:" in row for row in rows), out  # the other datasets are checked
    assert any(row.startswith("error") and "dataset 'checkbug' from plugin 'seventeenth' (distribution "
               "'test-seventeenth') failed while checking its files: KeyError: 'test'" in row for row in rows), out
    assert any(row.startswith("error") and "dataset 'yescheck'" in row and "ok is True, False or None" in row
               for row in rows), out


def test_data_download_names_a_dataset_plugin_whose_fetch_raises(
        raising: None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_main(["data", "download", "checkbug", "--data-root", str(tmp_path / "dd")], capsys)
    assert_one_line_error(code, err, "dataset 'checkbug' from plugin 'seventeenth' (distribution 'test-seventeenth') "
                                     "failed while downloading: ValueError: mirror list is empty")
