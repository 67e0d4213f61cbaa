"""Minor items of the fifteenth hostile pass fixed in the main line (docs/reliability.md, "Found by the sixteenth
look"). Each test failed before its fix."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    data_root,
    evaluate,
    one_thread,
    run_main,
)

from genzoo import hookimpl


class NumberedVAE(VAE):
    def sampling_description(self, short: bool = False) -> Any:
        return 42


@hookimpl
def register_models(register: Any) -> None:
    register("numbered17", NumberedVAE)


@pytest.fixture
def mistakes(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "seventeenth-minor", "test-minor")


def test_a_sampler_that_cannot_describe_itself_costs_its_fid_not_every_number(mistakes: None, data_root: Path,
                                                                             tmp_path: Path, capsys: Any) -> None:
    """M12. Before: every metric was measured, then the whole evaluation was refused (``... returned int, not a
    string or None``) and no eval.json written. After: that sampler is n/a with the reason, as one that cannot fit,
    before its FID; the reconstruction, ELBO and IWAE are kept."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "numbered17", "--data-root", str(data_root), "--epochs", "1", "--batch-size",
                             "40", "--train-limit", "40", "--test-limit", "20", "--latent", "2", "--hidden", "16",
                             "--device", "cpu", "--out", str(run)], capsys)
    assert code == 0, err
    code, result, err = evaluate(run, data_root, "model", capsys)
    assert code == 0, err
    reason = "NumberedVAE.sampling_description (sampler 'model') returned int, not a string or None"
    assert result["unavailable"]["sampler model"] == reason and reason in result["unavailable"]["fid"]
    assert result["reconstruction"] and result["negative_elbo"] and result["iwae"]
    assert reason in err
