"""Plugins F9 of the twenty-fourth hostile pass, fixed by the twenty-sixth look: a plugin's ``GenzooError`` whose
``__str__`` raises. genzoo printed every ``GenzooError`` with ``str()``: a 46- to 52-line traceback from its own
``Error:`` line, in ``train`` (a model's ``loss`` raising it) and in every command (a ``register_*`` hook raising it).
Now the plugin is named with what it raised, in one line. Each test failed before its fix.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import assert_one_line_error, data_root, run_main  # noqa: F401 - data_root is a fixture

from genzoo import hookimpl
from genzoo.errors import GenzooError


class Unshowable(GenzooError):
    def __str__(self) -> str:
        raise RuntimeError("no str")


class UnshowableVAE(VAE):
    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise Unshowable("x")


def test_a_loss_raising_an_unshowable_genzoo_error_is_one_line(genzoo_register, data_root, tmp_path, capsys) -> None:  # noqa: F811
    @hookimpl
    def register_models(register: Any) -> None:
        register("unshowable26", UnshowableVAE)

    genzoo_register(types.SimpleNamespace(register_models=register_models), "unshowable26", "test-unshowable26")
    code, _, err = run_main(["train", "unshowable26", "--epochs", "1", "--train-limit", "64", "--test-limit", "20",
                             "--batch-size", "16", "--device", "cpu", "--data-root", str(data_root), "--out",
                             str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "UnshowableVAE.loss raised Unshowable: (its message cannot be shown: "
                                     "RuntimeError)")


def test_a_hook_raising_an_unshowable_genzoo_error_is_one_line(genzoo_register, capsys) -> None:
    @hookimpl
    def register_models(register: Any) -> None:
        raise Unshowable("licence server unreachable")

    genzoo_register(types.SimpleNamespace(register_models=register_models), "unshowable26", "test-unshowable26")
    code, _, err = run_main(["plugins"], capsys)
    assert_one_line_error(code, err, "plugin 'unshowable26' (distribution 'test-unshowable26') failed while "
                                     "registering models: Unshowable: (its message cannot be shown: RuntimeError)")
