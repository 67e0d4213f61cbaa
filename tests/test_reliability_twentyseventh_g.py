"""Plugins F9 of the twenty-fifth hostile pass: an entry point naming an object (not a module) that pluggy cannot
read. pluggy walks ``dir(plugin)`` and reads each attribute to find the hooks: an object whose ``__dir__`` raised was a
41-line traceback in every command; one whose ``__getattribute__`` raised ``SystemExit(3)`` ended every command with
exit 3, no word. Each is one warning now, the plugin skipped, the command done."""

from __future__ import annotations

import subprocess
import sys

import pytest
from reliability_support import site_env

SOURCE = '''
class NoDir:
    def __dir__(self):
        raise RuntimeError("no dir for you")

    def __getattr__(self, name):
        raise RuntimeError("no attr " + name)


class Exits:
    def __getattribute__(self, name):
        raise SystemExit(3)


NO_DIR = NoDir()
EXITS = Exits()
'''


@pytest.mark.parametrize("target, raised", [("NO_DIR", "RuntimeError: no dir for you"), ("EXITS", "SystemExit: 3")])
def test_an_entry_point_object_pluggy_cannot_read_is_one_warning(tmp_path, target, raised) -> None:
    site = tmp_path / "site"
    info = site / "oddobj27-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: genzoo-oddobj27\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[genzoo]\noddobj27 = oddobj27:{target}\n")
    (site / "oddobj27.py").write_text(SOURCE)
    done = subprocess.run([sys.executable, "-m", "genzoo", "list"], env=site_env(site),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.splitlines() == [
        f"genzoo: warning: plugin 'oddobj27' from 'genzoo-oddobj27' failed to register and is skipped: {raised}"
    ], done.stderr[-3000:]
    assert "vae" in done.stdout


@pytest.mark.parametrize("define, kind", [
    ("async def register_models(register):\n    register('never27', object)\n", "an async function"),
    ("def register_models(register):\n    register('never27', object)\n    yield\n", "a generator"),
    ("async def register_models(register):\n    register('never27', object)\n    yield\n", "an async function"),
])
def test_a_register_hook_whose_body_never_runs_is_one_warning(genzoo_register, capsys, define, kind) -> None:
    """Plugins M9 of the twenty-fifth pass: an ``async def`` or generator hook registered nothing, no word."""
    import types
    import warnings

    from reliability_support import run_main

    from genzoo import hookimpl

    namespace: dict[str, object] = {}
    exec(define, namespace)  # noqa: S102 - the hook as its plugin would define it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a coroutine never awaited: Python's own RuntimeWarning
        genzoo_register(types.SimpleNamespace(register_models=hookimpl(namespace["register_models"])), "never27",
                        "test-never27")
        code, _, err = run_main(["list"], capsys)
    assert code == 0
    assert ("genzoo: warning: plugin 'never27' (distribution 'test-never27') failed while registering models and is "
            f"skipped: TypeError: its register_models hook is {kind}, whose body never runs when called: make it a "
            "plain function") in err, err
