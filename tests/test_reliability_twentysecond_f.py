"""Found by the nineteenth hostile pass on plugins (F8, F9, M2, M3).

F8: a ``BaseException`` other than ``SystemExit``/``GeneratorExit``/``KeyboardInterrupt`` from plugin code
(``asyncio.CancelledError``, which an async tracking client raises when its upload is cancelled, or a library's
own ``BaseException`` subclass) was a traceback: from a logger, a model's ``loss`` or ``evaluate``, and at a
plugin's import, where it broke every command. Such exceptions are plugin faults now (one line, or one warning
where a plugin's failure is one), while Ctrl-C keeps its meaning; a static check holds every guard of plugin code
to letting ``KeyboardInterrupt`` through. F9: under ``--nproc 2`` ranks that loaded different data trained as one
run, recording rank 0's digest; the ranks' digests are agreed before training, a mismatch one line on every rank.
M2: ``--sampler model,model`` said ``samplers names one sampler twice: model, model``. M3: ``--log ''`` trained
with no loggers while ``--sampler ''`` was refused; both refuse an empty name now. Each test failed before its
fix (docs/reliability.md, the rows of the nineteenth hostile pass on plugins).
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    subprocess_env,
    write_fake_mnist,
)
from test_security_plugins import BUILTIN_MODELS, Site, site  # noqa: F401 - site is a fixture

from genzoo import Logger, hookimpl
from genzoo.run_folder import read_metrics

TINY = ["--latent", "2", "--hidden", "16", "--batch-size", "10", "--train-limit", "40", "--test-limit", "20",
        "--device", "cpu", "--no-download"]
GENZOO = Path(__file__).resolve().parent.parent / "genzoo"


class LibraryStop(BaseException):
    """A library's own BaseException (as some RPC and async libraries define one)."""


#: What each raises, and how its one line describes it.
RAISED = {
    "cancelled": (lambda: asyncio.CancelledError("upload cancelled"), "CancelledError: upload cancelled"),
    "library": (lambda: LibraryStop("the client shut down"), "LibraryStop: the client shut down"),
}


# -- F8: a BaseException from a logger, a loss, evaluate, or a plugin's import ------------------------------------


class Raising(Logger):
    """A logger whose upload of epoch 1 raises what ``GENZOO_TEST_RAISE`` names."""

    def log_epoch(self, record, samples):
        if record["epoch"] == 1:
            raise RAISED[os.environ["GENZOO_TEST_RAISE"]][0]()


class RaisingVAE(VAE):
    """A VAE whose ``loss`` (with gradients) or ``evaluate`` raises what ``GENZOO_TEST_RAISE`` names, as
    ``GENZOO_TEST_IN`` says."""

    def loss(self, x):
        if os.environ["GENZOO_TEST_IN"] == "loss" and torch.is_grad_enabled():
            raise RAISED[os.environ["GENZOO_TEST_RAISE"]][0]()
        return super().loss(x)

    def evaluate(self, x):
        if os.environ["GENZOO_TEST_IN"] == "evaluate":
            raise RAISED[os.environ["GENZOO_TEST_RAISE"]][0]()
        return super().evaluate(x)


class RaisingPlugin:
    @hookimpl
    def register_loggers(self, register):
        register("raising22", Raising)

    @hookimpl
    def register_models(self, register):
        register("raisevae22", RaisingVAE)


@pytest.fixture
def raising(genzoo_register):
    genzoo_register(RaisingPlugin(), "raising22")


@pytest.mark.parametrize("kind", sorted(RAISED))
def test_a_logger_raising_a_base_exception_is_dropped_and_the_run_goes_on(raising, data_root, tmp_path,
                                                                         monkeypatch, capsys, kind):
    """Before: a traceback ending ``asyncio.exceptions.CancelledError: upload cancelled`` (or ``LibraryStop``)
    after epoch 1's checkpoint, exit 1, epoch 2 never trained."""
    monkeypatch.setenv("GENZOO_TEST_RAISE", kind)
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", *TINY, "--epochs", "2", "--data-root", str(data_root),
                             "--log", "raising22", "--out", str(run)], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("genzoo: warning:")] == [
        f"genzoo: warning: logger 'raising22' failed and logs no more of this session: {RAISED[kind][1]}"]
    assert [record["epoch"] for record in read_metrics(run)] == [1, 2]


@pytest.mark.parametrize("where", ["loss", "evaluate"])
@pytest.mark.parametrize("kind", sorted(RAISED))
def test_a_model_raising_a_base_exception_is_one_line(raising, data_root, tmp_path, monkeypatch, capsys, kind,
                                                      where):
    """Before: a traceback, exit 1 (from the state check before the run folder, or the first step). Now the line
    any exception of theirs gives: ``evaluate`` before the folder, ``loss`` in the first step (the check before the
    folder leaves a method that fails to the run), whose line says the folder holds its config.json alone."""
    monkeypatch.setenv("GENZOO_TEST_RAISE", kind)
    monkeypatch.setenv("GENZOO_TEST_IN", where)
    run = tmp_path / "run"
    code, _, err = run_main(["train", "raisevae22", *TINY, "--epochs", "1", "--data-root", str(data_root),
                             "--out", str(run)], capsys)
    line = assert_one_line_error(code, err, f"Error: RaisingVAE.{where} raised {RAISED[kind][1]}")
    assert not (run / "checkpoint.pt").exists()
    assert (not run.exists()) if where == "evaluate" else "(its config.json alone) cannot be resumed" in line


@pytest.mark.parametrize("kind", sorted(RAISED))
def test_a_plugin_raising_a_base_exception_at_import_is_skipped_with_a_warning(site: Site, capsys, kind):
    """Before: ``genzoo plugins`` (every command) was a traceback ending in the CancelledError, exit 1."""
    raised = {"cancelled": "import asyncio\nraise asyncio.CancelledError('upload cancelled')\n",
              "library": "class LibraryStop(BaseException):\n    pass\nraise LibraryStop('the client shut down')\n"}
    site.install("genzoo-baseexc", "hz_baseexc", raised[kind], entry="baseexc")
    hook = (raised[kind].replace("raise ", "def fail():\n    raise ") +
            "from genzoo import hookimpl\n@hookimpl\ndef register_models(register):\n    fail()\n")
    site.install("genzoo-basehook", "hz_basehook", hook, entry="basehook")
    code, out, err = run_main(["plugins", "--json"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert sorted(row["name"] for row in json.loads(out) if row["kind"] == "model") == BUILTIN_MODELS
    assert sorted(err.strip().splitlines()) == [
        f"genzoo: warning: plugin 'baseexc' from 'genzoo-baseexc' failed to load and is skipped: {RAISED[kind][1]}",
        "genzoo: warning: plugin 'basehook' (distribution 'genzoo-basehook') failed while registering models and "
        f"is skipped: {RAISED[kind][1]}"]


def test_ctrl_c_from_a_logger_still_aborts(genzoo_register, data_root, tmp_path, capsys):
    """Ctrl-C keeps its meaning: a logger raising KeyboardInterrupt ends the run as the user's Ctrl-C does."""

    class Interrupting(Logger):
        def log_epoch(self, record, samples):
            raise KeyboardInterrupt

    class Plugin:
        @hookimpl
        def register_loggers(self, register):
            register("interrupting22", Interrupting)

    genzoo_register(Plugin(), "interrupting22")
    code, _, err = run_main(["train", "vae", *TINY, "--epochs", "2", "--data-root", str(data_root),
                             "--log", "interrupting22", "--out", str(tmp_path / "run")], capsys)
    assert code == 130 and "Traceback" not in err, err
    assert "failed and logs no more" not in err


def _catches(handler: ast.ExceptHandler, name: str) -> bool:
    caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(node, ast.Name) and node.id == name for node in caught)


def test_every_guard_of_plugin_code_lets_ctrl_c_through():
    """``PLUGIN_FAULTS`` is every ``BaseException``: each ``except PLUGIN_FAULTS`` needs a clause before it that
    re-raises ``KeyboardInterrupt``, or a plugin's guard would swallow the user's Ctrl-C (and SIGTERM)."""
    guards, unguarded = 0, []
    for path in sorted(GENZOO.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Try):
                continue
            for number, handler in enumerate(node.handlers):
                if handler.type is None or not _catches(handler, "PLUGIN_FAULTS"):
                    continue
                guards += 1
                if not any(_catches(before, "KeyboardInterrupt") and len(before.body) == 1
                           and isinstance(before.body[0], ast.Raise) and before.body[0].exc is None
                           for before in node.handlers[:number]):
                    unguarded.append(f"{path.relative_to(GENZOO.parent)}:{handler.lineno}")
    assert guards > 20
    assert unguarded == []


# -- F9: ranks of one launch that loaded different data -----------------------------------------------------------

RANK_DATASET = '''
import os

from genzoo import TensorSplit, hookimpl
from genzoo_plugins.datasets.mnist import MNIST


class RankMNIST(MNIST):
    """MNIST whose rank 1 reads the images upside down (a per-host cache of another version)."""

    name = "rankmnist22"

    def load(self, split):
        loaded = super().load(split)
        if os.environ.get("RANK", "0") == "1" and split == os.environ["GENZOO_TEST_SPLIT"]:
            return TensorSplit(loaded.images.flip(-2).contiguous(), loaded.labels)
        return loaded


@hookimpl
def register_datasets(register):
    register("rankmnist22", RankMNIST)
'''

LAUNCH_TIMEOUT = 600


@pytest.mark.parametrize("split", ["train", "test"])
def test_two_ranks_that_loaded_different_data_are_refused_before_training(tmp_path: Path, split: str) -> None:
    """Before: trained, ``final test metrics``, exit 0, and config.json recorded rank 0's digest alone."""
    data = write_fake_mnist(tmp_path / "data")
    site = tmp_path / "site"
    info = site / "genzoo_rank_dataset-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: genzoo-rank-dataset\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[genzoo]\nrank_dataset = rank_dataset\n")
    (site / "rank_dataset.py").write_text(RANK_DATASET)
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "genzoo", "train", "vae", "--dataset", "rankmnist22", *TINY, "--epochs", "1",
         "--data-root", str(data), "--out", str(run), "--nproc", "2"],
        env=subprocess_env(PYTHONPATH=path, GENZOO_TEST_SPLIT=split), capture_output=True, text=True,
        timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-4000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    refusal = (f"Error: process 1 of 2 loaded other {split} data than process 0 (sha256 ")
    own = [line for line in lines[:-1] if line != "Aborted."]
    assert own and all(line.startswith(refusal) for line in own), done.stderr[-4000:]
    assert "every process of a launch must train and test on the same images" in own[0], own[0]
    assert lines[-1].startswith("Error: training process ") and "nothing to resume" in lines[-1], lines[-1]
    assert not (run / "checkpoint.pt").exists() and not (run / "metrics.jsonl").exists()


# -- M2, M3: list options ------------------------------------------------------------------------------------------


def test_a_sampler_named_twice_is_taken_once(tmp_path, data_root, capsys):
    """M2. Before: ``Error: samplers names one sampler twice: normal, normal``; ``--log proclog,proclog`` was
    taken as one logger, and ``--sampler`` is read as it is now."""
    run = tmp_path / "run"
    assert run_main(["train", "vae", *TINY, "--epochs", "1", "--data-root", str(data_root), "--out", str(run)],
                    capsys)[0] == 0
    code, _, err = run_main(["eval", str(run), "--fid-samples", "10", "--features", "mnist", "--test-limit", "20",
                             "--iwae-k", "2", "--device", "cpu", "--sampler", "normal,normal",
                             "--sampler", " normal"], capsys)
    assert code == 0, err
    assert sorted(json.loads((run / "eval.json").read_text())["fid"]) == ["mnist/normal"]


def test_the_api_names_a_sampler_given_twice_in_a_grammatical_line():
    """M2, the API: ``EvalConfig(samplers=[...])`` named the list, not the sampler, ungrammatically."""
    from genzoo import GenzooError
    from genzoo.evaluation import EvalConfig

    with pytest.raises(GenzooError) as info:
        EvalConfig(samplers=["normal", "model", "normal"])
    assert str(info.value) == "samplers names sampler 'normal' twice: ['normal', 'model', 'normal']"


@pytest.mark.parametrize("given", [[""], [" "], ["tensorboard,"], ["tensorboard", ""]])
def test_an_empty_logger_name_is_refused_as_an_empty_sampler_name_is(tmp_path, data_root, capsys, given):
    """M3. Before: ``--log ''`` trained with no logger, exit 0, while ``--sampler ''`` was refused."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", *TINY, "--epochs", "1", "--data-root", str(data_root),
                             *[arg for text in given for arg in ("--log", text)], "--out", str(run)], capsys)
    typed = " ".join(f"--log {text!r}" for text in given)
    assert_one_line_error(code, err, f"Error: --log takes registered logger names separated by commas, got {typed}")
    assert not run.exists()
