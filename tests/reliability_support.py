"""Helpers for the reliability, security and bad-input tests.

Small fake MNIST files (so these tests need no download and no shared data), test
models that stop, pause or diverge at a chosen step, and a command-line runner.

Run as a script, this file is ``genzoo`` with the test models registered: the
crash tests start it in a subprocess and kill it at a step they choose.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from genzoo_plugins.ae import AE
from genzoo_plugins.gan.model import GAN
from genzoo_plugins.vae import VAE

from genzoo import hookimpl
from genzoo.checkpoint import load_checkpoint
from genzoo.run_folder import read_metrics
from genzoo.trainer import REPEAT_WINDOW_S

HERE = Path(__file__).resolve().parent
TRAIN_IMAGES = 120
TEST_IMAGES = 40
#: Timing fields differ between any two runs; everything else in a metric line must not.
TIMING = ("train_seconds", "train_images_per_s", "eval_seconds")

# Environment variables through which a test steers a subprocess's model.
STEPS_FILE = "GENZOO_TEST_STEPS_FILE"  # append one line per training step taken
PAUSE_AT = "GENZOO_TEST_PAUSE_AT"  # after this many steps, announce and wait
PAUSE_MODEL = "GENZOO_TEST_PAUSE_MODEL"  # only this class pauses (say SteeredVAE; default: any)
PAUSED_FILE = "GENZOO_TEST_PAUSED_FILE"  # created when the pause starts
GO_FILE = "GENZOO_TEST_GO_FILE"  # the pause ends when this appears (absent: wait to be killed)


# -- data ----------------------------------------------------------------------------


def idx_bytes(data: torch.Tensor) -> bytes:
    """``data`` (uint8) as an IDX file: magic 0x0000080N, N big-endian sizes, the bytes."""
    header = bytes([0, 0, 0x08, data.dim()]) + b"".join(int(n).to_bytes(4, "big") for n in data.shape)
    return header + data.contiguous().numpy().tobytes()


def write_fake_mnist(root: Path, n_train: int = TRAIN_IMAGES, n_test: int = TEST_IMAGES) -> Path:
    """Write the four MNIST IDX files, random but fixed, under ``root/MNIST/raw``."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return Path(root)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A data folder with small fake MNIST files (120 training, 40 test images)."""
    return write_fake_mnist(tmp_path / "data")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared two-core machine two threads can be ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- test models ------------------------------------------------------------------------


class Steered:
    """Mixin: count steps; raise SIGINT, pause or go NaN at a chosen step.

    ``interrupt_at`` sends this process a real SIGINT after that many steps, as a
    Ctrl-C would; the environment variables above steer a subprocess instead.
    """

    interrupt_at: int | None = None
    #: How many times Ctrl-C is pressed at ``interrupt_at`` (twice: stop at once).
    presses = 1
    #: Seconds between presses: past the trainer's window in which the same signal again is a copy of the first.
    press_gap = REPEAT_WINDOW_S + 0.2
    #: The signal sent at ``interrupt_at``: Ctrl-C's, or SIGTERM as ``kill`` sends it.
    interrupt_signal = signal.SIGINT
    steps = 0

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The model's optimisers, the last stepped in a training step (the GAN's generator) hooked:
        the hook runs once a step is done, whoever steps it (the trainer or the model)."""
        optimizers = super().configure_optimizers()  # type: ignore[misc]
        list(optimizers.values())[-1].register_step_post_hook(lambda *_: self.stepped())
        return optimizers

    def stepped(self) -> None:
        type(self).steps += 1
        n = type(self).steps
        if os.environ.get(STEPS_FILE):
            fd = os.open(os.environ[STEPS_FILE], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, b"1\n")
            os.close(fd)
        if self.interrupt_at == n:
            for press in range(self.presses):
                if press:
                    time.sleep(self.press_gap)
                signal.raise_signal(self.interrupt_signal)
        pauses = os.environ.get(PAUSE_MODEL, type(self).__name__) == type(self).__name__
        if os.environ.get(PAUSE_AT) and int(os.environ[PAUSE_AT]) == n and pauses:
            _pause()


@pytest.fixture(autouse=True)
def torch_defaults() -> Iterator[None]:
    """torch's defaults as they were after each test: one that fails must not leave grad mode off for the next."""
    saved = torch.get_default_dtype(), torch.is_grad_enabled()
    yield
    torch.set_default_dtype(saved[0])
    torch.set_grad_enabled(saved[1])


def _pause() -> None:
    """Announce the pause, then wait for the go file or for the test to kill us."""
    Path(os.environ[PAUSED_FILE]).write_text("paused")
    go = os.environ.get(GO_FILE)
    deadline = time.monotonic() + 120  # never outlive a broken test by much
    while time.monotonic() < deadline:
        if go and os.path.exists(go):
            return
        time.sleep(0.01)
    os._exit(3)


class SteeredVAE(Steered, VAE):
    pass


class SteeredAE(Steered, AE):
    pass


class SteeredGAN(Steered, GAN):
    pass


class SteeredPlugin:
    """Registers the steered models as ``steered-vae``, ``steered-ae`` and ``steered-gan``."""

    @hookimpl
    def register_models(self, register):
        register("steered-vae", SteeredVAE)
        register("steered-ae", SteeredAE)
        register("steered-gan", SteeredGAN)


def reset_steering() -> None:
    for cls in (SteeredVAE, SteeredAE, SteeredGAN):
        cls.steps = 0
        cls.interrupt_at = None
        cls.presses = 1
        cls.press_gap = REPEAT_WINDOW_S + 0.2
        cls.interrupt_signal = signal.SIGINT


# -- running genzoo -------------------------------------------------------------------


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``genzoo ARGS`` in this process through ``genzoo.cli.main``; return code, out, err."""
    from genzoo.cli import main

    capsys.readouterr()  # only this command's output, not what the test printed before
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a genzoo subprocess: one thread (two may run at once on two cores)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("GENZOO_LOAD_PLUGINS", None)
    env.update(extra)
    return env


def site_env(site: Path, **extra: str) -> dict[str, str]:
    """:func:`subprocess_env` with ``site`` (a folder of installed-like plugins) first on ``PYTHONPATH``."""
    path = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess_env(PYTHONPATH=path, **extra)


def script_command(*args: str) -> list[str]:
    """The command line that runs this file as ``genzoo`` with the steered models."""
    return [sys.executable, str(Path(__file__).resolve()), *args]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes, to prove that nothing was written."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def without_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def assert_same_tensors(a: Any, b: Any, where: str = "") -> None:
    """Nested state (dicts, lists, tensors, numbers) equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_run(resumed: Path, reference: Path) -> None:
    """Same weights and optimiser states bit for bit, same metrics to 1e-6, each epoch once."""
    a, b = load_checkpoint(resumed), load_checkpoint(reference)
    assert_same_tensors(a["model_state"], b["model_state"], "model_state")
    assert_same_tensors(a["optimizers"], b["optimizers"], "optimizers")
    assert a["position"]["global_step"] == b["position"]["global_step"]
    got, want = without_timing(read_metrics(resumed)), without_timing(read_metrics(reference))
    assert [r["epoch"] for r in got] == [1, 2]
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for key in g:
            assert math.isclose(g[key], w[key], rel_tol=1e-6, abs_tol=1e-6), (key, g[key], w[key])


if __name__ == "__main__":
    from genzoo.cli import main
    from genzoo.plugin_registry import register_plugin

    torch.set_num_threads(1)
    register_plugin(SteeredPlugin(), "steered", "test-steered")  # as genzoo_register names it
    main(sys.argv[1:])


@pytest.fixture
def steered(genzoo_register: Any) -> Any:
    """The steered test models registered (and their steering reset) for one test."""
    reset_steering()
    genzoo_register(SteeredPlugin(), "steered")
    yield
    reset_steering()


def assert_one_line_error(code: int, err: str, *needles: str) -> str:
    """``err`` is one ``Error: ...`` line holding every needle, after exit status 1; that line."""
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# -- a finished tiny run, sampled and evaluated (the sampler-guard tests) ----------------

#: Evaluation options small enough for a test: 20 test images, IWAE with K=2, on the CPU.
EVAL = ["--test-limit", "20", "--iwae-k", "2", "--device", "cpu"]


def copied(run: Path, to: Path) -> Path:
    """A copy of the run folder ``run`` (its files) at ``to``, for a test that changes it."""
    to.mkdir()
    for file in run.iterdir():
        (to / file.name).write_bytes(file.read_bytes())
    return to


def sample(run: Path, sampler: str, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``genzoo sample RUN --sampler NAME -n 4``, the run's data beside it."""
    return run_main(["sample", str(run), "--sampler", sampler, "-n", "4", "--out", str(out),
                     "--data-root", str(run.parent / "data")], capsys)


def evaluate(run: Path, data: Path, sampler: str, capsys: pytest.CaptureFixture[str],
             fid: str = "10") -> tuple[int, dict[str, Any], str]:
    """``genzoo eval RUN --sampler NAME`` with mnist features: exit code, eval.json (empty on failure), stderr."""
    code, _, err = run_main(["eval", str(run), "--sampler", sampler, "--fid-samples", fid, "--features", "mnist",
                             "--data-root", str(data), *EVAL], capsys)
    result = json.loads((run / "eval.json").read_text()) if code == 0 else {}
    return code, result, err


def installed(site: Path, distribution: str, module: str, source: str) -> Path:
    """``source`` as module ``module`` of an installed-like distribution in ``site``, whose plugins every rank of
    a launch (plain genzoo processes) finds."""
    info = site / f"{module}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[genzoo]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(source)
    return site


def register_model(genzoo_register: Any, name: str, model: type) -> None:
    """``model`` registered as ``name`` by a test plugin of that name, distribution ``test-NAME`` (undone after the
    test by the ``genzoo_register`` fixture)."""
    import types

    @hookimpl
    def register_models(register: Any) -> None:
        register(name, model)

    genzoo_register(types.SimpleNamespace(register_models=register_models), name, f"test-{name}")
