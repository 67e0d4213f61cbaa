"""A stop signal while a C extension initialises (matplotlib's ``ft2font``, imported when ``genzoo export`` first
loads the pictures module) came out as ``ImportError: initialization failed`` chained from genzoo's ``Terminated``:
a traceback and exit 1, not ``Aborted.`` and 143 (twenty-sixth hostile pass, files F2)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from reliability_support import subprocess_env

# A command whose import of a module fails as pybind11's initialisation fails on a SIGTERM raised inside it.
SCRIPT = textwrap.dedent('''
    import os, signal, sys
    from genzoo import cli

    class Finder:
        def find_spec(self, name, path=None, target=None):
            if name == "genzoo.sharing":
                try:
                    os.kill(os.getpid(), signal.SIGTERM)  # genzoo's stop handler raises here
                    for _ in range(1000):
                        pass
                except BaseException as exc:
                    raise ImportError("initialization failed") from exc
                raise ImportError("initialization failed")
            return None

    sys.meta_path.insert(0, Finder())
    sys.argv = ["genzoo", "export", sys.argv[1], "--format", "safetensors"]
    cli.main()
''')


def test_a_stop_signal_inside_an_import_is_a_stop_not_a_traceback(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run")], env=subprocess_env(),
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines() == ["Aborted."], done.stderr
    assert done.returncode == 143, (done.returncode, done.stderr)


def test_more_processes_than_the_machine_can_run_is_one_line_before_any_starts(capsys, tmp_path) -> None:
    """Files F3. Before: ``--nproc 1000`` passed every check, and the launcher started ranks until memory ran out."""
    from reliability_support import assert_one_line_error, run_main

    from genzoo.distributed import most_processes

    out = tmp_path / "run"
    too_many = most_processes() + 1
    code, _, err = run_main(["train", "vae", "--nproc", str(too_many), "--epochs", "1", "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"--nproc {too_many} is more training processes than this machine can run",
                          f"at most {too_many - 1} here")
    assert not out.exists()


def test_a_stop_signal_while_matplotlib_initialises_is_taken_after_it() -> None:
    """Files F4: Ctrl-C or SIGTERM inside ``ft2font``'s initialisation was a ``Fatal Python error``, exit 134 (no
    Python test can land a signal there; this holds that none is handled inside the block, and each after it)."""
    import os
    import signal

    from genzoo.matplotlib_import import stops_held

    seen: list[int] = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: seen.append(signum))
    try:
        with stops_held():
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(10_000):  # time for a handler to run, were the signal not held
                pass
            assert seen == []
        assert seen == [signal.SIGHUP]
    finally:
        signal.signal(signal.SIGHUP, previous)
