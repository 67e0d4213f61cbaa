"""Reliability: what the twentieth look's "Not fixed yet" left, fixed on main (rows in docs/reliability.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from reliability_support import (  # noqa: F401 - data_root is a fixture
    SteeredPlugin,
    SteeredVAE,
    assert_same_run,
    data_root,
    reset_steering,
    run_main,
    script_command,
    subprocess_env,
)
from test_reliability_crash import train_args

from genzoo.checkpoint import CONTENTS_SHA256, FILENAME, contents_sha256, load_checkpoint

LEADERBOARD = Path(__file__).resolve().parent.parent / "benchmarks" / "leaderboard.py"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_same_stop_signal_twice_at_once_is_one_request_with_a_checkpoint(data_root, tmp_path, genzoo_register,
                                                                             capsys, signum):
    """A signal sent to a whole process group or cgroup (systemd's ``KillMode=control-group``, a terminal's Ctrl-C)
    reaches genzoo directly and again from a parent passing it on. Before: the copy, a few milliseconds later, was
    taken as a second request and stopped genzoo at once, without its checkpoint (``Aborted.``)."""
    reset_steering()
    genzoo_register(SteeredPlugin(), "steered")
    SteeredVAE.interrupt_at, SteeredVAE.presses, SteeredVAE.press_gap, SteeredVAE.interrupt_signal = 3, 2, 0.0, signum
    try:
        code, _, err = run_main(train_args(data_root, tmp_path / "run"), capsys)
    finally:
        reset_steering()
    assert code == 128 + signum, err
    assert f"Interrupted: checkpoint saved to {tmp_path / 'run' / FILENAME}" in err, err
    assert load_checkpoint(tmp_path / "run" / FILENAME)["position"]["global_step"] == 3


def _leaderboard(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, str]:
    """The leaderboard training one entry, in a process group of its own, once its child is past epoch 1."""
    out = tmp_path / "lb"
    board = subprocess.Popen(
        [sys.executable, str(LEADERBOARD), "--out", str(out), "--markdown", str(tmp_path / "lb.md"),
         "--only", "vae+normal", "--epochs", "50", "--train-limit", "2000", "--test-limit", "100",
         "--features", "mnist", "--fid-samples", "20", "--iwae-k", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(), start_new_session=True)
    deadline = time.monotonic() + 120
    while not (out / "runs" / "vae" / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    children = Path(f"/proc/{board.pid}/task/{board.pid}/children").read_text().split()
    assert len(children) == 1, children
    return board, out, children[0]


@pytest.mark.usefixtures("mnist_root")
@pytest.mark.parametrize(("signum", "to"), [(signal.SIGTERM, "group"), (signal.SIGINT, "leaderboard"),
                                            (signal.SIGHUP, "leaderboard")])
def test_a_stop_signal_to_the_leaderboard_or_its_group_checkpoints_its_child_once(tmp_path: Path, signum: int,
                                                                                  to: str) -> None:
    """Before: SIGTERM to the leaderboard's whole group reached genzoo twice (directly and passed on), which then
    stopped at once without its checkpoint; ``kill -INT`` or ``kill -HUP`` to the leaderboard alone was not passed
    on, and it waited for its child to train every epoch."""
    board, out, child = _leaderboard(tmp_path)
    if to == "group":
        os.killpg(board.pid, signum)
    else:
        board.send_signal(signum)
    _, err = board.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert board.returncode == 128 + signum, err
    assert not Path(f"/proc/{child}").exists()
    assert "checkpoint saved to" in err and "Aborted." not in err and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"leaderboard: stopped by {name} during `genzoo train vae ")
    assert load_checkpoint(out / "runs" / "vae" / FILENAME)["position"]["epoch"] < 50


def test_a_copy_of_the_stop_signal_a_command_is_unwinding_from_does_nothing(monkeypatch) -> None:
    """Outside training a stop signal unwinds the command at once (``StopAtOnce``, set by ``genzoo.cli.main``);
    its copy a few milliseconds later (the group's signal passed on) would otherwise raise again inside the CLI's
    handling of the first. A second signal after the window, or another signal, still unwinds."""
    import genzoo.trainer
    from genzoo.trainer import REPEAT_WINDOW_S, StopAtOnce, Terminated

    clock = [100.0]
    monkeypatch.setattr(genzoo.trainer.time, "monotonic", lambda: clock[0])
    handler = StopAtOnce()
    with pytest.raises(Terminated):
        handler(signal.SIGTERM, None)
    clock[0] += REPEAT_WINDOW_S / 2
    assert handler(signal.SIGTERM, None) is None
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGINT, None)
    clock[0] += REPEAT_WINDOW_S
    with pytest.raises(Terminated):
        handler(signal.SIGTERM, None)


@pytest.mark.parametrize("damage", ["nan", "meta", "sparse"])
def test_mnist_classifier_weights_without_finite_plain_values_are_one_line_naming_the_tensor(tmp_path: Path,
                                                                                            damage: str) -> None:
    """The classifier's weights go through the checks every tensor from a file does. Before: a NaN weight was
    loaded (every feature NaN), a meta or sparse one refused without saying which tensor or why."""
    import torch

    from genzoo.errors import GenzooError
    from genzoo.evaluation import mnist_classifier
    from genzoo.evaluation.weights import load_weights

    saved, _ = load_weights(mnist_classifier.WEIGHTS)
    key = next(iter(saved["state_dict"]))
    value = saved["state_dict"][key]
    saved["state_dict"][key] = {"nan": lambda: torch.full_like(value, float("nan")),
                                "meta": lambda: torch.empty_like(value, device="meta"),
                                "sparse": lambda: value.to_sparse()}[damage]()
    path = tmp_path / "classifier.pt"
    torch.save(saved, path)
    with pytest.raises(GenzooError, match=f"^{path} does not hold genzoo's MNIST classifier weights: {key} is "):
        mnist_classifier.load_classifier(path)


def _interrupted_run(data_root: Path, tmp_path: Path, genzoo_register, capsys) -> Path:
    """A steered VAE run stopped by Ctrl-C after its 3rd step: a checkpoint holding Adam's state mid-epoch."""
    reset_steering()
    genzoo_register(SteeredPlugin(), "steered")
    SteeredVAE.interrupt_at = 3
    try:
        code, _, err = run_main(train_args(data_root, tmp_path / "run"), capsys)
    finally:
        reset_steering()
    assert code == 130, err
    return tmp_path / "run"


def _relaid(run: Path, to: Path, edit) -> Path:
    """A copy of ``run`` whose checkpoint's Adam state ``edit`` changed, sealed again as any edit can seal it."""
    import shutil

    import torch

    shutil.copytree(run, to)
    state = torch.load(to / FILENAME, weights_only=True)
    state.pop(CONTENTS_SHA256)
    edit(state["optimizers"]["adam"]["state"])
    state[CONTENTS_SHA256] = contents_sha256(state)
    torch.save(state, to / FILENAME)
    return to


def _resume(run: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(script_command("resume", str(run)), capture_output=True, text=True, env=subprocess_env(),
                          timeout=600)


def test_optimiser_state_of_other_memory_layouts_resumes_bit_for_bit_and_an_expanded_one_overflows_nothing(
        data_root, tmp_path, genzoo_register, capsys) -> None:
    """F5 (kind 1 candidate). torch keeps a loaded optimiser state tensor as the file built it, and the fused Adam
    step writes through its data pointer as if laid out as its parameter. Before: an ``exp_avg`` expanded from one
    float (``torch.zeros(1).expand(400)``, 4 bytes of storage) had 1.6 kB written into it: SIGSEGV or glibc's
    ``free(): invalid next size``; the checkpoint's own values as a strided view or a transposed copy were read
    as other numbers (the resume diverged). After: each is copied into memory of its own, laid out as its
    parameter; the same values resume bit for bit."""
    import torch

    run = _interrupted_run(data_root, tmp_path, genzoo_register, capsys)
    genuine = _relaid(run, tmp_path / "genuine", lambda state: None)

    def same_values_other_layouts(state) -> None:
        weight = state[0]["exp_avg_sq"]  # encoder.0.weight's, (400, 784)
        state[0]["exp_avg_sq"] = weight.t().contiguous().t()
        bias = state[1]["exp_avg"]
        spread = torch.zeros(bias.numel() * 2, dtype=bias.dtype)
        spread[::2] = bias
        state[1]["exp_avg"] = spread[::2]

    def expanded(state) -> None:
        state[1]["exp_avg"] = torch.zeros(1).expand(state[1]["exp_avg"].shape)

    relaid = _relaid(run, tmp_path / "relaid", same_values_other_layouts)
    overflowing = _relaid(run, tmp_path / "expanded", expanded)
    for folder in (genuine, relaid, overflowing):
        done = _resume(folder)
        assert done.returncode == 0, (folder, done.returncode, done.stderr[-2000:])
    assert_same_run(relaid, genuine)


# -- plugins F8: a logger and genzoo's own run files ------------------------------------------------------------

TINY = ["--train-limit", "200", "--test-limit", "100", "--batch-size", "50", "--device", "cpu"]


class ScribblingLogger:
    """Writes into genzoo's own run files as ``$GENZOO_TEST_SCRIBBLE`` says (the report's ``hlog``)."""

    def __init__(self, run_dir: Path, start_epoch: int) -> None:
        import os

        self.run_dir, self.mode = run_dir, os.environ["GENZOO_TEST_SCRIBBLE"]
        if self.mode.startswith("folder:"):
            self.folder(self.mode.removeprefix("folder:"))

    def log_hyperparameters(self, description) -> None:
        if self.mode == "config":
            (self.run_dir / "config.json").write_text('{"logged_by": "scribble"}\n')

    def log_epoch(self, record, samples) -> None:
        if self.mode.startswith("metrics"):
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write('{"epoch": %d, "logged_by": "scribble"}\n' % record["epoch"])
        if self.mode == "metrics-raise":
            raise RuntimeError("upload failed")
        if self.mode == "move":  # the run folder moved away during the call, another made in its place
            self.run_dir.rename(self.run_dir.with_name("moved-away"))
            self.run_dir.mkdir()


@pytest.fixture
def scribble(genzoo_register):
    import types

    from genzoo import Logger, hookimpl

    logger = type("ScribblingLogger", (ScribblingLogger, Logger), {})

    @hookimpl
    def register_loggers(register) -> None:
        register("scribble23", logger)

    genzoo_register(types.SimpleNamespace(register_loggers=register_loggers), "scribble23")


@pytest.mark.usefixtures("scribble")
@pytest.mark.parametrize(("mode", "file"), [("metrics", "metrics.jsonl"), ("config", "config.json")])
def test_a_logger_writing_genzoos_own_run_files_has_them_put_back_and_is_dropped(data_root, tmp_path, capsys,
                                                                                 monkeypatch, mode, file) -> None:
    """Plugins F8. Before: a logger appending its own line to ``metrics.jsonl`` (or writing ``config.json``) trained
    with exit 0 and left a run that ``eval`` and ``resume`` refused for ever (``metrics.jsonl line 2 is corrupt``,
    ``config.json is not a genzoo run configuration: no model``)."""
    from genzoo.run_folder import read_metrics

    monkeypatch.setenv("GENZOO_TEST_SCRIBBLE", mode)
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--data-root", str(data_root), "--epochs", "2", *TINY,
                             "--log", "scribble23", "--out", str(run)], capsys)
    assert code == 0, err
    what = "logging the hyperparameters" if mode == "config" else "logging epoch 1"
    assert [line for line in err.splitlines() if line.startswith("genzoo: warning:")] == [
        f"genzoo: warning: logger 'scribble23' changed genzoo's own {run / file} while {what}; it is put back (the "
        "Logger contract: a logger writes its files only in a folder of its own, Logger.folder(NAME)), and it logs "
        "no more of this session"]
    assert [record["epoch"] for record in read_metrics(run)] == [1, 2]
    code, out, err = run_main(["resume", str(run)], capsys)
    assert code == 0 and "already complete" in out + err, err
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", "--iwae-k", "2", "--data-root",
                             str(data_root), "--test-limit", "100"], capsys)
    assert code == 0, err


@pytest.mark.usefixtures("scribble")
@pytest.mark.parametrize("name", ["..", "../out", "/tmp/elsewhere", "a/b", "", "metrics.jsonl", "checkpoint.pt",
                                  ".config.json.abc12345.tmp"])
def test_logger_folder_gives_no_path_outside_the_run_and_no_name_of_genzoos_own(data_root, tmp_path, capsys,
                                                                              monkeypatch, name) -> None:
    """Plugins F8. Before: ``folder('../hlog-out')`` (or an absolute name) was returned as is, and files were
    written outside the run; ``folder('metrics.jsonl')`` handed a logger genzoo's own file."""
    monkeypatch.setenv("GENZOO_TEST_SCRIBBLE", f"folder:{name}")
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--data-root", str(data_root), "--epochs", "1", *TINY,
                             "--log", "scribble23", "--out", str(run)], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"Error: ScribblingLogger.folder was given {name!r}, ")


def test_the_names_a_logger_may_not_take_are_every_file_genzoo_writes_in_a_run() -> None:
    from genzoo.checkpoint import FILENAME
    from genzoo.evaluation.fid_curve import CURVE_FILE
    from genzoo.evaluation.run_evaluation import EVAL_FILE
    from genzoo.logger import GENZOO_FILES
    from genzoo.run_folder import CONFIG, KEPT_FROM_LOGGERS, METRICS

    assert {CONFIG, METRICS, CURVE_FILE, FILENAME, EVAL_FILE, "samples.png", "reconstructions.png",
            "loss.png"} == GENZOO_FILES
    assert set(KEPT_FROM_LOGGERS) <= GENZOO_FILES and CURVE_FILE in KEPT_FROM_LOGGERS


# -- files F6: eval.json's identity fields are checked as its others are --------------------------------------

@pytest.mark.parametrize(("field", "value", "why"), [
    ("weights_sha256", 5, "not a sha256"), ("weights_sha256", "ABC", "not a sha256"),
    ("data_sha256", [1], "not the sha256 of its train and test data"),
    ("data_sha256", "ABC", "not the sha256 of its train and test data")])
def test_an_eval_json_with_a_malformed_digest_is_refused_not_replaced(data_root, tmp_path, capsys, field, value,
                                                                     why) -> None:
    """Files F6. Before: a malformed ``weights_sha256`` (or ``data_sha256``) read as other weights (data): exit 0,
    ``held an evaluation of other weights than this run's checkpoint; it is replaced``, every FID of the file
    lost, although the weights were the same."""
    import json

    run = tmp_path / "run"
    tiny = ["--epochs", "1", "--batch-size", "20", "--device", "cpu", "--latent", "2", "--hidden", "16",
            "--train-limit", "100", "--test-limit", "20"]
    evaluate = ["--test-limit", "20", "--iwae-k", "2", "--device", "cpu", "--data-root", str(data_root)]
    assert run_main(["train", "vae", *tiny, "--out", str(run), "--data-root", str(data_root)], capsys)[0] == 0
    assert run_main(["eval", str(run), "--fid-samples", "10", "--features", "mnist", "--sampler", "normal",
                     *evaluate], capsys)[0] == 0
    damaged = json.loads((run / "eval.json").read_text())
    damaged["run_config"][field] = value
    (run / "eval.json").write_text(json.dumps(damaged))
    before = (run / "eval.json").read_bytes()
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", *evaluate], capsys)
    assert (code, err) == (1, f"Error: {run / 'eval.json'} is not a genzoo evaluation (run_config: {field} is "
                              f"{value!r}, {why}); genzoo merges new measurements into it, so move it away first\n")
    assert (run / "eval.json").read_bytes() == before


# -- plugins F9: a run records which distribution (and version) provided its model and dataset --------------------

@pytest.fixture
def provided() -> Iterator[Callable[[str, str], None]]:
    """Register the model ``prov23`` as provided by a distribution and version of the test's choice (replacing the
    last); every registration undone afterwards."""
    import types

    from genzoo_plugins.vae import VAE

    from genzoo import hookimpl, plugin_registry

    plugin_registry.load_plugins()

    @hookimpl
    def register_models(register) -> None:
        register("prov23", type("ProvVAE", (VAE,), {}))

    plugin = types.SimpleNamespace(register_models=register_models)

    def provide(distribution: str, version: str) -> None:
        if plugin_registry.pm.is_registered(plugin):
            plugin_registry.unregister_plugin("prov23")
        plugin_registry.register_plugin(plugin, "prov23", distribution, version)

    yield provide
    if plugin_registry.pm.is_registered(plugin):
        plugin_registry.unregister_plugin("prov23")


def test_a_run_of_a_model_now_from_another_distribution_is_refused_and_another_version_warned(
        provided, data_root, tmp_path, capsys) -> None:
    """Plugins F9. Before: ``config.json`` recorded the model's name alone; another distribution's model of that
    name (or another version) evaluated and resumed the run, exit 0, no word."""
    import json

    import genzoo

    run = tmp_path / "run"
    evaluate = ["eval", str(run), "--fid-samples", "0", "--iwae-k", "2", "--test-limit", "100", "--data-root",
                str(data_root)]
    provided("hostile-a", "1.0")
    code, _, err = run_main(["train", "prov23", "--data-root", str(data_root), "--epochs", "1", *TINY, "--out",
                             str(run)], capsys)
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["plugins"] == {
        "model": {"name": "prov23", "distribution": "hostile-a", "version": "1.0"},
        "dataset": {"name": "mnist", "distribution": "genzoo", "version": genzoo.__version__},
        "sampler": {"name": "model", "distribution": "genzoo", "version": genzoo.__version__},
        "loss.reconstruction_loss": {"name": "bce-sum", "distribution": "genzoo", "version": genzoo.__version__}}
    code, _, err = run_main(evaluate, capsys)
    assert code == 0 and "warning" not in err, err
    provided("hostile-a", "2.0")
    code, _, err = run_main(evaluate, capsys)
    assert code == 0, err
    assert [line for line in err.splitlines() if "warning" in line] == [
        f"genzoo: warning: {run} was trained with model 'prov23' of distribution 'hostile-a' 1.0, and 'hostile-a' "
        "2.0 is installed now: what it computes may differ from what the run trained with"]
    provided("hostile-b", "1.0")
    for command in (evaluate, ["resume", str(run)], ["sample", str(run), "--out", str(tmp_path / "s.png")]):
        code, _, err = run_main(command, capsys)
        assert (code, err) == (1, f"Error: {run} was trained with model 'prov23' of distribution 'hostile-a' 1.0, "
                                  "but model 'prov23' is provided by distribution 'hostile-b' 1.0 now: another "
                                  "distribution's model of one name is another model; install 'hostile-a' to read "
                                  "this run\n"), command
    before = json.loads((run / "config.json").read_text())
    del before["plugins"]  # a run from before it was recorded: read as before
    (run / "config.json").write_text(json.dumps(before))
    code, _, err = run_main(evaluate, capsys)
    assert code == 0 and "warning" not in err, err


# -- plugins M2-M5: what a model or dataset plugin gets wrong, said as it is ---------------------------------------

@pytest.fixture
def minors(genzoo_register):
    import types

    import torch
    from genzoo_plugins.datasets.mnist import MNIST
    from genzoo_plugins.vae import VAE

    from genzoo import hookimpl
    from genzoo.data import TensorSplit

    class NaNPixelMNIST(MNIST):
        def load(self, split: str):
            s = super().load(split)
            images = s.images.clone()
            images[0, 0, 0, 0] = float("nan")
            return TensorSplit(images, s.labels)

    class ExtraNameVAE(VAE):
        loss_names = ("nelbo", "bce", "kl", "extra")

    class MaxVAE(VAE):
        objective_reduction = "max"

    @hookimpl
    def register_datasets(register) -> None:
        register("nanpixel23", NaNPixelMNIST)

    @hookimpl
    def register_models(register) -> None:
        register("extraname23", ExtraNameVAE)
        register("maxvae23", MaxVAE)

    assert torch  # the plugins' images are torch tensors
    genzoo_register(types.SimpleNamespace(register_datasets=register_datasets, register_models=register_models),
                    "minors23")


@pytest.mark.usefixtures("minors")
@pytest.mark.parametrize(("args", "line"), [
    (["extraname23"], "Error: ExtraNameVAE.loss returned ['bce', 'kl', 'nelbo'] at step 1 of epoch 1, without "
                      "'extra' of ExtraNameVAE.loss_names: every step must return each of them"),
    (["maxvae23"], "Error: MaxVAE.objective_reduction is 'max': the trainer reduces a model's per-image objective by "
                   "'mean' or 'sum'"),
    (["vae", "--dataset", "nanpixel23"], "Error: dataset 'nanpixel23' gave train images holding NaN values; images "
                                         "must be float32 in [0, 1] (8-bit pixels divided by 255)")])
def test_a_plugins_mistake_is_one_line_saying_what_it_is(data_root, tmp_path, capsys, args, line) -> None:
    """Plugins M2-M4. Before: a loss name ``loss`` never returns was taken (an empty panel in loss.png, with
    matplotlib's raw warning); ``objective_reduction = 'max'`` was ``MaxVAE has 1 optimisers and
    objective_reduction 'max'``; one NaN pixel was ``values from nan to nan``."""
    code, _, err = run_main(["train", *args, "--data-root", str(data_root), "--epochs", "1", *TINY, "--out",
                             str(tmp_path / "run")], capsys)
    assert code == 1 and err.count("\n") == 1 and err.startswith(line), err


def test_a_model_name_holding_equals_is_refused(genzoo_register, capsys) -> None:
    """Plugins M5. Before: a model registered as ``a=b`` could never be given options in a compare (``--set
    a=b.hidden=3``: expected MODEL.FIELD=VALUE)."""
    from genzoo_plugins.vae import VAE
    from test_reliability_twentyfirst_h import registered, skipped

    names, warnings = registered(genzoo_register, "model", {"fine": VAE, "a=b": VAE}, capsys)
    assert "a=b" not in names
    assert warnings == [skipped("model", "TypeError: a model name must not hold '=' (compare's --set "
                                         "MODEL.FIELD=VALUE could never name it), got 'a=b'")], warnings


THREADING_SCRIPT = """
import sys, threading
from genzoo import Logger, hookimpl
from genzoo.cli import main
from genzoo.plugin_registry import register_plugin

class Uploading(Logger):
    def log_epoch(self, record, samples):  # a tracking client's uploader, never joined
        threading.Thread(target=threading.Event().wait, name="uploader", daemon=False).start()

class Plugin:
    @hookimpl
    def register_loggers(self, register):
        register("uploading23", Uploading)

register_plugin(Plugin(), "uploading23", "test-uploading23")
sys.argv = ["genzoo", *sys.argv[1:]]
main()
"""


def test_a_thread_plugin_code_leaves_running_does_not_keep_genzoo_from_exiting(data_root, tmp_path) -> None:
    """Plugins M1. Before: a logger's non-daemon thread kept the finished ``genzoo train`` from ever exiting (Python
    waits for such threads at exit): the run folder and final lines printed, then a hang."""
    from genzoo.cli import THREAD_WAIT_S

    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", THREADING_SCRIPT, "train", "vae", "--data-root", str(data_root),
                           "--epochs", "1", *TINY, "--log", "uploading23", "--out", str(run)],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120 + THREAD_WAIT_S)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"genzoo: warning: 1 thread started by plugin code ('uploader') still running {THREAD_WAIT_S:g} s after the "
        "command; genzoo exits without waiting for them")
    assert "final test metrics" in done.stdout and (run / "checkpoint.pt").is_file()


@pytest.mark.parametrize("after", [0.0, 0.1])
def test_ctrl_c_to_an_nproc_run_as_it_ends_is_never_a_silent_130(data_root, tmp_path, after) -> None:
    """Files M5. Before: SIGINT to a ``--nproc 2`` run's process group (a terminal's Ctrl-C) the moment it printed
    ``run folder:``: the run was complete, its final lines printed, exit 130 and no word of the signal. After: the
    launcher knows from rank 0 whether its command had finished: exit 0 then; else a line says what stopped."""
    log = tmp_path / "log"
    with open(log, "w") as out:
        run = subprocess.Popen([sys.executable, "-m", "genzoo", "train", "vae", "--nproc", "2", "--data-root",
                                str(data_root), "--epochs", "1", *TINY, "--out", str(tmp_path / "run")],
                               stdout=out, stderr=subprocess.STDOUT, env=subprocess_env(), start_new_session=True)
        deadline = time.monotonic() + 240
        while "run folder:" not in log.read_text() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(after)
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGINT)
        code = run.wait(timeout=240)
    lines = [line for line in log.read_text().splitlines() if "━" not in line]
    if code == 0:
        assert lines[-1].startswith("final test metrics"), lines
    else:
        assert code == 130 and (lines[-1] == "Aborted." or lines[-1].startswith("Interrupted:")), (code, lines)


def test_a_stop_signal_while_the_last_epoch_ends_is_honoured_and_a_resume_draws_the_pictures(
        genzoo_register, data_root, tmp_path, capsys) -> None:
    """Plugins M7. Before: SIGTERM while the last epoch's ``after_training`` ran (an AE's mixture fit: minutes) was
    dropped: the run went on to its test pass, pictures and results, exit 0, no word of the signal."""
    import types

    from genzoo_plugins.vae import VAE

    from genzoo import hookimpl

    class TermAfterVAE(VAE):
        def after_training(self, train) -> None:
            if any(p.grad is not None for p in self.parameters()):  # the trained model, not a check's fresh copy
                signal.raise_signal(signal.SIGTERM)

    @hookimpl
    def register_models(register) -> None:
        register("termafter23", TermAfterVAE)

    genzoo_register(types.SimpleNamespace(register_models=register_models), "termafter23")
    run = tmp_path / "run"
    code, _, err = run_main(["train", "termafter23", "--data-root", str(data_root), "--epochs", "1", *TINY, "--out",
                             str(run)], capsys)
    assert code == 143, err
    assert err.strip().splitlines()[-1] == (f"Interrupted: checkpoint saved to {run / FILENAME}; resume with: "
                                            f"genzoo resume {run}")
    assert load_checkpoint(run / FILENAME)["position"]["epoch"] == 1 and not (run / "loss.png").exists()
    code, out, err = run_main(["resume", str(run)], capsys)
    assert code == 0 and (run / "loss.png").is_file(), out + err


# -- the review after the merges -------------------------------------------------------------------------------

@pytest.mark.usefixtures("scribble")
def test_a_logger_that_writes_genzoos_files_and_then_raises_has_them_put_back(data_root, tmp_path, capsys,
                                                                                monkeypatch) -> None:
    """Before: the files were compared after the call only when it returned: one that raised after appending its
    line left metrics.jsonl damaged (exit 0, then eval and resume refused the run for ever)."""
    from genzoo.run_folder import read_metrics

    monkeypatch.setenv("GENZOO_TEST_SCRIBBLE", "metrics-raise")
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--data-root", str(data_root), "--epochs", "2", *TINY,
                             "--log", "scribble23", "--out", str(run)], capsys)
    assert code == 0, err
    assert "logger 'scribble23' failed and logs no more of this session: RuntimeError: upload failed" in err
    assert [record["epoch"] for record in read_metrics(run)] == [1, 2]


@pytest.mark.usefixtures("scribble")
def test_files_are_never_put_back_into_a_folder_made_in_place_of_the_moved_run(data_root, tmp_path, capsys,
                                                                              monkeypatch) -> None:
    """Before: the guard compared by path: the new empty folder looked changed, and config.json and metrics.jsonl
    were written into it, blamed on the logger; the move's line then said nothing more was written."""
    monkeypatch.setenv("GENZOO_TEST_SCRIBBLE", "move")
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--data-root", str(data_root), "--epochs", "2", *TINY,
                             "--log", "scribble23", "--out", str(run)], capsys)
    assert code == 1 and "was moved or replaced while genzoo was writing into it" in err, err
    assert list(run.iterdir()) == []
    assert (tmp_path / "moved-away" / "config.json").is_file()


def test_only_rank_0_of_a_launch_writes_its_outcome(tmp_path, monkeypatch) -> None:
    """Before: after ``leave()`` every rank was rank 0 of a world of one, and each wrote the outcome: a rank 1 that
    finished first wrote 0, and a launcher whose rank 0 was then killed exited 0."""
    from genzoo import distributed

    path = tmp_path / "outcome"
    monkeypatch.setenv(distributed.OUTCOME_ENV, str(path))
    monkeypatch.setattr(distributed, "_joined", [True])
    monkeypatch.setenv("RANK", "1")
    distributed.say_outcome(0)
    assert not path.exists()
    monkeypatch.setenv("RANK", "0")
    distributed.say_outcome(130)
    assert path.read_text() == "130"


def test_sample_and_export_of_a_run_need_no_dataset_plugin(genzoo_register, data_root, tmp_path, capsys) -> None:
    """Before: every reader of a finished run looked up its dataset plugin: ``sample`` and ``export`` of a run whose
    dataset plugin was gone failed with ``unknown dataset``, though neither loads data."""
    import types

    from genzoo_plugins.datasets.mnist import MNIST

    from genzoo import hookimpl, plugin_registry

    @hookimpl
    def register_datasets(register) -> None:
        register("gone23", type("GoneMNIST", (MNIST,), {}))

    plugin = types.SimpleNamespace(register_datasets=register_datasets)
    genzoo_register(plugin, "gone23")
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--dataset", "gone23", "--data-root", str(data_root), "--epochs", "1",
                             *TINY, "--out", str(run)], capsys)
    assert code == 0, err
    plugin_registry.unregister_plugin("gone23")
    plugin_registry.register_plugin(types.SimpleNamespace(), "gone23", "test-gone23")  # the fixture undoes it
    for command in (["sample", str(run), "--out", str(tmp_path / "s.png")],
                    ["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "export")]):
        code, _, err = run_main(command, capsys)
        assert code == 0, (command, err)


def test_the_cli_handles_ctrl_c_as_it_handles_sigterm(genzoo_register, data_root, tmp_path, capsys) -> None:
    """Before: SIGINT kept Python's own handler outside training, so a copy of it during the unwinding of the first
    could raise again inside the CLI's handling of it (a KeyboardInterrupt traceback)."""
    import types

    from genzoo_plugins.vae import VAE

    from genzoo import hookimpl
    from genzoo.trainer import StopAtOnce

    seen = []

    class WatchingVAE(VAE):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            seen.append(signal.getsignal(signal.SIGINT))

    @hookimpl
    def register_models(register) -> None:
        register("watching23", WatchingVAE)

    genzoo_register(types.SimpleNamespace(register_models=register_models), "watching23")
    code, _, err = run_main(["train", "watching23", "--data-root", str(data_root), "--epochs", "1", *TINY,
                             "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert seen and isinstance(seen[0], StopAtOnce)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after the command


def test_a_finished_run_whose_loss_can_no_longer_be_copied_is_still_read(genzoo_register, data_root, tmp_path,
                                                                          capsys, monkeypatch) -> None:
    """Before: the refusal of a loss that cannot be deep-copied ran in every build, so a finished run of such a
    loss (trained before the refusal, or before its plugin changed) could not be evaluated, sampled or exported;
    now only training and resuming refuse it."""
    from test_reliability_twentythird_d2 import CopiedLockBCE, LossPlugin

    genzoo_register(LossPlugin(), "f3-losses")
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--loss", "copied-lock-bce", "--data-root", str(data_root),
                             "--epochs", "1", *TINY, "--out", str(run)], capsys)
    assert code == 0, err

    def cannot(self, memo):
        raise TypeError("cannot pickle '_thread.lock' object")

    monkeypatch.setattr(CopiedLockBCE, "__deepcopy__", cannot)
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", "--iwae-k", "2", "--test-limit", "100",
                             "--data-root", str(data_root)], capsys)
    assert code == 0, err
    code, _, err = run_main(["train", "vae", "--loss", "copied-lock-bce", "--data-root", str(data_root),
                             "--epochs", "1", *TINY, "--out", str(tmp_path / "again")], capsys)
    assert code == 1 and "cannot be deep-copied" in err, err


def test_a_dataset_that_moves_the_working_directory_while_loading_is_put_back_and_named(genzoo_register, data_root,
                                                                                         tmp_path, capsys,
                                                                                         monkeypatch) -> None:
    """Left by plugins F6's fix: a dataset plugin's calls were blamed but not guarded, so one that changed directory
    while loading (to find a file of its own) sent the run to another folder without a word."""
    import os
    import types

    from genzoo_plugins.datasets.mnist import MNIST

    from genzoo import hookimpl

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    class WanderingMNIST(MNIST):
        def load(self, split: str):
            loaded = super().load(split)
            os.chdir(elsewhere)
            return loaded

    @hookimpl
    def register_datasets(register) -> None:
        register("wandering23", WanderingMNIST)

    genzoo_register(types.SimpleNamespace(register_datasets=register_datasets), "wandering23")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(["train", "vae", "--dataset", "wandering23", "--data-root", str(data_root), "--epochs",
                             "1", *TINY, "--out", "runs/w"], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("Error: dataset 'wandering23' from plugin 'wandering23' (distribution 'test-wandering23') "
                          f"changed the working directory ({tmp_path}, set to {elsewhere}) while loading its train "
                          "split; they are put back (the Dataset contract: "), err
    assert Path.cwd() == tmp_path and not (tmp_path / "runs").exists() and list(elsewhere.iterdir()) == []


def test_standard_output_closed_by_code_no_guard_covers_fails_as_a_closed_stdout_does() -> None:
    """Plugins F2, for code no guard covers: a ``ValueError`` from writing to a closed stream (a traceback after a
    finished run, before) is the ``OutputError`` a stdout the shell closed gives, which ``main`` says in one line."""
    import io

    from genzoo.cli import OutputError, TaggedStdout

    stream = io.StringIO()
    tagged = TaggedStdout(stream)
    tagged.write("fine\n")
    stream.close()
    with pytest.raises(OutputError, match="standard output is closed"):
        tagged.write("lost\n")


# -- the twenty-first hostile pass (files), found at the end of the session ------------------------------------

@pytest.mark.parametrize("plugins", [
    {}, {"dataset": {"name": "mnist", "distribution": "genzoo", "version": "0.1.0"}},
    {"model": {"name": "ae", "distribution": "genzoo", "version": "0.1.0"},
     "dataset": {"name": "mnist", "distribution": "genzoo", "version": "0.1.0"}},
    {"model": {"name": "vae", "distribution": "genzoo", "version": "0.1.0"},
     "dataset": {"name": "nosuchds", "distribution": "genzoo", "version": "0.1.0"}}])
def test_a_plugins_record_not_of_the_runs_own_model_and_dataset_is_refused(data_root, tmp_path, capsys,
                                                                           plugins) -> None:
    """Twenty-first pass, files M1. Before: ``plugins.model.name`` ``ae`` in a ``vae`` run was the entry checked
    (another distribution's ``vae`` then passed), ``{}`` read as a run from before, ``nosuchds`` was ``unknown
    dataset`` of a run whose dataset is installed."""
    import json

    run = tmp_path / "run"
    assert run_main(["train", "vae", "--data-root", str(data_root), "--epochs", "1", *TINY, "--out", str(run)],
                    capsys)[0] == 0
    config = json.loads((run / "config.json").read_text())
    config["plugins"] = plugins
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", "--iwae-k", "2", "--test-limit", "100",
                             "--data-root", str(data_root)], capsys)
    assert code == 1 and err.startswith(f"Error: {run / 'config.json'} is not a genzoo run configuration: plugins is "), err
    assert err.rstrip().endswith("not the distribution and version of its model 'vae' and dataset 'mnist'"), err


@pytest.mark.usefixtures("mnist_root")
def test_a_leaderboard_killed_outright_stops_its_genzoo_child_with_a_checkpoint(tmp_path: Path) -> None:
    """Twenty-first pass, files F1. Before: SIGKILL to the leaderboard (alone, or to its group while genzoo ran in a
    session of its own) left its ``genzoo train`` child training as an orphan, holding its run: the rerun the
    leaderboard advised was refused as in use. Now the kernel sends genzoo SIGTERM when the leaderboard dies."""
    board, out, child = _leaderboard(tmp_path)
    board.send_signal(signal.SIGKILL)
    board.communicate(timeout=60)
    deadline = time.monotonic() + 120
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists()
    assert load_checkpoint(out / "runs" / "vae" / FILENAME)["position"]["epoch"] < 50
