"""Minor findings of the twenty-third hostile pass, fixed by the twenty-sixth look (each test failed before).

Plugins M1: a config field with ``init=False`` (the config computes it) made every run refused as a config whose
``__post_init__`` is not idempotent; M3: a config's ``__post_init__`` that turned grad mode off failed the first
step blaming the model's ``loss``; M4: a plugin's ``logging.basicConfig(level=DEBUG)`` at import put every library's
debug lines on standard error; M5: a model picking its layers with a random stream under ``--nproc`` was blamed only
on calling a child through a reference; M6: a ``loss_option`` naming no field was registered. Files M1: a rank killed
by SIGKILL had rank 0 blame the model's ``loss`` with gloo's text above the launcher's line.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
import torch
from genzoo_plugins.vae.config import VAEConfig
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root is a fixture
    assert_one_line_error,
    data_root,
    installed,
    register_model,
    run_main,
    subprocess_env,
)

from genzoo import get_model, hookimpl, plugin_registry
from genzoo.errors import GenzooError

TINY = ["--epochs", "1", "--batch-size", "16", "--train-limit", "64", "--test-limit", "32", "--latent", "2",
        "--device", "cpu"]


# -- M1: a field the config computes ----------------------------------------------------------------------------


@dataclass
class ComputedConfig(VAEConfig):
    scale: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.scale = 1.0 / self.latent


class ComputedVAE(VAE):
    Config = ComputedConfig


def test_a_field_the_config_computes_trains_and_is_read_back(genzoo_register, data_root, tmp_path, capsys) -> None:  # noqa: F811
    """Before: ``Error: ComputedConfig built from what config.json records of it is not the config that would be
    trained (... unexpected keyword argument 'scale') ... __post_init__ must leave values ...``, exit 1."""
    register_model(genzoo_register, "computed26", ComputedVAE)
    code, _, err = run_main(["train", "computed26", *TINY, "--data-root", str(data_root), "--out",
                             str(tmp_path / "run")], capsys)
    assert code == 0, err
    code, _, err = run_main(["eval", str(tmp_path / "run"), "--test-limit", "32", "--fid-samples", "0"], capsys)
    assert code == 0, err
    assert get_model("computed26", latent=4).config.scale == 0.25


def test_a_value_given_for_a_computed_field_must_be_what_the_config_computes(genzoo_register) -> None:
    register_model(genzoo_register, "computed26", ComputedVAE)
    with pytest.raises(GenzooError, match=r"^ComputedConfig's field 'scale' is computed by the config \(init=False\), "
                                          r"not given: it computed 0.025, and 2.0 was given$"):
        get_model("computed26", scale=2.0)


# -- M3: a config's __post_init__ that changes grad mode ----------------------------------------------------------


@dataclass
class GradOffConfig(VAEConfig):
    def __post_init__(self) -> None:
        super().__post_init__()
        torch.set_grad_enabled(False)


class GradOffVAE(VAE):
    Config = GradOffConfig


def test_a_config_that_turns_grad_mode_off_is_named_before_the_run_folder(genzoo_register, data_root, tmp_path,  # noqa: F811
                                                                           capsys) -> None:
    """Before: ``Error: GradOffVAE.loss returned its objective 'nelbo' without a gradient ...``, its run folder
    left."""
    register_model(genzoo_register, "gradoff26", GradOffVAE)
    code, _, err = run_main(["train", "gradoff26", *TINY, "--data-root", str(data_root), "--out",
                             str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "GradOffConfig.__post_init__ changed torch's grad mode (enabled, set to "
                                     "disabled) while building the config; they are put back")
    assert torch.is_grad_enabled()
    assert not (tmp_path / "run").exists()


# -- M4: a plugin configuring the root logger at import -----------------------------------------------------------


DEBUG_LOGGING_PLUGIN = '''
import logging

logging.basicConfig(level=logging.DEBUG)

from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE


@hookimpl
def register_models(register):
    register("debuglog26", VAE)
'''


def test_a_plugin_configuring_the_root_logger_at_import_is_put_back_with_one_warning(data_root, tmp_path) -> None:  # noqa: F811
    """Before: hundreds of ``DEBUG:matplotlib...`` lines on standard error, exit 0."""
    site = installed(tmp_path / "site", "genzoo-debuglog26", "debuglog26", DEBUG_LOGGING_PLUGIN)
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = subprocess.run(
        [sys.executable, "-m", "genzoo", "train", "debuglog26", *TINY, "--data-root", str(data_root), "--out",
         str(tmp_path / "run")], env=subprocess_env(PYTHONPATH=path), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [line for line in done.stderr.splitlines() if not line.startswith("epoch ")]
    assert lines == ["genzoo: warning: plugin 'debuglog26' (distribution 'genzoo-debuglog26') configured the root "
                     "logger while being imported (logging.basicConfig?); it is put back: a plugin logs through a "
                     "logger of its own (logging.getLogger(__name__)) and leaves the root logger to the program"], \
        done.stderr[-4000:]


def test_the_root_logger_is_put_back_in_this_process_too(genzoo_register) -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)

    @hookimpl
    def register_models(register: Any) -> None:
        logging.basicConfig(level=logging.DEBUG, force=True)
        register("rootlogger26", VAE)

    genzoo_register(types.SimpleNamespace(register_models=register_models), "rootlogger26", "test-rootlogger26")
    assert "rootlogger26" in plugin_registry.registry().names("model")
    assert (root.level, root.handlers) == (level, handlers)


# -- M6: a loss_option naming no field ---------------------------------------------------------------------------


@dataclass
class NoSuchOptionConfig(VAEConfig):
    loss_option: ClassVar[str] = "reconstruction"  # the field is reconstruction_loss


def test_a_loss_option_naming_no_field_is_refused_at_registration(genzoo_register, capsys) -> None:
    """Before: registered; ``--loss mse`` then said ``unknown option(s) for NoSuchOptionConfig: reconstruction``."""
    register_model(genzoo_register, "nosuchoption26", type("NoSuchOptionVAE", (VAE,), {"Config": NoSuchOptionConfig}))
    capsys.readouterr()
    assert "nosuchoption26" not in plugin_registry.registry().names("model")
    assert capsys.readouterr().err.strip() == (
        "genzoo: warning: plugin 'nosuchoption26' (distribution 'test-nosuchoption26') failed while registering "
        "models and is skipped: TypeError: model 'nosuchoption26' has a Config whose loss_option 'reconstruction' "
        "names none of its fields")


# -- files M1: a rank killed by SIGKILL ---------------------------------------------------------------------------


KILLED_RANK_PLUGIN = '''
import os
import signal

from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE

CALLS = [0]


class KilledRankVAE(VAE):
    """The second process of a launch is killed (as by kill -9) in its 5th training step (a batch of 8 images: the
    checks before training use other sizes)."""

    def loss(self, batch):
        CALLS[0] += batch.shape[0] == 8
        if os.environ.get("RANK") == "1" and CALLS[0] == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().loss(batch)


@hookimpl
def register_models(register):
    register("killedrank26", KilledRankVAE)
'''


def test_a_rank_killed_by_sigkill_is_named_by_the_launcher_alone(data_root, tmp_path) -> None:  # noqa: F811
    """Files M1. Before: ``Error: KilledRankVAE.loss raised RuntimeError: Got the following error when running the
    callback: RuntimeError: [.../gloo/transport/tcp/pair.cc:545] Read error ...: Connection reset by peer ...``
    above the launcher's line."""
    site = installed(tmp_path / "site", "genzoo-killedrank26", "killedrank26", KILLED_RANK_PLUGIN)
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = subprocess.run(
        [sys.executable, "-m", "genzoo", "train", "killedrank26", "--epochs", "1", "--batch-size", "16",
         "--train-limit", "1280", "--test-limit", "32", "--device", "cpu", "--nproc", "2", "--data-root",
         str(data_root), "--out", str(tmp_path / "run")],
        env=subprocess_env(PYTHONPATH=path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-4000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == ("Error: training process 1 of 2 was killed by SIGKILL; the launcher stopped the others; no "
                         "checkpoint was written, so there is nothing to resume"), done.stderr[-4000:]
    assert not [line for line in lines[:-1] if line.startswith("Error:") or "gloo" in line], done.stderr[-4000:]
