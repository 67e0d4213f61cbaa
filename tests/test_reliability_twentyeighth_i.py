"""More of the twenty-sixth hostile pass on plugins: anomaly detection left on at import (F15: a diverging run of the
built-in ``vae`` was a 35-line torch traceback blaming ``VAE.loss``), file descriptors 1 and 2 redirected by a
logger (F8: every later line of genzoo went to the plugin's file), a model's own ``--debug`` option (F11: it turned
genzoo's tracebacks on), a loss plugin's fault said as the built-in model's (F17), and a plugin importing matplotlib
(F12: a FIFO named ``matplotlibrc`` in the current folder hung every command)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from reliability_support import assert_one_line_error, data_root, installed, register_model, run_main, site_env  # noqa: F401

from genzoo import Loss, hookimpl, process_settings

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2"]


def test_anomaly_detection_a_call_turns_on_is_named_and_turned_off() -> None:
    before = process_settings.saved()
    torch.autograd.set_detect_anomaly(True)
    changed = process_settings.put_back(before)
    assert changed == ["torch's anomaly detection (disabled, set to enabled)"], changed
    assert not torch.is_anomaly_enabled()


def test_a_redirected_standard_error_descriptor_is_named_and_put_back(tmp_path: Path) -> None:
    script = ("import os; from genzoo import process_settings as p; before = p.saved(); "
              f"f = open({str(tmp_path / 'captured')!r}, 'wb'); os.dup2(f.fileno(), 2); "
              "print(p.put_back(before)); os.write(2, b'still mine')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['file descriptor 2, standard error (redirected)']", done.stdout
    assert done.stderr == "still mine"
    assert (tmp_path / "captured").read_bytes() == b""


def test_a_models_own_debug_option_is_its_own_not_genzoos(genzoo_register, capsys, data_root,
                                                          tmp_path: Path) -> None:  # noqa: F811
    """Before: a diverging run with the model's ``--debug`` was a 40-line traceback."""
    from genzoo_plugins.vae.config import VAEConfig
    from genzoo_plugins.vae.model import VAE

    config = dataclasses.make_dataclass(
        "DebugConfig", [("debug", bool, dataclasses.field(default=False, metadata={"help": "x"}))], bases=(VAEConfig,))
    register_model(genzoo_register, "debug28", type("DebugVAE", (VAE,), {"Config": config}))
    out = tmp_path / "run"
    code, _, err = run_main(["train", "debug28", *TINY, "--lr", "1e6", "--data-root", str(data_root), "--debug",
                             "--out", str(out)], capsys)
    assert_one_line_error(code, err, "training diverged")
    assert '"debug": true' in (out / "config.json").read_text()


class FailingBCE(Loss):
    name = "failing28"
    kind = "reconstruction"
    description = "a bce that fails"
    negative_log_likelihood = True

    def __init__(self, how: str) -> None:
        self.how = how

    def __call__(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.how == "raise":
            raise ValueError("loss plugin bug")
        return F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="sum")  # not one per image


def _with_loss(genzoo_register, how: str) -> None:
    @hookimpl
    def register_losses(register) -> None:
        register("failing28", FailingBCE(how))

    genzoo_register(types.SimpleNamespace(register_losses=register_losses), "failing28", "genzoo-failing28")


def test_a_loss_plugins_fault_names_the_loss_plugin(genzoo_register, capsys, data_root, tmp_path: Path) -> None:  # noqa: F811
    """Before: ``Error: VAE.loss raised ValueError: loss plugin bug``, the loss plugin never named."""
    _with_loss(genzoo_register, "raise")
    code, _, err = run_main(["train", "vae", *TINY, "--loss", "failing28", "--data-root", str(data_root), "--out",
                             str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "VAE.loss (computed with loss 'failing28' from plugin 'failing28' (distribution "
                                     "'genzoo-failing28')) raised ValueError: loss plugin bug")


def test_a_loss_plugins_value_of_a_wrong_shape_names_the_loss_plugin(genzoo_register, capsys, data_root,
                                                                      tmp_path: Path) -> None:  # noqa: F811
    _with_loss(genzoo_register, "shape")
    code, _, err = run_main(["train", "vae", *TINY, "--loss", "failing28", "--data-root", str(data_root), "--out",
                             str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "VAE.loss (computed with loss 'failing28' from plugin 'failing28' (distribution "
                                     "'genzoo-failing28')) returned 'bce' of shape (), not one value per image")


def test_a_plugin_importing_matplotlib_does_not_read_a_planted_rc_file(tmp_path: Path) -> None:
    """Before: ``genzoo list`` hung on the FIFO until killed."""
    site = installed(tmp_path / "site", "genzoo-drawing28", "drawing28", "import matplotlib\n")
    here = tmp_path / "shared"
    here.mkdir()
    os.mkfifo(here / "matplotlibrc")
    done = subprocess.run([sys.executable, "-m", "genzoo", "list"], env=site_env(site), cwd=here,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "vae" in done.stdout and not done.stderr, done.stderr
