"""A stop signal that comes as a command's end is being handled: the CI run of 8107498 failed once on it.

A --nproc launch whose second rank failed stopped rank 0 with SIGTERM just as rank 0 reported its lost peer; the
signal was raised while ``genzoo.cli.main`` put its signal handlers back, outside every handler, and rank 0 printed
a ``genzoo.trainer.Terminated`` traceback.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from reliability_support import subprocess_env

# Sends this process SIGTERM at the moment the test names, then runs ``genzoo eval`` of a folder that is not there.
SCRIPT = textwrap.dedent('''
    import os, signal, sys
    import click
    from genzoo import cli

    where = sys.argv[1]
    real_echo, real_signal = click.echo, signal.signal
    sent = []

    def send() -> None:
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    def echo(message=None, *args, **kwargs):
        real_echo(message, *args, **kwargs)
        if where == "report" and isinstance(message, str) and message.startswith("Error:"):
            send()

    def put_back(signum, handler):
        if where == "put-back" and not isinstance(handler, cli.StopAtOnce):
            send()
        return real_signal(signum, handler)

    click.echo, signal.signal = echo, put_back
    sys.argv = ["genzoo", "eval", sys.argv[2]]
    cli.main()
''')


def _run(where: str, tmp_path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, where, str(tmp_path / "no-such-run")],
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)


def test_a_stop_signal_during_the_error_report_ends_in_its_exit_code_not_a_traceback(tmp_path) -> None:
    """Before: ``genzoo.trainer.Terminated`` traceback, exit 1."""
    done = _run("report", tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[0].startswith("Error: ") and "no-such-run" in done.stderr, done.stderr
    assert done.returncode == 143, done.stderr


def test_a_stop_signal_while_the_handlers_are_put_back_leaves_the_commands_outcome(tmp_path) -> None:
    """Before: the same traceback, raised by ``signal.signal`` in ``main``'s ``finally`` (what rank 0 printed)."""
    done = _run("put-back", tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("Error: "), done.stderr
    assert done.returncode != 0 and done.returncode != 143, done.stderr
