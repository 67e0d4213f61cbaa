"""Process-wide settings a plugin's code could change that the guard on plugin calls did not keep (twenty-sixth
hostile pass on plugins): a CPU-time interval timer (F1: SIGVTALRM or SIGPROF ended a run mid-epoch, no word),
faulthandler's watchdog (F2: fifty lines of stack and exit 1 after a finished run), torch's global optimizer hooks
(F3) and a kernel replacing one of torch's operators (F4: every run computed otherwise, ``eval`` of older runs too,
without a word), a change made by another thread blamed on the call running (F5), torch's compiler settings (F6:
every ``--compile`` run computed otherwise), Python's exception hooks (F7: tracebacks again), and the environment
(M1: ``os.environ.clear()`` had genzoo tell the user to set the ``GENZOO_DATA`` they had set)."""

from __future__ import annotations

import faulthandler
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from reliability_support import installed, site_env

from genzoo import process_settings


def _put_back_after(change) -> list[str]:
    before = process_settings.saved()
    try:
        change()
    finally:
        changed = process_settings.put_back(before)
    return changed


@pytest.mark.parametrize("timer, name", [(signal.ITIMER_VIRTUAL, "SIGVTALRM"), (signal.ITIMER_PROF, "SIGPROF")])
def test_a_cpu_time_timer_a_call_sets_is_named_and_cancelled(timer: int, name: str) -> None:
    changed = _put_back_after(lambda: signal.setitimer(timer, 100))
    assert changed == [f"the {name} timer (none, set to 100 s)"], changed
    assert signal.getitimer(timer) == (0.0, 0.0)


def test_a_watchdog_a_call_arms_is_named_and_cancelled() -> None:
    process_settings.watch_watchdog()
    changed = _put_back_after(lambda: faulthandler.dump_traceback_later(100, exit=True))
    assert changed == ["faulthandler's watchdog (none, set to 100 s)"], changed
    assert process_settings.saved().watchdog is None


def test_a_global_optimizer_hook_a_call_registers_is_named_and_removed() -> None:
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    def zero_grads(optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad.mul_(0.0)

    changed = _put_back_after(lambda: register_optimizer_step_pre_hook(zero_grads))
    assert changed == ["torch's global optimizer hooks (torch.optim.optimizer._global_optimizer_pre_hooks: 0, set "
                       "to 1)"], changed
    weight = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    (weight * 2).sum().backward()
    optimizer.step()
    assert weight.item() == -1.0  # the step was taken with its gradient


def test_a_kernel_replacing_one_of_torchs_operators_is_named_and_removed() -> None:
    libraries = []

    def replace_relu():
        library = torch.library.Library("aten", "IMPL")
        library.impl("relu", lambda x: torch.clamp_min(x, 0.0) * 0.5, "CPU")
        libraries.append(library)  # kept alive, as a plugin's module global keeps it

    changed = _put_back_after(replace_relu)
    assert changed == ["torch's operators (aten::relu for CPU replaced through torch.library)"], changed
    assert torch.relu(torch.tensor([2.0])).item() == 2.0


def test_a_kernel_of_an_operator_defined_from_python_is_left() -> None:
    libraries = []

    def define():
        library = torch.library.Library("genzoo_test28", "DEF")
        library.define("twice(Tensor x) -> Tensor")
        library.impl("twice", lambda x: x * 2, "CPU")
        libraries.append(library)

    assert _put_back_after(define) == []
    assert torch.ops.genzoo_test28.twice(torch.tensor([2.0])).item() == 4.0


def test_pythons_exception_hooks_a_call_replaces_are_named_and_put_back() -> None:
    mine = threading.excepthook

    def replace():
        threading.excepthook = threading.__excepthook__

    changed = _put_back_after(replace)
    name = process_settings.handler_name
    assert changed == [f"threading.excepthook ({name(mine)}, set to {name(threading.__excepthook__)})"], changed
    assert threading.excepthook is mine


def test_a_change_while_a_plugins_thread_runs_names_the_thread_too() -> None:
    from genzoo.sampler import PutBack, defaults_kept, threads_noted

    stop = threading.Event()
    with threads_noted("logger 'upload28' (distribution 'genzoo-upload28')"):
        thread = threading.Thread(target=stop.wait, name="upload28", daemon=True)
        thread.start()
    others = threading.Thread(target=stop.wait, name="torchs28", daemon=True)  # no plugin's: not named
    others.start()
    try:
        with pytest.raises(PutBack) as info, defaults_kept("VAE.loss", "taking a training step"):
            torch.set_default_dtype(torch.float64)
    finally:
        stop.set()
        thread.join()
        others.join()
    assert str(info.value).startswith("VAE.loss (or a thread of logger 'upload28' (distribution 'genzoo-upload28') "
                                      "running beside it: upload28) changed torch's default dtype"), str(info.value)
    with pytest.raises(PutBack) as info, defaults_kept("VAE.loss", "taking a training step"):
        torch.set_default_dtype(torch.float64)
    assert str(info.value).startswith("VAE.loss changed torch's default dtype"), str(info.value)  # ended: not named


IMPORTS = {
    "timer": ("import signal; signal.setitimer(signal.ITIMER_VIRTUAL, 100)", "changed the SIGVTALRM timer"),
    "watchdog": ("import faulthandler; faulthandler.dump_traceback_later(100, exit=True)",
                 "changed faulthandler's watchdog (none, set to 100 s)"),
    "compiler": ("import torch._inductor.config as c; c.fallback_random = True",
                 "changed torch's compiler settings (torch._inductor.config.fallback_random)"),
    "hooks": ("import sys, threading; threading.excepthook = threading.__excepthook__; "
              "sys.unraisablehook = sys.__unraisablehook__", "changed threading.excepthook"),
}


@pytest.mark.parametrize("case", sorted(IMPORTS))
def test_a_plugin_changing_a_setting_at_import_is_named_and_skipped(tmp_path: Path, case: str) -> None:
    effect, said = IMPORTS[case]
    site = installed(tmp_path / "site", "genzoo-setting28", "setting28", effect + "\n")
    done = subprocess.run([sys.executable, "-m", "genzoo", "plugins"], env=site_env(site), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("genzoo: warning: plugin 'setting28' (distribution "
                                                   "'genzoo-setting28') " + said), done.stderr
    assert lines[0].endswith("; it is skipped"), lines[0]


def test_a_plugin_emptying_the_environment_is_named_and_the_environment_put_back(tmp_path: Path) -> None:
    site = installed(tmp_path / "site", "genzoo-environ28", "environ28", "import os; os.environ.clear()\n")
    script = ("import os; from genzoo.plugin_registry import load_plugins; load_plugins(); "
              "print(os.environ.get('GENZOO_DATA'), os.environ.get('OMP_NUM_THREADS'))")
    done = subprocess.run([sys.executable, "-c", script], env=site_env(site, GENZOO_DATA=str(tmp_path / "mine")),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(
        "genzoo: warning: plugin 'environ28' (distribution 'genzoo-environ28') changed the environment variables "), \
        done.stderr
    assert warnings[0].endswith("; they are put back: a plugin's settings come from its config and the user's "
                                "environment, not from changing it"), warnings[0]
    assert done.stdout.split() == [str(tmp_path / "mine"), "1"], done.stdout


def test_a_plugin_setting_torchruns_variables_is_named_and_they_are_removed(tmp_path: Path) -> None:
    """Before: ``genzoo train vae`` waited two minutes in silence for ranks that never came (twenty-fifth pass,
    plugins M10)."""
    site = installed(tmp_path / "site", "genzoo-rank28", "rank28",
                     "import os; os.environ.update(RANK='0', WORLD_SIZE='2', MY_LIBRARY_SETTING='1')\n")
    script = ("import os; from genzoo.plugin_registry import load_plugins; load_plugins(); "
              "print(os.environ.get('RANK'), os.environ.get('WORLD_SIZE'), os.environ.get('MY_LIBRARY_SETTING'))")
    done = subprocess.run([sys.executable, "-c", script], env=site_env(site), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0].startswith(
        "genzoo: warning: plugin 'rank28' (distribution 'genzoo-rank28') changed the environment variables RANK, "
        "WORLD_SIZE while being imported"), done.stderr
    assert done.stdout.split() == ["None", "None", "1"], done.stdout  # a library's own setting is left
