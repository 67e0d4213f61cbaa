"""Found by the eighteenth hostile pass (plugins F5, F6, F7; files F3): values, plugins and a disk genzoo misread.

Plugins F5: a NaN in a model's config (a plugin's "not set" default, or ``nan`` typed for a float option) trained
to exit 0, then ``eval``, ``sample``, ``export`` and ``resume`` refused the run, comparing NaN with NaN. F6: a
plugin that looks something up in the registry while registering (or at import) recursed, and the warnings blamed
genzoo's own plugins. F7: a distribution on the path whose metadata has no name made every command a traceback.
Files F3: a really full disk while ``torch.save`` wrote a checkpoint was a traceback (torch's zip writer raises a
``RuntimeError`` while handling the disk's ``OSError``), not the one line a failed write gives. Each test failed
before its fix (docs/reliability.md, "Found by the twenty-first look").
"""

from __future__ import annotations

import json
import math
import resource
import signal
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.config import VAEConfig
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    Steered,
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
)
from test_security_plugins import BUILTIN_MODELS, Site, site  # noqa: F401 - site is a fixture

from genzoo import hookimpl
from genzoo.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from genzoo.errors import GenzooError

TINY = ["--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu", "--latent", "2",
        "--hidden", "16"]


# -- plugins F5: NaN in a model's config ---------------------------------------------------------


@dataclass
class NanConfig(VAEConfig):
    dropout: float = field(default=math.nan, metadata={"help": "Dropout (nan: none)."})


class NanVAE(Steered, VAE):
    """A VAE whose config holds NaN by default (the report's "not set" sentinel); it can be stopped at a step."""

    Config = NanConfig


@dataclass
class ClipConfig(VAEConfig):
    clip_norm: float = field(default=math.inf, metadata={"help": "Gradient-norm clip (inf: none)."})


class ClipVAE(VAE):
    """A float option with no range check of its own: the command line can give it ``nan``."""

    Config = ClipConfig


@hookimpl
def register_models(register: Any) -> None:
    register("nanvae21", NanVAE)
    register("clipvae21", ClipVAE)


@pytest.fixture
def models(genzoo_register: Any) -> Iterator[None]:
    NanVAE.steps, NanVAE.interrupt_at = 0, None
    genzoo_register(types.SimpleNamespace(register_models=register_models), "twentyfirst-d", "test-twentyfirst-d")
    yield
    NanVAE.steps, NanVAE.interrupt_at = 0, None


def test_a_nan_config_default_is_resumed_evaluated_sampled_and_exported(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """F5. Before: the run trained, then ``resume`` (and every reader) said ``... was saved with another nanvae21
    config (checkpoint vs requested): dropout nan vs nan``, exit 1: every epoch lost."""
    run = tmp_path / "run"
    NanVAE.interrupt_at = 3  # a real Ctrl-C in epoch 2 (2 steps an epoch)
    code, _, err = run_main(["train", "nanvae21", "--data-root", str(data_root), "--epochs", "2", *TINY,
                             "--out", str(run)], capsys)
    assert code == 130, err
    assert math.isnan(json.loads((run / "config.json").read_text())["model_config"]["dropout"])
    NanVAE.interrupt_at = None
    code, _, err = run_main(["resume", str(run)], capsys)
    assert code == 0, err
    for command in (["eval", str(run), "--fid-samples", "0", "--iwae-k", "2"],
                    ["eval", str(run), "--fid-samples", "0", "--iwae-k", "2"],  # eval.json's run_config, NaN too
                    ["sample", str(run), "--out", str(tmp_path / "s.png")],
                    ["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "x")]):
        code, _, err = run_main(command, capsys)
        assert code == 0 and "warning" not in err, (command, err)


def test_nan_typed_for_a_plugin_models_float_option_trains_and_evaluates(
        models: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """F5 through plain user input, in a run and a compare (whose ``--resume`` checks the kept runs' configs).
    Before: ``eval`` refused the run (``clip_norm nan vs nan``), and ``compare`` trained, then failed to evaluate."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "clipvae21", "--data-root", str(data_root), "--epochs", "1", *TINY,
                             "--clip-norm", "nan", "--out", str(run)], capsys)
    assert code == 0, err
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", "--iwae-k", "2"], capsys)
    assert code == 0, err
    out = tmp_path / "cmp"
    compare = ["compare", "clipvae21", "--set", "clipvae21.clip_norm=nan", "--set", "clipvae21.hidden=16",
               "--data-root", str(data_root), "--epochs", "1", "--batch-size", "20", "--train-limit", "40",
               "--test-limit", "20", "--latent", "2", "--fid-samples", "0", "--fid-curve", "0", "--iwae-k", "2",
               "--device", "cpu", "--out", str(out)]
    code, _, err = run_main(compare, capsys)
    assert code == 0, err
    (out / "report.md").unlink()  # so that --resume reads the kept run back and writes the report again
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0, err
    assert (out / "report.md").is_file()


# -- plugins F6: the registry looked up while it is being built ------------------------------------


REENTERING = '''
import genzoo
from genzoo import hookimpl
from genzoo_plugins.vae.model import VAE

{at_import}

class ReVAE(VAE):
    pass

@hookimpl
def register_models(register):
    {in_hook}
    register("revae21", ReVAE)
'''


@pytest.mark.parametrize("at_import,in_hook,when", [
    ("", 'genzoo.registry().loss("bce-sum")', "registering models"),
    ("", "genzoo.list_models()", "registering models"),
    ("", 'genzoo.get_model("vae")', "registering models"),
    ('BCE = genzoo.registry().loss("bce-sum")', "pass", "being imported"),
])
def test_a_plugin_looking_up_the_registry_while_it_is_built_is_skipped_with_one_warning_naming_it(
        site: Site, capsys: pytest.CaptureFixture[str], at_import: str, in_hook: str, when: str) -> None:
    """F6. Before: from a hook, seven warnings (``plugin 'vae' (distribution 'genzoo') failed while registering
    models and is skipped: ... RecursionError``, and so for each built-in model), though all were registered; at
    import, ``unknown loss 'bce-sum' (available: none)``, as if the built-in loss did not exist."""
    site.install("genzoo-reent", "genzoo_reent21", REENTERING.format(at_import=at_import, in_hook=in_hook))
    code, out, err = run_main(["list", "--json"], capsys)
    assert code == 0, err
    warnings = err.strip().splitlines()
    assert warnings == [f"genzoo: warning: plugin 'genzoo_reent21' (distribution 'genzoo-reent') looked "
                        f"something up in genzoo's registry (genzoo.registry(), list_models, get_model, ...) while "
                        f"{when}, before the registry exists, and is skipped: look things up when they are used, "
                        "not while registering"], err
    assert sorted(row["name"] for row in json.loads(out) if row["kind"] == "model") == BUILTIN_MODELS
    code, out, err = run_main(["list", "--json"], capsys)  # built once per process: the warning is not repeated
    assert code == 0 and err == "", err


# -- plugins F7: a distribution with no name ---------------------------------------------------------


@pytest.mark.parametrize("metadata", ["Metadata-Version: 2.1\nVersion: 0.1\n", ""])
@pytest.mark.parametrize("allowed", [None, "", "genzoo-toy"])
def test_a_distribution_without_a_name_is_one_warning_and_the_command_runs(
        site: Site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], metadata: str,
        allowed: str | None) -> None:
    """F7. Before: ``TypeError: expected string or bytes-like object, got 'NoneType'`` traceback, every command,
    even under ``GENZOO_LOAD_PLUGINS=``."""
    info = site.root / "genzoo_noname-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(metadata)
    (info / "entry_points.txt").write_text("[genzoo]\nnoname = genzoo_noname21\n")
    marker = site.root / "genzoo_noname21.imported"
    (site.root / "genzoo_noname21.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    site.modules.append("genzoo_noname21")
    site.toy("genzoo-toy", "genzoo_toy_plugin", "toy")
    if allowed is not None:
        monkeypatch.setenv("GENZOO_LOAD_PLUGINS", allowed)
    code, out, err = run_main(["list", "--json"], capsys)
    assert code == 0, err
    assert err.strip().splitlines() == [
        f"genzoo: warning: a distribution in {site.root} offers genzoo plugins (entry point noname = "
        "genzoo_noname21) but its metadata has no name (a broken install?); it is skipped"], err
    assert not marker.exists()  # never imported: no allow-list can name it
    toy = [] if allowed == "" else ["toy"]
    assert sorted(row["name"] for row in json.loads(out) if row["kind"] == "model") == sorted(BUILTIN_MODELS + toy)


# -- files F3: a real write failure under torch's zip writer ----------------------------------------


@contextmanager
def files_limited_to(size: int) -> Iterator[None]:
    """A write past ``size`` bytes of any file fails in the kernel as a full disk does, with an ``OSError`` from
    ``write`` (``EFBIG``, "File too large", rather than ``ENOSPC``), without root or a small file system: the
    process's file-size limit, ``SIGXFSZ`` ignored so that the write fails instead of the process ending."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_checkpoint_write_the_kernel_refuses_under_torchs_zip_writer_is_one_line(tmp_path: Path) -> None:
    """Files F3, unit. The real fault: ``OSError`` from the file's ``write`` inside ``torch.save``, then the zip
    writer's ``RuntimeError: ... unexpected pos ...`` while handling it. Before: that ``RuntimeError`` escaped
    ``atomic_write`` (which turned only an ``OSError`` into its line)."""
    path = tmp_path / FILENAME
    save_checkpoint(path, {"model": "old", "w": torch.zeros(10)})
    before = path.read_bytes()
    with files_limited_to(64 * 1024), pytest.raises(GenzooError) as info:
        save_checkpoint(path, {"model": "new", "w": torch.zeros(100_000)})
    assert str(info.value) == f"could not write {path}: File too large; the previous version, if any, is intact"
    assert isinstance(info.value.__cause__, RuntimeError)  # the fault was torch's, as on a real full disk
    assert path.read_bytes() == before and load_checkpoint(path)["model"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILENAME]  # the temporary is gone


def test_a_run_whose_checkpoint_the_kernel_refuses_stops_in_one_line(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Files F3 as a user sees it. Before: a two-part traceback (``OSError`` in ``torch.serialization._save``,
    then ``RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos ...``), exit 1."""
    run = tmp_path / "run"
    with files_limited_to(64 * 1024):  # config.json fits, the first checkpoint (330 kB) does not
        code, _, err = run_main(["train", "vae", "--data-root", str(data_root), "--epochs", "1", *TINY,
                                 "--out", str(run)], capsys)
    assert_one_line_error(code, err, f"could not write {run / FILENAME}: File too large; the previous version, "
                                     "if any, is intact")
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.jsonl"]  # no temporary left
