"""Plugins F4 and F7 of the twenty-fourth hostile pass, fixed by the twenty-sixth look: a model that is built or
computes otherwise on one process of a ``--nproc`` launch.

F7: a config default read from ``RANK`` gave one process other weight shapes: two 40-line tracebacks (DDP's shape
check on one rank, gloo's ``Connection closed by peer`` on the other) and a run folder left. F4: an ``evaluate`` that
read ``RANK`` had the test metrics reported as a mix of two models' (``test nelbo 678.3`` where one process gives
449), exit 0. The ranks now agree, before the run folder, their weights' names, shapes and dtypes and what
``evaluate`` gives for one test image: one line. Each test failed before its fix.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from reliability_support import data_root, installed, subprocess_env  # noqa: F401 - data_root is a fixture

PLUGINS = {"shape": '''
import os
from dataclasses import dataclass, field

import torch
from genzoo import hookimpl
from genzoo_plugins.vae.config import VAEConfig
from genzoo_plugins.vae.model import VAE


@dataclass
class RankConfig(VAEConfig):
    extra: int = field(default_factory=lambda: 32 if os.environ.get("RANK", "0") == "0" else 48,
                       metadata={"help": "Units of an extra layer."})


class RankVAE(VAE):
    Config = RankConfig

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.head = torch.nn.Linear(config.extra, 1)


@hookimpl
def register_models(register):
    register("rank26", RankVAE)
''', "evaluate": '''
import os

from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE


class RankVAE(VAE):
    def evaluate(self, x):
        stats = super().evaluate(x)
        return {k: 2 * v for k, v in stats.items()} if os.environ.get("RANK") == "1" else stats


@hookimpl
def register_models(register):
    register("rank26", RankVAE)
'''}
SAID = {"shape": "process 1 of 2 built RankVAE otherwise than process 0 (head.weight (1, 48) torch.float32 vs (1, 32) "
                 "torch.float32)",
        "evaluate": "process 1 of 2 evaluated RankVAE otherwise than process 0 (bce "}


@pytest.mark.parametrize("how", sorted(PLUGINS))
def test_a_model_built_or_evaluated_otherwise_on_one_process_is_one_line_before_the_run_folder(data_root, tmp_path,  # noqa: F811
                                                                                             how) -> None:
    site = installed(tmp_path / "site", "genzoo-rank26", "rank26", PLUGINS[how])
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "genzoo", "train", "rank26", "--epochs", "1", "--batch-size", "16", "--train-limit",
         "64", "--test-limit", "32", "--latent", "2", "--device", "cpu", "--nproc", "2", "--data-root",
         str(data_root), "--out", str(run)],
        env=subprocess_env(PYTHONPATH=path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-4000:]
    assert "Traceback" not in done.stderr and "gloo" not in done.stderr, done.stderr[-4000:]
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"Error: {SAID[how]}"), done.stderr[-4000:]
    assert lines[-1].startswith("Error: training process "), done.stderr[-4000:]
    assert not run.exists()
