"""Found by the fifth look (fourth hostile pass): distributed faults, ``--nproc`` checks, ``compare --nproc``.

Each test failed before its fix (docs/reliability.md, "Found by the fifth look"). Few of
them start processes: two ranks on a shared two-core machine are slow. The one that
launches ranks (``compare --nproc 2``) makes every process noiseless through a
``sitecustomize`` module, as tests/distributed_support.py does for its own runs, so two
processes must equal one to float rounding.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
import torch
from distributed_support import TEST_LIMIT, TRAIN_LIMIT, free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import TIMING, run_main, subprocess_env, write_fake_mnist

from genzoo import GenzooError, building, distributed
from genzoo.checkpoint import load_checkpoint
from genzoo.run_folder import read_metrics
from genzoo.train_config import TrainConfig

TESTS = Path(__file__).resolve().parent
TIMEOUT = 600  # seconds a subprocess may take on a CPU shared with other workers; a hang fails at this bound


def listening(port: int) -> bool:
    """Whether some process listens on TCP ``port`` (Linux /proc, without connecting to it)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        lines = Path(table).read_text().splitlines()[1:] if Path(table).exists() else []
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return True
    return False


def genzoo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genzoo", *args], env=env or subprocess_env(), capture_output=True,
                          text=True, timeout=TIMEOUT)


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "ae", "--epochs", "1", "--batch-size", "32", "--latent", "4", "--train-limit", "64",
            "--test-limit", "16", "--device", "cpu", "--data-root", str(data), "--no-download", "--out", str(out),
            *extra]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("genzoo: warning:")]


# -- F3: a launch environment left behind, without a launcher ------------------------------------------------


def stale_launch(port: int, **extra: str) -> dict[str, str]:
    return subprocess_env(WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **extra)


def test_a_stale_launch_environment_gives_up_after_the_join_timeout_in_one_line(tmp_path: Path) -> None:
    """WORLD_SIZE=2 RANK=0 ... and no other rank: one Error line after GENZOO_JOIN_TIMEOUT, no run folder."""
    data = write_fake_mnist(tmp_path / "data")
    done = genzoo(*train_args(data, tmp_path / "run"), env=stale_launch(free_port(), GENZOO_JOIN_TIMEOUT="2"))
    assert done.returncode == 1, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: no other training process joined within 2 s"), lines
    assert "looks like a torchrun launch" in lines[0] and "WORLD_SIZE=2" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_master_port_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    """Rank 0 of a launch whose MASTER_PORT another program listens on: one line naming the port, at once."""
    data = write_fake_mnist(tmp_path / "data")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = genzoo(*train_args(data, tmp_path / "run"), env=stale_launch(port, GENZOO_JOIN_TIMEOUT="60"))
    assert done.returncode == 1, done.stderr
    lines = error_lines(done.stderr)
    assert lines == [f"Error: cannot join the process group: MASTER_PORT={port} is in use by another program on "
                     "this machine; give the launch a free port"], done.stderr
    assert not (tmp_path / "run").exists()


def test_sigterm_while_waiting_for_the_other_ranks_ends_at_once_in_one_line(tmp_path: Path) -> None:
    """SIGTERM while rank 0 waits in the rendezvous (a blocking C++ call): ``Aborted.``, exit 143, nothing written."""
    data, port = write_fake_mnist(tmp_path / "data"), free_port()
    process = subprocess.Popen([sys.executable, "-m", "genzoo", *train_args(data, tmp_path / "run")],
                               env=stale_launch(port, GENZOO_JOIN_TIMEOUT="3000"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not listening(port) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listening(port), process.communicate()[1] if process.poll() is not None else "never listened"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)  # before the fix: still waiting, 30 minutes
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert error_lines(stderr) == ["Aborted."], stderr
    assert not (tmp_path / "run").exists()


# -- F4: launcher variables that are no integers --------------------------------------------------------------


@pytest.mark.parametrize(("variables", "named"), [
    ({"LOCAL_RANK": "abc"}, "LOCAL_RANK='abc'"),
    ({"LOCAL_WORLD_SIZE": "two"}, "LOCAL_WORLD_SIZE='two'"),
    ({"RANK": "-1"}, "RANK='-1'"),
    ({"MASTER_PORT": "70000"}, "MASTER_PORT='70000'"),
    ({"WORLD_SIZE": "\u00b2"}, "WORLD_SIZE='\u00b2'"),  # a digit to str.isdigit, not to int()
    ({"RANK": "5"}, "RANK=5 in the environment is not below WORLD_SIZE=2"),
])
def test_a_launcher_variable_that_is_no_integer_is_one_line_naming_it(
        variables: dict[str, str], named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """LOCAL_RANK=abc (and the other launcher variables genzoo or torch read): one line, before any join."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    data = write_fake_mnist(tmp_path / "data")
    code, _, err = run_main(train_args(data, tmp_path / "run"), capsys)
    assert code == 1, err
    assert error_lines(err) == [error_lines(err)[0]] and err.startswith("Error: ") and named in err, err
    assert not (tmp_path / "run").exists()


def test_nproc_with_a_local_world_size_that_is_no_integer_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "abc")
    with pytest.raises(GenzooError, match="LOCAL_WORLD_SIZE='abc' in the environment is not an integer"):
        distributed.check_processes(2)


#: Every value the environment can hold (no NUL, no lone surrogates), and the awkward ones by name.
ENV_TEXT = st.one_of(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24),
                     st.sampled_from(["", " 1", "1 ", "+1", "0x10", "1e3", "\u0663", "\u00b2", "9" * 40, "00"]),
                     st.integers(-5, 70_000).map(str))
EXAMPLES = 300


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(distributed.LAUNCH_VARIABLES)), value=ENV_TEXT)
def test_any_launcher_variable_value_is_a_number_in_range_or_one_line(name: str, value: str) -> None:
    """Hypothesis: each launcher variable's value reads as an integer in its range, or as one GenzooError naming it."""
    low, high = distributed.LAUNCH_VARIABLES[name]
    with mock.patch.dict(os.environ, {name: value}):
        try:
            number = distributed.launch_variable(name, 1)
        except GenzooError as exc:
            assert str(exc).startswith(f"{name}={value!r} in the environment is not an integer"), exc
            assert "\n" not in str(exc)
            return
    assert value.isascii() and value.isdigit() and number == int(value)
    assert number >= low and (high is None or number <= high)


# -- --nproc: checks before the launch, and the launcher's line -----------------------------------------------


@pytest.mark.parametrize("case", ["out not empty", "unknown logger", "no data", "batch too small for 2",
                                  "resume of no run"])
def test_nproc_checks_its_input_before_launching_one_error_line(case: str, tmp_path: Path) -> None:
    """Bad input to ``--nproc 2``: exactly one Error line, from the launching process; no rank starts."""
    data = write_fake_mnist(tmp_path / "data")
    out = tmp_path / "run"
    if case == "out not empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        args = train_args(data, out, "--nproc", "2")
    elif case == "unknown logger":
        args = train_args(data, out, "--nproc", "2", "--log", "no-such-logger")
    elif case == "no data":
        (tmp_path / "empty").mkdir()
        args = train_args(tmp_path / "empty", out, "--nproc", "2")
    elif case == "batch too small for 2":  # 33 images in batches of 32: a last batch of 1 for 2 processes
        args = [*train_args(data, out, "--nproc", "2"), "--train-limit", "33"]
    else:
        args = ["resume", str(out), "--nproc", "2"]
    done = genzoo(*args)
    assert done.returncode == 1, done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert "training process" not in lines[0], lines  # the launching process's own line, not the launcher's
    if case == "out not empty":
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    else:
        assert not out.exists()


# -- rank 0 downloads, the others wait ----------------------------------------------------------------------


@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("fails", [False, True])
def test_rank_zero_loads_and_downloads_first_the_others_after(rank: int, fails: bool,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0 loads (downloading what is missing) before the barrier, the others after; its failure reaches them."""
    events: list[str] = []
    sent: list[str | None] = []

    def load_split(dataset: str, split: str, *args: object) -> str:
        events.append(f"load {split}")
        if fails:
            raise GenzooError("MNIST is missing")
        return split

    def broadcast(value: str | None) -> str | None:
        events.append("barrier")
        sent.append(value)
        return value if rank == 0 else ("MNIST is missing" if fails else None)

    def gather(value: dict[str, str]) -> list[dict[str, str]]:
        events.append("agree")  # the ranks' data digests (nineteenth hostile pass on plugins, F9)
        return [value, value]

    monkeypatch.setattr(building, "load_split", load_split)
    monkeypatch.setattr(building, "data_sha256", lambda train, test: {"train": train, "test": test})
    monkeypatch.setattr(distributed, "broadcast", broadcast)
    monkeypatch.setattr(distributed, "gather", gather)
    monkeypatch.setattr(distributed, "world", lambda: (rank, 2))
    config = TrainConfig(model="ae")
    if fails:
        with pytest.raises(GenzooError, match="MNIST is missing"):
            building.load_splits(config, torch.device("cpu"))
        assert events == (["load train", "barrier"] if rank == 0 else ["barrier"])
        assert sent == (["MNIST is missing"] if rank == 0 else [None])
    else:
        assert building.load_splits(config, torch.device("cpu")) == ("train", "test")  # type: ignore[comparison-overlap]
        assert events == (["load train", "load test", "barrier", "agree"] if rank == 0
                          else ["barrier", "load train", "load test", "agree"])


# -- compare --nproc ------------------------------------------------------------------------------------------

#: Imported by every Python process of the compare test (its folder is first on PYTHONPATH): the models'
#: noise off, and, with GENZOO_TEST_PAUSE=MODEL:STEP, each rank training MODEL waits at that step until a
#: stop signal reaches it (announcing the wait with a file ``paused-RANK`` in GENZOO_TEST_PAUSE_DIR).
SITECUSTOMIZE = '''
import os, sys
sys.path.insert(0, {tests!r})
import signal, time
from pathlib import Path
import distributed_support
import genzoo.trainer
from genzoo import distributed

distributed_support.noiseless()
if os.environ.get("GENZOO_TEST_PAUSE"):
    model_name, at = os.environ["GENZOO_TEST_PAUSE"].split(":")
    step, done = genzoo.trainer.training_step, [0]

    def paused(model, *args, **kwargs):
        stats = step(model, *args, **kwargs)
        if type(model).__name__ == model_name:
            done[0] += 1
            if done[0] == int(at):
                came = []
                handler = signal.getsignal(signal.SIGTERM)
                def note(signum, frame):
                    came.append(signum)
                    handler(signum, frame)
                signal.signal(signal.SIGTERM, note)
                Path(os.environ["GENZOO_TEST_PAUSE_DIR"], f"paused-{{distributed.world()[0]}}").write_text("")
                while not came:
                    time.sleep(0.05)
                signal.signal(signal.SIGTERM, handler)
        return stats

    genzoo.trainer.training_step = paused
'''


def compare_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["compare", "ae", "vae", "--epochs", "2", "--batch-size", "32", "--seed", "3", "--latent", "4",
            "--train-limit", str(TRAIN_LIMIT), "--test-limit", str(TEST_LIMIT), "--device", "cpu",
            "--data-root", str(data), "--fid-samples", "0", "--iwae-k", "2", "--out", str(out), *extra]


def noiseless_env(tmp_path: Path) -> dict[str, str]:
    """A subprocess environment whose every Python process imports :data:`SITECUSTOMIZE` first."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(tests=str(TESTS)))
    return subprocess_env(PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))


def stopped_while_paused(args: list[str], env: dict[str, str], pause: str, tmp_path: Path) -> tuple[int, str]:
    """``genzoo ARGS`` whose two ranks pause at ``pause`` (MODEL:STEP); SIGTERM to it (the launcher) then."""
    paused = tmp_path / "paused"
    paused.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "genzoo", *args],
                               env={**env, "GENZOO_TEST_PAUSE": pause, "GENZOO_TEST_PAUSE_DIR": str(paused)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(list(paused.iterdir())) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(list(paused.iterdir())) == 2, process.communicate()[1][-4000:] if process.poll() else "no pause"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stderr


def test_sigterm_to_the_nproc_launcher_reaches_every_rank_one_checkpoint_one_line(tmp_path: Path) -> None:
    """SIGTERM to ``genzoo train vae --nproc 2`` (the launcher) while both ranks are at step 5 of 8.

    Both ranks stop after that step: one checkpoint at step 5, one ``Interrupted:`` line (rank 0's) naming
    ``genzoo resume RUN``, exit 143, no other line; the resume (one process) finishes the run.
    """
    data, run = write_fake_mnist(tmp_path / "data", 120, 40), tmp_path / "run"
    args = ["train", "vae", "--epochs", "2", "--batch-size", "32", "--seed", "3", "--latent", "4", "--train-limit",
            str(TRAIN_LIMIT), "--test-limit", str(TEST_LIMIT), "--device", "cpu", "--data-root", str(data),
            "--no-download", "--out", str(run), "--nproc", "2"]
    code, stderr = stopped_while_paused(args, noiseless_env(tmp_path), "VAE:5", tmp_path)
    assert code == 128 + signal.SIGTERM, stderr[-4000:]
    said = [line for line in stderr.splitlines() if line.startswith(("Interrupted:", "Error:", "Aborted."))]
    assert said == [f"Interrupted: checkpoint saved to {run / 'checkpoint.pt'}; resume with: genzoo resume {run}"], \
        stderr[-4000:]
    assert "Traceback" not in stderr
    assert "death signal" not in stderr, stderr[-4000:]  # torch's launcher's own log line (eleventh look)
    position = load_checkpoint(run / "checkpoint.pt")["position"]
    assert (position["epoch"], position["step"]) == (1, 1), position
    resumed = genzoo("resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]


def test_compare_nproc_equals_one_process_and_a_sigterm_to_it_leaves_a_continuable_compare(tmp_path: Path) -> None:
    """``compare ae vae --nproc 2``, SIGTERM to it while the VAE trains (step 5 of 8), then ``--resume --nproc 2``.

    The launcher passes the signal to both ranks: one checkpoint (step 5), one ``Interrupted:`` line naming
    ``genzoo compare --resume OUT``, exit 143. The continued compare ends with the per-epoch losses of a
    one-process compare (1e-6 relative, as tests/test_distributed.py) and writes its three files.
    """
    data = write_fake_mnist(tmp_path / "data", 120, 40)
    env = noiseless_env(tmp_path)
    one = genzoo(*compare_args(data, tmp_path / "one"), env=env)
    assert one.returncode == 0, one.stderr[-4000:]

    two = tmp_path / "two"
    code, stderr = stopped_while_paused(compare_args(data, two, "--nproc", "2"), env, "VAE:5", tmp_path)
    assert code == 128 + signal.SIGTERM, stderr[-4000:]
    interrupted = [line for line in stderr.splitlines() if line.startswith("Interrupted:")]
    assert len(interrupted) == 1 and interrupted[0].endswith(f"resume with: genzoo compare --resume {two}"), stderr
    assert not [line for line in stderr.splitlines() if line.startswith("Error:")], stderr[-4000:]
    assert "Traceback" not in stderr, stderr[-4000:]
    assert "death signal" not in stderr, stderr[-4000:]
    position = load_checkpoint(two / "runs" / "vae" / "checkpoint.pt")["position"]
    assert (position["epoch"], position["step"]) == (1, 1), position
    assert not (two / "results.json").exists()

    resumed = genzoo("compare", "--resume", str(two), "--nproc", "2", env=env)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    for name in ("results.json", "report.md", "compare.png"):
        assert (two / name).is_file(), name
    for model in ("ae", "vae"):
        got, want = read_metrics(two / "runs" / model), read_metrics(tmp_path / "one" / "runs" / model)
        assert [r["epoch"] for r in got] == [1, 2]
        for a, b in zip(got, want):
            for key in b:
                if key not in TIMING:
                    assert a[key] == pytest.approx(b[key], rel=1e-6), (model, a["epoch"], key)
    results = json.loads((two / "results.json").read_text())
    assert [m["run"] for m in results["models"]] == [str(Path("runs") / "ae"), str(Path("runs") / "vae")]
