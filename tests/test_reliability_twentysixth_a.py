"""Found by the twenty-third hostile pass on plugins (F3, F4), fixed by the twenty-sixth look: ``--nproc`` launches.

F3: ranks other than 0 draw their own noise, and only torch's streams were made rank 0's before ``after_training``:
one drawing from numpy's or Python's global stream set the ranks' weights apart, and every resume refused the run.
F4: a plugin setting ``SIGCHLD`` to ``SIG_IGN`` at import (a common way to never reap children) made the kernel reap
the launcher's ranks itself, so torch's launcher never learnt that one failed: the other waited in gloo and the
launch ended in its traceback, exit 0. Each test failed before its fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_support import data_root, installed, subprocess_env  # noqa: F401 - data_root is a fixture

LAUNCH_TIMEOUT = 600
TINY = ["--epochs", "1", "--batch-size", "16", "--train-limit", "64", "--test-limit", "32", "--latent", "2",
        "--device", "cpu", "--nproc", "2"]

HOST_STREAM_PLUGIN = '''
import random

import numpy as np
import torch
from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE


class HostCentreVAE(VAE):
    """Fits a centre to the codes of 8 training images picked with {how} after training (a frozen parameter)."""

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.centre = torch.nn.Parameter(torch.zeros(config.latent), requires_grad=False)

    def after_training(self, train):
        x = next(iter(train.batches(64)))
        picks = {pick}
        with torch.no_grad():
            self.centre.copy_(self.encode(x[list(picks)]).mean(0))


@hookimpl
def register_models(register):
    register("{name}", HostCentreVAE)
'''

PICKS = {"numpy": "np.random.permutation(x.shape[0])[:8].tolist()",
         "python": "random.sample(range(x.shape[0]), 8)"}


def _train(data_root: Path, run: Path, site: Path, model: str, *more: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, "-m", "genzoo", "train", model, *TINY, "--data-root", str(data_root), "--out", str(run),
         *more], env=subprocess_env(PYTHONPATH=path), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)


@pytest.mark.parametrize("stream", sorted(PICKS))
def test_an_after_training_drawing_from_a_host_stream_finishes_under_nproc(data_root, tmp_path, stream) -> None:  # noqa: F811
    """Plugins F3. Before: ``Error: process 1 of 2 holds other weights than process 0 ... (centre)``, exit 1, and
    the same on every resume."""
    name = f"hostcentre26{stream}"
    source = HOST_STREAM_PLUGIN.format(how=f"{stream}'s global stream", pick=PICKS[stream], name=name)
    site = installed(tmp_path / "site", f"genzoo-{name}", name, source)
    done = _train(data_root, tmp_path / "run", site, name)
    assert done.returncode == 0, done.stderr[-4000:]


FAILING_RANK_PLUGIN = '''
import os
import signal

from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE

signal.signal(signal.SIGCHLD, signal.SIG_IGN)


class SecondRankFailsVAE(VAE):
    """Its loss fails on the second process of a launch only."""

    def loss(self, batch):
        if os.environ.get("RANK") == "1":
            raise RuntimeError("the second process fails here")
        return super().loss(batch)


@hookimpl
def register_models(register):
    register("failingrank26", SecondRankFailsVAE)
'''


def test_a_failed_rank_is_reported_when_a_plugin_ignores_sigchld(data_root, tmp_path) -> None:  # noqa: F811
    """Plugins F4. Before: a 34-line gloo traceback (``Connection closed by peer``), exit 0."""
    site = installed(tmp_path / "site", "genzoo-failingrank26", "failingrank26", FAILING_RANK_PLUGIN)
    done = _train(data_root, tmp_path / "run", site, "failingrank26")
    assert done.returncode == 1, done.stderr[-4000:]
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    assert "the second process fails here" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: training process 1 of 2 exited with code 1; "), \
        done.stderr[-4000:]
