"""Found by the twentieth hostile pass on plugins (M8, M9): likelihoods that cannot be right, filed or said quietly.

M8: a model whose ``log_importance_weights`` was off by a constant (a normalising term forgotten: +1e6 nats) had
eval file an IWAE NLL of -999504.69 beside its own -ELBO of 497.65, exit 0. The mean log weight estimates the ELBO
(the weights' contract: z ~ q(z|x)), so it is checked against the model's -ELBO up to the Monte-Carlo noise both
carry; a disagreement makes the IWAE NLL n/a with a warning, as a -ELBO whose parts do not add up is (and fails the
conformance kit), and the built-in VAE's IWAE is still filed. M9: a non-finite -ELBO mean was n/a with its reason but no warning line (a wrong
``nelbo`` gets one), and the table's footer said "n/a = the model cannot do it" for a fault of the model's code.
Each test failed before its fix (docs/reliability.md, the rows of the twentieth hostile pass on plugins).
"""

from __future__ import annotations

import io
import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    data_root,
    one_thread,
    run_main,
)
from rich.console import Console

from genzoo import hookimpl


class ShiftedWeightsVAE(VAE):
    """``log_importance_weights`` with a constant added: a normalising term forgotten (the hostile pass's +1e6)."""

    shift = 1e6

    def log_importance_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return super().log_importance_weights(x, k) + self.shift


class LoweredWeightsVAE(ShiftedWeightsVAE):
    """The same term counted twice: an IWAE NLL far above the model's -ELBO, which it can never be."""

    shift = -1e3


class ElboNanVAE(VAE):
    """``negative_elbo`` gives one image a NaN KL (a log of 0 times 0, say), its ``nelbo`` the sum."""

    def negative_elbo(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stats = super().negative_elbo(x)
        stats["kl"] = stats["kl"].clone()
        stats["kl"][0] = float("nan")
        stats["nelbo"] = stats["bce"] + stats["kl"]
        return stats


@hookimpl
def register_models(register: Any) -> None:
    register("shiftiw", ShiftedWeightsVAE)
    register("loweriw", LoweredWeightsVAE)
    register("elbonan", ElboNanVAE)


@pytest.fixture
def mistakes(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "twentythird-g2", "test-twentythird-g2")


def trained_and_evaluated(model: str, data: Path, run: Path, capsys: pytest.CaptureFixture[str]
                          ) -> tuple[dict[str, Any], str]:
    """A tiny run of ``model`` evaluated (no FID, K = 4): its eval.json and eval's stderr."""
    code, _, err = run_main(["train", model, "--data-root", str(data), "--epochs", "1", "--batch-size", "40",
                             "--train-limit", "200", "--test-limit", "100", "--latent", "2", "--hidden", "16",
                             "--device", "cpu", "--out", str(run)], capsys)
    assert code == 0, err
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", "--iwae-k", "4", "--test-limit", "100",
                             "--data-root", str(data), "--device", "cpu"], capsys)
    assert code == 0, err
    return json.loads((run / "eval.json").read_text()), err


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("genzoo: warning: ")]


@pytest.mark.parametrize("model", ["shiftiw", "loweriw"])
def test_importance_weights_that_disagree_with_the_elbo_file_no_iwae_nll(
        mistakes: None, data_root: Path, tmp_path: Path, model: str, capsys: pytest.CaptureFixture[str]) -> None:
    """M8: before, ``iwae.nll`` -999504.69 (or 1500 above the -ELBO) was filed, exit 0, with no word."""
    result, err = trained_and_evaluated(model, data_root, tmp_path / "run", capsys)
    assert result["iwae"] is None
    reason = result["unavailable"]["iwae"]
    assert "log_importance_weights" in reason and "does not estimate the ELBO" in reason, reason
    assert result["negative_elbo"] is not None  # the bound the model states itself is kept
    assert [line for line in warnings(err) if "log_importance_weights" in line] == [
        f"genzoo: warning: {reason}"], err


def test_the_builtin_vae_still_files_its_iwae_nll_at_most_its_negative_elbo(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """M8's check refuses no correct model: the VAE's weights estimate its own ELBO."""
    result, err = trained_and_evaluated("vae", data_root, tmp_path / "run", capsys)
    assert "iwae" not in result["unavailable"], result["unavailable"]
    assert 0 < result["iwae"]["nll"] <= result["negative_elbo"]["nelbo"] + 1
    assert not [line for line in warnings(err) if "log_importance_weights" in line], err


def test_a_non_finite_negative_elbo_mean_is_one_warning_line(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """M9: before, the reason went only into eval.json's ``unavailable``; a wrong ``nelbo`` was warned."""
    result, err = trained_and_evaluated("elbonan", data_root, tmp_path / "run", capsys)
    assert result["negative_elbo"] is None
    reason = result["unavailable"]["negative_elbo"]
    assert "ElboNanVAE.negative_elbo gave a non-finite mean" in reason, reason
    assert [line for line in warnings(err) if "negative_elbo" in line] == [f"genzoo: warning: {reason}"], err


def test_the_table_footer_does_not_call_a_fault_of_the_model_a_capability_it_lacks() -> None:
    """M9: before, ``n/a = the model cannot do it`` under a table whose n/a was the model's code failing."""
    from genzoo.evaluation.report import notes

    footer = next(line for line in notes([{"model": "m", "dataset": "mnist", "test_images": 100, "seconds": {}}])
                  if "n/a" in line)
    assert "cannot do it" not in footer or "failed" in footer, footer
    assert "unavailable" in footer, footer
    from genzoo.evaluation.report import rich_table

    console = Console(width=400, record=True, file=io.StringIO())
    console.print(rich_table([{"model": "m", "parameters": 1, "seconds": {"x": 1.0}, "dataset": "mnist",
                               "test_images": 100}], title="t"))
    assert footer in [line.strip() for line in console.export_text().splitlines()], console.export_text()


@pytest.mark.parametrize(("model", "fails"), [("shiftiw", True), ("loweriw", True), ("vae", False)])
def test_the_conformance_kit_holds_the_weights_to_evals_check(mistakes: None, model: str, fails: bool) -> None:
    """M8: the kit passed weights off by a constant (it checked only their shape and finiteness) that eval refuses."""
    from genzoo.plugin_registry import registry
    from genzoo.testing import ModelConformance
    from genzoo.testing.images import synthetic_images

    kit = ModelConformance()
    built = registry().build_model(model, kit.sample_shape)
    batch = synthetic_images(kit.batch_size, kit.sample_shape, seed=kit.seed)
    if fails:
        with pytest.raises(pytest.fail.Exception, match="log_importance_weights does not estimate the ELBO"):
            kit.test_importance_weights_are_finite_per_image_and_draw(built, batch)
    else:
        kit.test_importance_weights_are_finite_per_image_and_draw(built, batch)
