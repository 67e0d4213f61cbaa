"""The command line under a hostile environment: closed stdout, early signals, unencodable paths, huge counts.

Each case was found by a hostile pass (issue 10) as a traceback or a command that ran
for ever; each must be one line on stderr, and no work is lost.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    data_root,
    one_thread,
    run_main,
    script_command,
    subprocess_env,
)
from test_reliability_crash import train_args

from genzoo import hookimpl
from genzoo.errors import GenzooError
from genzoo.evaluation.run_evaluation import MAX_FID_SAMPLES, MAX_IWAE_K, EvalConfig
from genzoo.evaluation.weights import INCEPTION_FILE, inception_extractor

CLOSED_STDOUT = ("Error: could not write to standard output: standard output is closed; only the printing "
                 "failed (the command's work is done and its files are written)")


def run_with_stdout_closed(*args: str) -> subprocess.CompletedProcess[str]:
    """``genzoo ARGS >&-``: the child starts with file descriptor 1 closed, so ``sys.stdout`` is None."""
    return subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", *script_command(*args)], stderr=subprocess.PIPE,
                          text=True, env=subprocess_env(), timeout=300)


@pytest.mark.parametrize("args", [["plugins"], ["--version"], ["--help"]])
def test_a_closed_stdout_is_one_line_not_a_traceback(args):
    """``genzoo plugins >&-`` used to end in ``AttributeError: 'NoneType' object has no attribute 'write'``."""
    done = run_with_stdout_closed(*args)
    assert (done.returncode, done.stderr.strip()) == (1, CLOSED_STDOUT)


def test_a_run_trained_with_stdout_closed_is_kept_and_only_the_printing_fails(data_root, tmp_path):
    from genzoo.checkpoint import load_checkpoint
    from genzoo.run_folder import read_metrics

    run = tmp_path / "run"
    done = run_with_stdout_closed(*train_args(data_root, run))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == CLOSED_STDOUT
    assert "Traceback" not in done.stderr
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert load_checkpoint(run)["position"]["epoch"] == 2


def test_a_stdout_whose_descriptor_was_closed_under_it_is_the_same_one_line(monkeypatch, capsys):
    """Writes that fail with EBADF (the descriptor closed after Python opened it) say the same as a closed stdout."""
    from genzoo.cli import main

    read, write = os.pipe()
    os.close(read)
    stream = open(write, "w", closefd=False)  # noqa: SIM115 - closed below, where its failing flush is expected
    os.close(write)
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        with pytest.raises(SystemExit) as info:
            main(["--version"])
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            stream.close()
    assert (info.value.code, capsys.readouterr().err.strip()) == (1, CLOSED_STDOUT)


def torch_is_loading(pid: int) -> bool:
    """Whether process ``pid`` has mapped torch's library: it is past Python's start-up, inside genzoo's imports."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the imports start")
@pytest.mark.parametrize(("signum", "local_rank", "said"), [(signal.SIGINT, None, "Aborted."),
                                                           (signal.SIGTERM, None, "Aborted."),
                                                           (signal.SIGTERM, "1", "")])
def test_a_stop_signal_while_genzoo_imports_is_aborted_not_a_traceback(signum, local_rank, said):
    """Ctrl-C in the first seconds (torch importing) used to print a KeyboardInterrupt traceback; SIGTERM died silently.

    A launch's rank other than local rank 0 ends without a word: the launcher stops every
    rank when one fails, and a rank that had not failed itself added an ``Aborted.`` line.
    """
    env = subprocess_env(**({"LOCAL_RANK": local_rank} if local_rank is not None else {}))
    process = subprocess.Popen([sys.executable, "-m", "genzoo", "plugins"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60  # a safety net for a hung test, not a measurement
    while not torch_is_loading(process.pid) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert (process.returncode, err.strip()) == (128 + signum, said)


class UnicodePlugin:
    """A plugin registered under a name that an ASCII terminal cannot show."""

    @hookimpl
    def register_models(self, register):
        from genzoo_plugins.vae import VAE

        register("unicode-vae", VAE)


def test_output_an_ascii_terminal_cannot_encode_is_escaped_not_a_traceback(genzoo_register, monkeypatch):
    """``PYTHONIOENCODING=ascii genzoo eval runs/ü2`` wrote eval.json, then crashed with UnicodeEncodeError."""
    from genzoo.cli import main

    genzoo_register(UnicodePlugin(), "pl\u00fcgin")
    raw = io.BytesIO()
    ascii_stdout = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", ascii_stdout)
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit) as info:
        main(["plugins"])
    ascii_stdout.flush()
    assert info.value.code == 0
    assert "pl\\xfcgin" in raw.getvalue().decode("ascii")


@pytest.mark.parametrize("option, limit", [("--iwae-k", MAX_IWAE_K), ("--fid-samples", MAX_FID_SAMPLES)])
def test_counts_that_would_run_for_days_are_refused_in_one_line(option, limit, tmp_path, capsys):
    """``--iwae-k 10**20`` and ``--fid-samples 10**20`` were accepted and ran for ever; click refuses them now, at
    once (nineteenth hostile pass, files M1), and the config still refuses them from a file."""
    code, _, err = run_main(["eval", str(tmp_path), option, str(limit + 1)], capsys)
    assert code == 2 and err.strip().startswith(f"Error: Invalid value for '{option}': {limit + 1} is not in the "
                                                "range ") and err.strip().endswith(f"<=x<={limit}.")
    with pytest.raises(GenzooError, match=f"{limit:,}"):
        EvalConfig(**{option[2:].replace("-", "_"): limit + 1})  # compare.json's saved settings pass here too
    EvalConfig(**{option[2:].replace("-", "_"): limit})  # the bound itself is allowed


WEIGHTS = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


@pytest.mark.skipif(not WEIGHTS.is_file(), reason="needs the Inception weights")
def test_inception_weights_holding_nan_are_blamed_not_the_cache(tmp_path):
    """NaN weights used to pass every check and end in a message about the FID cache."""
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    bad = tmp_path / "nan-inception.pth"
    torch.save(state, bad)
    with pytest.raises(GenzooError, match=f"{bad}.*{name}.*not finite"):
        inception_extractor(bad, "2048")


@pytest.mark.skipif(not WEIGHTS.is_file(), reason="needs the Inception weights")
def test_a_nan_classifier_layer_does_not_stop_fid_features():
    """The shared offline weights have a NaN ``fc`` (the softmax layer): FID's pool features never use it."""
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert not bool(torch.isfinite(state["fc.weight"]).all())  # the file this guards
    with pytest.raises(GenzooError, match="fc.weight.*not finite"):
        inception_extractor(WEIGHTS, "logits_unbiased")
    features = inception_extractor(WEIGHTS, "2048")(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))[0]
    assert features.shape == (2, 2048) and bool(torch.isfinite(features).all())
