"""Process settings a plugin changes at import that genzoo did not keep (twenty-fourth hostile pass, plugins M2 and
M4): the umask (every file after it writable by anyone) and SIGPIPE's handler (``| head`` killed genzoo without a
word, exit 141)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

from reliability_support import data_root, installed, site_env  # noqa: F401 - data_root is a fixture

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2"]

PLUGIN = '''
import os
import signal

from genzoo import hookimpl

{effect}


@hookimpl
def register_models(register):
    pass
'''


def test_a_plugin_that_opens_the_umask_at_import_is_named_and_the_umask_put_back(data_root, tmp_path) -> None:  # noqa: F811
    """Before: no word, and the run folder was made ``rwxrwxrwx``."""
    site = installed(tmp_path / "site", "genzoo-openmask27", "openmask27", PLUGIN.format(effect="os.umask(0)"))
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "genzoo", "train", "vae", *TINY, "--data-root", str(data_root),
                           "--out", str(run)], env=site_env(site), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    warnings = [line for line in done.stderr.splitlines() if line.startswith("genzoo: warning:")]
    assert warnings == ["genzoo: warning: plugin 'openmask27' (distribution 'genzoo-openmask27') set the process umask "
                        "to 000 while being imported; it is put back to 022, so that genzoo's files stay as private "
                        "as the user's umask asks: a plugin passes a mode to the files it makes"], done.stderr
    for path in (run, run / "checkpoint.pt", run / "metrics.jsonl"):
        assert not stat.S_IMODE(path.stat().st_mode) & 0o022, (path, oct(path.stat().st_mode))


def test_a_plugin_that_lets_sigpipe_kill_is_skipped_and_a_closed_pipe_ends_genzoo_quietly(tmp_path) -> None:
    """Before: the plugin loaded, and ``genzoo list`` into a pipe its reader had closed died of SIGPIPE (-13)."""
    site = installed(tmp_path / "site", "genzoo-pipekill27", "pipekill27",
                     PLUGIN.format(effect="signal.signal(signal.SIGPIPE, signal.SIG_DFL)"))
    read, write = os.pipe()
    os.close(read)  # the reader left before genzoo wrote a line
    try:
        done = subprocess.run([sys.executable, "-m", "genzoo", "list"], env=site_env(site), stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert done.stderr.splitlines() == [
        "genzoo: warning: plugin 'pipekill27' (distribution 'genzoo-pipekill27') changed the SIGPIPE handler "
        "(SIG_IGN, set to SIG_DFL) while being imported; they are put back (the plugin contract: importing a plugin "
        "and running its register_* hooks leave torch's defaults and the process's settings alone); it is skipped"
    ], done.stderr
    assert signal.getsignal(signal.SIGPIPE) is signal.SIG_IGN  # (pytest's own: Python's)


def test_a_capability_declared_as_a_property_or_a_non_bool_is_refused_at_registration(genzoo_register,
                                                                                       capsys) -> None:
    """Plugins M6: ``can_encode`` as a property that raised was blamed on the built-in ``normal`` sampler."""
    from genzoo_plugins.vae.model import VAE
    from reliability_support import register_model, run_main

    def refused(name: str, value: object) -> str:
        capsys.readouterr()
        model = type("OddCapability", (VAE,), {"can_encode": value})
        register_model(genzoo_register, name, model)
        code, _, err = run_main(["plugins"], capsys)
        assert code == 0
        return err

    err = refused("oddcap27", property(lambda self: 1 / 0))
    assert ("failed while registering models and is skipped: TypeError: model 'oddcap27' declares can_encode as a "
            "property, not True or False on its class") in err, err
    assert "model 'intcap27' declares can_encode as 1, not True or False" in refused("intcap27", 1)


def test_loss_names_that_repeat_a_name_are_refused_before_any_folder(genzoo_register, data_root, tmp_path,  # noqa: F811
                                                                     capsys) -> None:
    """Plugins M7 of the twenty-fifth pass: ``loss_names = ("nelbo", "nelbo")`` trained to exit 0, no word."""
    from genzoo_plugins.vae.model import VAE
    from reliability_support import assert_one_line_error, register_model, run_main

    register_model(genzoo_register, "twicenamed27", type("TwiceNamed", (VAE,), {"loss_names": ("nelbo", "nelbo")}))
    code, _, err = run_main(["train", "twicenamed27", "--epochs", "1", "--train-limit", "40", "--test-limit", "20",
                             "--batch-size", "20", "--device", "cpu", "--data-root", str(data_root), "--out",
                             str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "TwiceNamed.loss_names names 'nelbo' twice: each per-image loss needs a name of "
                                     "its own")
    assert not (tmp_path / "run").exists()


def test_a_description_with_an_escape_sequence_or_a_newline_is_one_escaped_line_in_list(genzoo_register,
                                                                                         capsys) -> None:
    """Plugins M8: a dataset's ``description`` ``"\\x1b[31mred"`` reached the terminal raw in ``genzoo list``."""
    import types

    import torch
    from reliability_support import run_main

    from genzoo import Dataset, TensorSplit, hookimpl

    class Red(Dataset):
        name = "red27"
        sample_shape = (1, 8, 8)
        description = "\x1b[31mred\nsecond line"

        def load(self, split: str) -> TensorSplit:
            return TensorSplit(torch.rand(10, 1, 8, 8))

    @hookimpl
    def register_datasets(register) -> None:
        register("red27", Red)

    genzoo_register(types.SimpleNamespace(register_datasets=register_datasets), "red27", "test-red27")
    code, out, err = run_main(["list"], capsys)
    assert code == 0, err
    assert "\x1b" not in out and "\\x1b" in out, out  # escaped, as genzoo's error lines escape it
