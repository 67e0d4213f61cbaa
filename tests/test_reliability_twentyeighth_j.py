"""Minor findings of the twenty-sixth hostile pass: ``genzoo`` with no command printed its help as one ``Error:`` line
of 900 characters with ``\\n`` in it (files M2), and codes of the wrong width from a model's ``encode`` were blamed
on its ``decode`` (plugins M2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from reliability_support import assert_one_line_error, data_root, register_model, run_main, subprocess_env  # noqa: F401

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "4"]


@pytest.mark.parametrize("args, usage", [([], "Usage: genzoo [OPTIONS] COMMAND [ARGS]..."),
                                         (["data"], "Usage: genzoo data [OPTIONS] COMMAND [ARGS]...")])
def test_a_group_without_its_command_shows_its_help_not_an_error_line(args: list[str], usage: str) -> None:
    done = subprocess.run([sys.executable, "-m", "genzoo", *args], env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == usage and "Commands:" in lines and not done.stderr.startswith("Error"), done.stderr


def test_codes_of_another_width_than_the_latent_name_encode_not_decode(genzoo_register, capsys, data_root,
                                                                       tmp_path: Path) -> None:  # noqa: F811
    """Before: ``Error: NarrowVAE.decode raised RuntimeError: mat1 and mat2 shapes cannot be multiplied``."""
    from genzoo_plugins.vae.model import VAE

    class NarrowVAE(VAE):
        narrow = False

        def encode(self, x):
            codes = VAE.encode(self, x)
            return codes[:, :1] if NarrowVAE.narrow else codes

    register_model(genzoo_register, "narrow28", NarrowVAE)
    run = tmp_path / "run"
    code, _, err = run_main(["train", "narrow28", *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 0, err
    NarrowVAE.narrow = True  # a later version of the plugin
    code, _, err = run_main(["latent", str(run), "--out", str(tmp_path / "latent"), "--test-limit", "20",
                             "--data-root", str(data_root)], capsys)
    assert_one_line_error(code, err, "NarrowVAE.encode gave codes 1 wide for a latent of 4")
