"""Found by the thirteenth look (twelfth hostile pass): honest mistakes in dataset and model plugins.

F4: a dataset's ``load`` giving uint8 or float64 images, a tuple or a bare tensor ended in a
traceback (the wrong dtype after the run folder was made). F5: images in 0..255 (no /255) were
trained and scored with no word. F9: an empty test split trained, then a ``StopIteration``
traceback. F3: a model whose ``evaluate`` gave a non-finite per-image value wrote it into
metrics.jsonl, which every later command then refused as corrupt. Each test failed before its
fix (docs/reliability.md, "Found by the thirteenth look").
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
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
)

from genzoo import TensorSplit, hookimpl
from genzoo.building import load_split


class U8MNIST(MNIST):
    """Keeps the 8-bit pixels (no conversion to float)."""

    def load(self, split: str) -> Any:
        s = super().load(split)
        return TensorSplit((s.images * 255).round().to(torch.uint8), s.labels)


class F64MNIST(MNIST):
    def load(self, split: str) -> Any:
        s = super().load(split)
        return TensorSplit(s.images.double(), s.labels)


class TupleMNIST(MNIST):
    """Returns ``(images, labels)`` as torchvision-style code does."""

    def load(self, split: str) -> Any:
        s = super().load(split)
        return s.images, s.labels


class BareMNIST(MNIST):
    def load(self, split: str) -> Any:
        return super().load(split).images


class F255MNIST(MNIST):
    """Float pixels in 0..255: forgot the /255."""

    def load(self, split: str) -> Any:
        s = super().load(split)
        return TensorSplit(s.images * 255, s.labels)


class EmptyTestMNIST(MNIST):
    """A class filter that matches nothing, on the test split only."""

    def load(self, split: str) -> Any:
        s = super().load(split)
        if split == "test":
            keep = s.labels == -1
            return TensorSplit(s.images[keep], s.labels[keep])
        return s


class EvalInfVAE(VAE):
    """``evaluate`` adds the log of a zero probability: -inf per image."""

    def evaluate(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stats = super().evaluate(x)
        stats["logp"] = torch.log(torch.zeros(x.shape[0]))
        return stats


class ElboInfVAE(VAE):
    """``negative_elbo`` gives one image an infinite KL (a variance that underflowed to 0, say)."""

    def negative_elbo(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stats = super().negative_elbo(x)
        stats["kl"] = stats["kl"].clone()
        stats["kl"][0] = float("inf")
        stats["nelbo"] = stats["bce"] + stats["kl"]
        return stats


class IwInfVAE(VAE):
    """``log_importance_weights`` gives one image -inf for every draw (a density of 0)."""

    def log_importance_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        log_w = super().log_importance_weights(x, k).clone()
        log_w[0] = float("-inf")
        return log_w


@hookimpl
def register_datasets(register: Any) -> None:
    register("u8mnist", U8MNIST)
    register("f64mnist", F64MNIST)
    register("tuplemnist", TupleMNIST)
    register("baremnist", BareMNIST)
    register("f255mnist", F255MNIST)
    register("emptytest", EmptyTestMNIST)


@hookimpl
def register_models(register: Any) -> None:
    register("evalinf", EvalInfVAE)
    register("elboinf", ElboInfVAE)
    register("iwinf", IwInfVAE)


@pytest.fixture
def mistakes(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_datasets=register_datasets, register_models=register_models),
                    "thirteenth", "test-thirteenth")


def train_args(model: str, dataset: str, data: Path, out: Path) -> list[str]:
    return ["train", model, "--dataset", dataset, "--data-root", str(data), "--epochs", "1", "--batch-size", "40",
            "--train-limit", "40", "--test-limit", "20", "--latent", "2", "--hidden", "16", "--device", "cpu",
            "--out", str(out)]


@pytest.mark.parametrize(("dataset", "needles"), [
    ("u8mnist", ["dataset 'u8mnist' gave train images of dtype torch.uint8", "float32 in [0, 1]"]),
    ("f64mnist", ["dataset 'f64mnist' gave train images of dtype torch.float64"]),
    ("tuplemnist", ["dataset 'tuplemnist' returned a tuple from load('train')", "TensorSplit"]),
    ("baremnist", ["dataset 'baremnist' returned a Tensor from load('train')"]),
    ("f255mnist", ["dataset 'f255mnist' gave train images with values from 0 to 255", "[0, 1]"]),
    ("emptytest", ["dataset 'emptytest' gave no test images"]),
])
def test_a_dataset_giving_other_than_float_images_in_0_1_is_one_line_before_any_run_folder(
        mistakes: None, data_root: Path, tmp_path: Path, dataset: str, needles: list[str],
        capsys: pytest.CaptureFixture) -> None:
    """F4, F5, F9: before, a 62-line dtype traceback after the run folder was made, an AttributeError
    traceback, silent training on 0..255 pixels, and a StopIteration traceback after the epochs."""
    code, _, err = run_main(train_args("vae", dataset, data_root, tmp_path / "run"), capsys)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "run").exists()


def test_the_split_check_is_the_one_every_command_loads_through(mistakes: None, data_root: Path) -> None:
    """eval, latent, compare and sample load their splits through ``load_split``: the test split is checked."""
    from genzoo.errors import GenzooError

    with pytest.raises(GenzooError, match="dataset 'emptytest' gave no test images"):
        load_split("emptytest", "test", str(data_root), 20, torch.device("cpu"))
    with pytest.raises(GenzooError, match="dataset 'f255mnist' gave test images with values from 0 to 255"):
        load_split("f255mnist", "test", str(data_root), None, torch.device("cpu"))


def test_a_non_finite_test_metric_stops_training_before_it_is_written(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """F3: before, exit 0 with ``"test_logp": -Infinity`` in metrics.jsonl; every later eval, resume and
    compare refused the run as "changed by something else". Now training stops at that epoch in one line,
    and nothing non-finite is written."""
    run = tmp_path / "run"
    code, _, err = run_main(train_args("evalinf", "mnist", data_root, run), capsys)
    assert_one_line_error(code, err, "EvalInfVAE.evaluate", "'logp'", "-inf", "epoch 1")
    metrics = run / "metrics.jsonl"
    text = metrics.read_text() if metrics.exists() else ""
    assert "Infinity" not in text and "NaN" not in text
    for line in text.splitlines():
        json.loads(line)


@pytest.mark.parametrize(("model", "measurement", "needle"), [
    ("elboinf", "negative_elbo", "ElboInfVAE.negative_elbo gave a non-finite mean 'nelbo' (inf)"),
    ("iwinf", "iwae", "IwInfVAE.log_importance_weights gave a non-finite IWAE NLL (inf)"),
])
def test_a_non_finite_measurement_is_not_available_and_the_next_eval_reads_its_file(
        mistakes: None, data_root: Path, tmp_path: Path, model: str, measurement: str, needle: str,
        capsys: pytest.CaptureFixture) -> None:
    """F3: before, eval wrote ``inf`` into eval.json (exit 0), and the next eval (and compare --resume of a
    compare that measured it) refused that file as "not a genzoo evaluation". Now the measurement is n/a,
    with the reason, and eval.json stays one genzoo reads back."""
    run = tmp_path / "run"
    code, _, err = run_main(train_args(model, "mnist", data_root, run), capsys)
    assert code == 0, err
    evaluate = ["eval", str(run), "--fid-samples", "0", "--iwae-k", "2", "--test-limit", "20",
                "--data-root", str(data_root), "--device", "cpu"]
    for _ in range(2):
        code, _, err = run_main(evaluate, capsys)
        assert code == 0, err
        result = json.loads((run / "eval.json").read_text())
        assert result[measurement] is None
        assert needle in result["unavailable"][measurement]
