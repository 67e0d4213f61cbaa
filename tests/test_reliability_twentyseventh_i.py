"""Plugins F6 of the twenty-fifth hostile pass: ``sys.stdout.reconfigure(encoding="ascii")`` at a plugin's import
made ``genzoo list`` a 44-line ``UnicodeEncodeError`` traceback from genzoo's own stdout wrapper (the streams were kept
by identity, and a reconfigured one is the same object)."""

from __future__ import annotations

import subprocess
import sys

from reliability_support import installed, site_env

PLUGIN = '''
import sys

sys.stdout.reconfigure(encoding="ascii", errors="strict")
sys.stderr.reconfigure(encoding="ascii", errors="strict")
'''


def test_a_stream_reconfigured_at_import_is_put_back_and_the_plugin_named(tmp_path) -> None:
    site = installed(tmp_path / "site", "genzoo-ascii27", "ascii27", PLUGIN)
    done = subprocess.run([sys.executable, "-m", "genzoo", "list"], capture_output=True, timeout=120,
                          env=site_env(site, PYTHONIOENCODING="utf-8"))
    err = done.stderr.decode()
    assert done.returncode == 0, err[-3000:]
    assert err.splitlines() == [
        "genzoo: warning: plugin 'ascii27' (distribution 'genzoo-ascii27') changed sys.stdout's encoding "
        "(utf-8/backslashreplace, set to ascii/strict) and sys.stderr's encoding (utf-8/backslashreplace, set to "
        "ascii/strict) while being imported; they are put back (the plugin contract: importing a plugin and running "
        "its register_* hooks leave torch's defaults and the process's settings alone); it is skipped"], err
    assert "…".encode() in done.stdout  # (rich's ellipsis, which ASCII could not write)
