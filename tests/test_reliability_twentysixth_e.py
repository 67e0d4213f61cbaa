"""Found by the twenty-fourth hostile pass (on f5eb754's parent), fixed by the twenty-sixth look.

Plugins F1: a model's ``evaluate`` ran guarded only by ``blamed`` in the probe before the run folder: one that moved
the working directory on its first call had the whole run written under the other folder (``run folder: runs/x``,
exit 0, and no such folder), one that set float64 as torch's default had a later warning blame ``sample``. The probe
now runs under ``model_call`` (the test passes' calls are left to the run folder's lock and the trainer, which put
such changes back with a warning: test_reliability_twentysecond_d.py). Files F1: ``compare --resume`` redrew a
missing picture from whatever run sat at a compared run's path. Plugins F2 and M1: autocast and inference mode turned
on by a plugin. Each test failed before its fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import assert_one_line_error, data_root, run_main  # noqa: F401 - data_root is a fixture

from genzoo import hookimpl

TINY = ["--epochs", "1", "--batch-size", "16", "--train-limit", "64", "--test-limit", "32", "--latent", "2",
        "--device", "cpu"]


class WanderingEvaluateVAE(VAE):
    """Its ``evaluate`` moves to another folder on call ``at`` (class attributes set by the test)."""

    elsewhere: Path | None = None
    at = 1
    calls = 0

    def evaluate(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        type(self).calls += 1
        if type(self).calls == self.at and self.elsewhere is not None:
            os.chdir(self.elsewhere)
        return super().evaluate(x)


class WanderingPlugin:
    @hookimpl
    def register_models(self, register: Any) -> None:
        register("wandering-evaluate26", WanderingEvaluateVAE)


@pytest.fixture
def wandering(genzoo_register: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setattr(WanderingEvaluateVAE, "elsewhere", elsewhere)
    monkeypatch.setattr(WanderingEvaluateVAE, "calls", 0)
    monkeypatch.chdir(tmp_path)
    genzoo_register(WanderingPlugin(), "wandering-evaluate26")
    return elsewhere


def test_an_evaluate_moving_the_working_directory_in_the_probe_is_named_before_the_run_folder(
        wandering, data_root, tmp_path, capsys) -> None:  # noqa: F811
    """Before: ``run folder: runs/x``, exit 0, the run written under ``elsewhere/runs/x``."""
    code, _, err = run_main(["train", "wandering-evaluate26", *TINY, "--data-root", str(data_root), "--out",
                             "runs/x"], capsys)
    assert_one_line_error(code, err, "WanderingEvaluateVAE.evaluate changed the working directory",
                          "while evaluating a test image; they are put back")
    assert Path.cwd() == tmp_path
    assert not (tmp_path / "runs").exists() and not any(wandering.iterdir())


# -- files F1: pictures redrawn from a run put at a compared run's path -------------------------------------------

COMPARE = ["--epochs", "1", "--batch-size", "16", "--train-limit", "64", "--test-limit", "32", "--latent", "2",
           "--device", "cpu", "--fid-samples", "0", "--iwae-k", "2"]


def test_a_compare_picture_is_not_redrawn_from_a_run_put_in_place_of_a_compared_one(data_root, tmp_path,  # noqa: F811
                                                                                    capsys) -> None:
    """Files F1. Before: ``wrote OUT/compare.png again from OUT/results.json``, exit 0: the AE's samples and
    reconstructions under the label ``vae``."""
    import shutil

    out = tmp_path / "cmp"
    code, _, err = run_main(["compare", "vae", "ae", *COMPARE, "--data-root", str(data_root), "--out", str(out)],
                            capsys)
    assert code == 0, err
    (out / "runs" / "vae").rename(tmp_path / "vae-measured")
    shutil.copytree(out / "runs" / "ae", out / "runs" / "vae")
    (out / "compare.png").unlink()
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert_one_line_error(code, err, f"{out / 'runs' / 'vae'} is not the run {out / 'results.json'} measured as "
                                     "'vae' (other settings or weights: replaced since)")
    assert not (out / "compare.png").exists()
    shutil.rmtree(out / "runs" / "vae")
    (tmp_path / "vae-measured").rename(out / "runs" / "vae")  # the measured run back: drawn again
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0, err
    assert (out / "compare.png").is_file()


# -- plugins F2 and M1: autocast and inference mode turned on by a plugin -----------------------------------------


def _turns_autocast_on() -> None:
    torch.set_autocast_enabled("cpu", True)


#: The guards the plugin below enters, kept as a module's global keeps its own (a guard dropped is left at once).
_ENTERED: list[Any] = []


def _enters_inference_mode() -> None:
    _ENTERED.append(torch.inference_mode())
    _ENTERED[-1].__enter__()


@pytest.mark.parametrize(("change", "named"), [
    (_turns_autocast_on, "changed torch's cpu autocast (off, set to on, bfloat16)"),
    (_enters_inference_mode, "changed torch's grad mode (enabled, set to disabled) and torch's inference mode "
                             "(disabled, set to enabled)")])
def test_a_plugin_turning_autocast_or_inference_mode_on_is_put_back_and_skipped(genzoo_register, capsys, change,
                                                                                named) -> None:
    """Plugins F2 (kind 2). Before: autocast stayed on, and every run, of the built-in models too, trained and
    evaluated in bfloat16, exit 0 (``config.json`` said ``fp32_precision: ieee``). M1: inference mode stayed on,
    and the next run blamed the built-in VAE."""
    from genzoo import plugin_registry

    @hookimpl
    def register_models(register: Any) -> None:
        change()
        register("changer26", WanderingEvaluateVAE)

    import types

    genzoo_register(types.SimpleNamespace(register_models=register_models), "changer26", "test-changer26")
    capsys.readouterr()
    assert "changer26" not in plugin_registry.registry().names("model")
    assert named in capsys.readouterr().err
    assert not torch.is_autocast_enabled("cpu") and not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
    x = torch.ones(2, 2, requires_grad=True)
    assert (x @ x).dtype == torch.float32 and (x @ x).requires_grad


# -- plugins F1, the unguarded calls before the run folder ----------------------------------------------------------


class WanderingStateVAE(VAE):
    """Its ``state_dict`` (which genzoo's checks call unguarded) moves to another folder on its first call."""

    elsewhere: Path | None = None

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        if type(self).elsewhere is not None:
            os.chdir(type(self).elsewhere)
            type(self).elsewhere = None
        return super().state_dict(*args, **kwargs)


def test_an_unguarded_call_moving_the_working_directory_before_the_run_folder_is_put_back(
        genzoo_register, data_root, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    """Before: ``run folder: runs/x``, exit 0, the whole run made under the other folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(WanderingStateVAE, "elsewhere", elsewhere)

    @hookimpl
    def register_models(register: Any) -> None:
        register("wandering-state26", WanderingStateVAE)

    import types

    genzoo_register(types.SimpleNamespace(register_models=register_models), "wandering-state26", "test-ws26")
    code, out, err = run_main(["train", "wandering-state26", *TINY, "--data-root", str(data_root), "--out", "runs/x"],
                              capsys)
    assert code == 0, err
    assert "run folder: runs/x" in out
    assert (tmp_path / "runs" / "x" / "checkpoint.pt").is_file() and not any(elsewhere.iterdir())
    assert [line for line in err.splitlines() if line.startswith("genzoo: warning:")] == [
        f"genzoo: warning: the working directory was changed from {tmp_path} to {elsewhere} by code that genzoo "
        "does not guard (a model's evaluate, a library's thread); it is put back, so the run's files stay in its "
        "folder"]
