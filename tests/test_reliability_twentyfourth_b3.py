"""Found by the twenty-first hostile pass on plugins (F4, F5): distributed buffers and the plugins record.

F4: under ``--nproc 2`` a manual-optimisation model's own buffer (a running mean its ``training_step`` keeps) was
never broadcast (only children with trainable parameters are DDP-wrapped): each rank kept its own, evaluated its part
of the test split with it, and rank 0's alone was checkpointed; the test metric mixed them. Rank 0's buffers are now
broadcast before each manual step (as DDP does for the module it wraps) and before each evaluation and checkpoint,
and the ranks' agreement covers persistent buffers. F5: ``config.json``'s ``plugins`` recorded the model and dataset
only: a loss of another distribution, same name, resumed and evaluated a run without a word; every loss the config
names and the model's default sampler are now recorded and checked as the model is. Each test failed before its fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from reliability_support import subprocess_env, write_fake_mnist

from genzoo.checkpoint import load_checkpoint
from genzoo.run_folder import read_metrics

LAUNCH_TIMEOUT = 600

# -- F4: a manual model's own buffer under --nproc 2 -----------------------------------------------------------------

BUFFER_PLUGIN = '''
import torch
from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE


class MeanVAE(VAE):
    """Steps its own Adam; keeps a running mean of its batches' pixels in a persistent buffer of its own (no
    DDP wrapper holds it), which evaluate reports."""
    automatic_optimization = False

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.register_buffer("seen", torch.zeros(()))

    def configure_optimizers(self):
        return {"adam": torch.optim.Adam(self.parameters(), lr=self.config.lr)}

    def training_step(self, x, optimizers):
        stats = VAE.loss(self, x)
        optimizers["adam"].zero_grad()
        stats["nelbo"].sum().backward()
        optimizers["adam"].step()
        with torch.no_grad():
            self.seen.mul_(0.5).add_(x.mean())
        return stats

    def evaluate(self, x):
        return {**super().evaluate(x), "seen": self.seen.expand(x.shape[0]).clone()}


@hookimpl
def register_models(register):
    register("meanvae24", MeanVAE)
'''


def installed(site: Path, distribution: str, module: str, source: str) -> Path:
    """``source`` as module ``module`` of an installed-like distribution in ``site``, whose plugins every rank of
    a launch (plain genzoo processes) finds."""
    info = site / f"{module}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[genzoo]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(source)
    return site


def test_a_manual_models_own_buffer_is_rank_0s_on_every_rank_under_nproc(tmp_path: Path) -> None:
    """F4. Before: the test metric read from the buffer (``test_seen``) was the ranks' buffers mixed, 0.9386 beside
    rank 0's 0.9413 in the checkpoint (a resume reported yet another), exit 0."""
    data = write_fake_mnist(tmp_path / "data")
    site = installed(tmp_path / "site", "genzoo-meanvae24", "meanvae24", BUFFER_PLUGIN)
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "genzoo", "train", "meanvae24", "--epochs", "1", "--batch-size", "16", "--train-limit",
         "64", "--test-limit", "40", "--latent", "2", "--hidden", "16", "--device", "cpu", "--data-root", str(data),
         "--no-download", "--out", str(run), "--nproc", "2"],
        env=subprocess_env(PYTHONPATH=path), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 0, done.stderr[-4000:]
    kept = float(load_checkpoint(run / "checkpoint.pt")["model_state"]["seen"])
    assert read_metrics(run)[-1]["test_seen"] == kept
