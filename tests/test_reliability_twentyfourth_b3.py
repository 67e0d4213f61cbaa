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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from reliability_support import data_root, installed, run_main, subprocess_env, write_fake_mnist  # noqa: F401 - a fixture

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


# -- F5: the losses and the default sampler in config.json's plugins record -------------------------------------

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu"]


@pytest.fixture
def provided() -> Iterator[Callable[[str, str], None]]:
    """``provide(distribution, version)``: the reconstruction loss ``bce24`` registered as if from that distribution
    (replacing the last); every registration undone afterwards."""
    import types

    import torch.nn.functional as F

    from genzoo import Loss, hookimpl, plugin_registry

    plugin_registry.load_plugins()

    class BCE24(Loss):
        name = "bce24"
        kind = "reconstruction"
        negative_log_likelihood = True

        def __call__(self, logits, x):
            return F.binary_cross_entropy_with_logits(logits.flatten(1), x.flatten(1), reduction="none").sum(1)

    @hookimpl
    def register_losses(register) -> None:
        register("bce24", BCE24())

    plugin = types.SimpleNamespace(register_losses=register_losses)

    def provide(distribution: str, version: str) -> None:
        if plugin_registry.pm.is_registered(plugin):
            plugin_registry.unregister_plugin("bce24")
        plugin_registry.register_plugin(plugin, "bce24", distribution, version)

    yield provide
    if plugin_registry.pm.is_registered(plugin):
        plugin_registry.unregister_plugin("bce24")


def test_a_run_whose_loss_is_now_from_another_distribution_is_refused_and_another_version_warned(
        provided, data_root, tmp_path, capsys) -> None:
    """F5. Before: ``config.json``'s ``plugins`` held the model and dataset alone; with ``bce24`` from another
    distribution, ``eval`` measured the run with that loss and ``resume`` trained on with it, exit 0, no word."""
    import genzoo

    run = tmp_path / "run"
    evaluate = ["eval", str(run), "--fid-samples", "0", "--test-limit", "20", "--data-root", str(data_root)]
    provided("hostile-a", "1.0")
    code, _, err = run_main(["train", "ae", "--loss", "bce24", "--data-root", str(data_root), *TINY, "--out",
                             str(run)], capsys)
    assert code == 0, err
    builtin = {"distribution": "genzoo", "version": genzoo.__version__}
    assert json.loads((run / "config.json").read_text())["plugins"] == {
        "model": {"name": "ae", **builtin}, "dataset": {"name": "mnist", **builtin},
        "sampler": {"name": "gmm", **builtin},
        "loss.reconstruction_loss": {"name": "bce24", "distribution": "hostile-a", "version": "1.0"}}
    provided("hostile-a", "2.0")
    code, _, err = run_main(evaluate, capsys)
    assert code == 0, err
    assert [line for line in err.splitlines() if "warning" in line] == [
        f"genzoo: warning: {run} was trained with loss 'bce24' of distribution 'hostile-a' 1.0, and 'hostile-a' "
        "2.0 is installed now: what it computes may differ from what the run trained with"]
    provided("hostile-b", "1.0")
    for command in (evaluate, ["resume", str(run)], ["sample", str(run), "--out", str(tmp_path / "s.png")]):
        code, _, err = run_main(command, capsys)
        assert (code, err) == (1, f"Error: {run} was trained with loss 'bce24' of distribution 'hostile-a' 1.0, "
                                  "but loss 'bce24' is provided by distribution 'hostile-b' 1.0 now: another "
                                  "distribution's loss of one name is another loss; install 'hostile-a' to read "
                                  "this run\n"), command
    config = json.loads((run / "config.json").read_text())
    for key in ("loss.reconstruction_loss", "sampler"):  # a run from before they were recorded: read as before
        del config["plugins"][key]
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_main(evaluate, capsys)
    assert code == 0 and "warning" not in err, err


@pytest.mark.parametrize("entry", [{"loss.reconstruction_loss": "mse-sum"}, {"loss.other_loss": "bce-sum"},
                                   {"optimizer": "adam"}])
def test_a_loss_entry_not_of_the_runs_own_loss_is_refused(data_root, tmp_path, capsys, entry) -> None:
    """F5, its record held to the run's names as the model's is (twenty-first pass, files M1): an entry of another
    loss would be the one checked."""
    run = tmp_path / "run"
    assert run_main(["train", "ae", "--data-root", str(data_root), *TINY, "--out", str(run)], capsys)[0] == 0
    config = json.loads((run / "config.json").read_text())
    ((key, name),) = entry.items()
    config["plugins"][key] = {"name": name, "distribution": "genzoo", "version": config["genzoo_version"]}
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", "--test-limit", "20", "--data-root",
                             str(data_root)], capsys)
    assert code == 1 and err.startswith(f"Error: {run / 'config.json'} is not a genzoo run configuration: plugins is "), err
    assert err.rstrip().endswith("not the distribution and version of its model, dataset, default sampler and the "
                                 "losses its model_config names"), err
