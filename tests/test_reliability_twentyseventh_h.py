"""Plugins F7 and F8 of the twenty-fifth hostile pass: signal state a plugin changed at import. F7: SIGINT and
SIGTERM blocked with ``pthread_sigmask``: Ctrl-C and SIGTERM never reached genzoo's handlers, and the run trained to
its end, exit 0. F8: a ``signal.alarm`` left set (a download timeout never cancelled): training died by SIGALRM
mid-epoch, exit 142, no word, the steps since the last checkpoint lost."""

from __future__ import annotations

import subprocess
import sys

from reliability_support import data_root, installed, site_env  # noqa: F401 - data_root is a fixture

PLUGIN = '''
import signal

from genzoo import hookimpl

{effect}


@hookimpl
def register_models(register):
    pass
'''

CONTRACT = ("they are put back (the plugin contract: importing a plugin and running its register_* hooks leave "
            "torch's defaults and the process's settings alone); it is skipped")


def _train(data_root, tmp_path, effect: str) -> subprocess.CompletedProcess[str]:
    site = installed(tmp_path / "site", "genzoo-sigstate27", "sigstate27", PLUGIN.format(effect=effect))
    return subprocess.run([sys.executable, "-m", "genzoo", "train", "vae", "--epochs", "2", "--batch-size", "20",
                           "--train-limit", "200", "--test-limit", "20", "--latent", "2", "--device", "cpu",
                           "--data-root", str(data_root), "--out", str(tmp_path / "run")],
                          env=site_env(site), capture_output=True, text=True, timeout=300)


def _warnings(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("genzoo: warning:")]


def test_stop_signals_blocked_at_import_are_unblocked_and_named(data_root, tmp_path) -> None:  # noqa: F811
    done = _train(data_root, tmp_path, "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _warnings(done) == ["genzoo: warning: plugin 'sigstate27' (distribution 'genzoo-sigstate27') changed the "
                               f"signal mask (SIGINT, SIGTERM blocked) while being imported; {CONTRACT}"], done.stderr


def test_an_alarm_set_at_import_is_cancelled_and_named(data_root, tmp_path) -> None:  # noqa: F811
    """Before: exit -14 (SIGALRM) within the first epoch."""
    done = _train(data_root, tmp_path, "signal.alarm(1)")
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    assert len(_warnings(done)) == 1 and _warnings(done)[0].startswith(
        "genzoo: warning: plugin 'sigstate27' (distribution 'genzoo-sigstate27') changed the SIGALRM timer (none, "
        "set to "), done.stderr
    assert (tmp_path / "run" / "samples.png").is_file()
