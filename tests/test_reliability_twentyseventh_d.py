"""Plugins F1, F2 and F5 of the twenty-fifth hostile pass: process-wide state a plugin changed at import that no
guard kept. F1: a global module forward hook (``register_module_forward_hook``) halved every module's output in every run
of every model and in ``eval`` of older runs, exit 0, no word. F2: ``sys.setrecursionlimit(150)`` failed the next
command of the built-in vae in a 41-line ``RecursionError`` traceback from genzoo's own imports. F5: an entered
``TorchFunctionMode`` (halving ``linear``) or default saved-tensors hooks (zero gradients) did as F1 did."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root is a fixture
    data_root,
    installed,
    register_model,
    run_main,
    site_env,
    subprocess_env,
)

from genzoo import process_settings
from genzoo.run_folder import read_metrics

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2", "--seed", "5"]

EFFECTS = {
    "hook": "torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o * 0.5 "
            "if isinstance(o, torch.Tensor) else o)",
    "recursion": "sys.setrecursionlimit(150)",
    "mode": "class Halves(TorchFunctionMode):\n"
            "    def __torch_function__(self, func, types, args=(), kwargs=None):\n"
            "        out = func(*args, **(kwargs or {}))\n"
            "        return out * 0.5 if func is torch.nn.functional.linear else out\n"
            "Halves().__enter__()",
    "saved": "torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t * 0).__enter__()",
}
CHANGED = {
    "hook": "torch's global module hooks (torch.nn.modules.module._global_forward_hooks: 0, set to 1)",
    "recursion": "Python's recursion limit ({limit}, set to 150)",
    "mode": "torch's function modes (0 entered, set to 1: Halves)",
    "saved": "torch's default saved-tensors hooks (none, set to pack <lambda>)",
}

#: A fresh interpreter's recursion limit (this one's may have been raised: inductor raises it to compile).
FRESH_LIMIT = int(subprocess.run([sys.executable, "-c", "import sys; print(sys.getrecursionlimit())"],
                                 capture_output=True, text=True, check=True).stdout)

PLUGIN = '''
import sys

import torch
from torch.overrides import TorchFunctionMode

from genzoo import hookimpl

{effect}


@hookimpl
def register_models(register):
    pass
'''


@pytest.fixture
def settings_kept():
    before = process_settings.saved()
    yield
    process_settings.put_back(before)


def _train(data_root: Path, out: Path, site: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genzoo", "train", "vae", *TINY, "--data-root", str(data_root),
                           "--out", str(out)], env=site_env(site) if site else subprocess_env(), capture_output=True,
                          text=True, timeout=300)


def _measured(run: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in r.items() if k.startswith(("train_", "test_")) and "second" not in k
             and not k.endswith("_per_s")} for r in read_metrics(run)]


@pytest.mark.parametrize("effect", sorted(EFFECTS))
def test_a_plugin_that_changes_them_at_import_is_skipped_and_the_run_is_as_without_it(
        data_root, tmp_path, effect) -> None:  # noqa: F811
    alone = _train(data_root, tmp_path / "alone")
    assert alone.returncode == 0, alone.stderr[-3000:]
    site = installed(tmp_path / "site", f"genzoo-side27{effect}", f"side27{effect}",
                     PLUGIN.format(effect=EFFECTS[effect]))
    done = _train(data_root, tmp_path / "with", site)
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in done.stderr.splitlines() if line.startswith("genzoo: warning:")]
    assert warnings == [
        f"genzoo: warning: plugin 'side27{effect}' (distribution 'genzoo-side27{effect}') changed "
        f"{CHANGED[effect].format(limit=FRESH_LIMIT)} while being imported; they are put back (the "
        "plugin contract: importing a plugin and running its register_* hooks leave torch's defaults and the "
        "process's settings alone); it is skipped"], done.stderr[-3000:]
    assert _measured(tmp_path / "with") == _measured(tmp_path / "alone")


class HookingVAE(VAE):
    """Its ``loss`` registers a global forward hook on its first call, and leaves it."""

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not torch.nn.modules.module._global_forward_hooks:
            torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o)
        return super().loss(x)


def test_a_models_step_that_leaves_a_global_hook_is_named(genzoo_register, settings_kept, data_root, tmp_path,  # noqa: F811
                                                          capsys) -> None:
    register_model(genzoo_register, "hooking27", HookingVAE)
    code, _, err = run_main(["train", "hooking27", *TINY, "--data-root", str(data_root), "--out",
                             str(tmp_path / "run")], capsys)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("Error: HookingVAE.loss changed torch's global module hooks "
                                                   "(torch.nn.modules.module._global_forward_hooks: 0, set to 1)"), err
    assert not torch.nn.modules.module._global_forward_hooks
