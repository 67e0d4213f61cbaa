"""Training on two processes (torchrun, gloo, CPU) equals training on one (issue 13).

Three launches in all, shared by every assertion (the CPU is shared, so each is slow):
one process (plain ``python``), then two (``torchrun --nproc-per-node 2``), then one
again, each running several jobs of ``tests/distributed_support.py``. The models' own
noise is switched off there (see its docstring), so the runs must agree to float rounding.

Tolerances: AE and VAE per-epoch losses within 1e-6 relative, weights within 1e-4
relative + 1e-5 absolute (the bound once covered the AE's fitted mixture, 4e-5 on
log-weights of about 3; the mixture is the gmm sampler's now, not the model's). The GAN's generator batch-normalises fakes that, without
noise, are all alike: the gradients of its batch-norm parameters are then rounding
noise, which Adam turns into steps of the learning rate, so its generator is checked
within 5e-3 absolute (2e-3 seen) and its losses within 5e-3 relative (1.1e-3 seen);
its discriminator, which sees every image, within 1e-3 relative + 2e-5 absolute (5e-6 seen).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from distributed_support import TEST_LIMIT, TRAIN_LIMIT, free_port
from reliability_support import GO_FILE, PAUSE_AT, PAUSED_FILE, TIMING, subprocess_env, write_fake_mnist

from genzoo.checkpoint import load_checkpoint
from genzoo.run_folder import read_metrics

SUPPORT = Path(__file__).resolve().parent / "distributed_support.py"
TORCHRUN = Path(sys.executable).parent / "torchrun"
TIMEOUT = 900  # seconds per launch: two processes on a CPU shared with other workers

pytestmark = pytest.mark.skipif(not TORCHRUN.exists() or not torch.distributed.is_available(),
                                reason="torch.distributed with torchrun is needed")

#: model -> (loss rtol, weights rtol, weights atol), for the parameters other than GAN_LOOSE's.
TOLERANCE = {"ae": (1e-6, 1e-4, 1e-5), "vae": (1e-6, 1e-4, 1e-5), "gan": (5e-3, 1e-3, 2e-5)}
GAN_LOOSE = ("generator.", 0.0, 5e-3)


def launch(spec: dict[str, Any], path: Path, processes: int) -> None:
    path.write_text(json.dumps(spec))
    env = subprocess_env()
    if processes == 1:
        command = [sys.executable, str(SUPPORT), str(path)]
    else:
        command = [str(TORCHRUN), "--standalone", "--nproc-per-node", str(processes), str(SUPPORT), str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One-process runs, two-process runs, and runs resumed across world sizes."""
    root = tmp_path_factory.mktemp("distributed")
    data = str(write_fake_mnist(root / "data"))  # 120 training and 40 test images
    # One process: the reference runs, and a VAE stopped at step 5 of 8 (mid epoch 2).
    launch({"data_root": data, "jobs": [*({"train": m, "out": str(root / f"one-{m}")} for m in TOLERANCE),
                                        {"train": "vae", "out": str(root / "vae-1to2"), "stop_after": 5}]},
           root / "one.json", 1)
    shutil.copytree(root / "vae-1to2", root / "vae-stopped-by-1")
    # Two processes: the same runs; that VAE resumed; an AE stopped at step 3 by a signal to rank 1 only.
    launch({"data_root": data, "jobs": [*({"train": m, "out": str(root / f"two-{m}")} for m in TOLERANCE),
                                        {"resume": str(root / "vae-1to2")},
                                        {"train": "ae", "out": str(root / "ae-2to1"), "stop_after": 3}]},
           root / "two.json", 2)
    shutil.copytree(root / "ae-2to1", root / "ae-stopped-by-2")
    launch({"data_root": data, "jobs": [{"resume": str(root / "ae-2to1")}]}, root / "again.json", 1)
    return root


def assert_close_runs(run: Path, reference: Path, model: str) -> None:
    """Same metric lines (bar timing) within the model's loss tolerance, same weights within its tolerance."""
    loss_rtol, rtol, atol = TOLERANCE[model]
    got, want = read_metrics(run), read_metrics(reference)
    assert [sorted(r) for r in got] == [sorted(r) for r in want]
    for a, b in zip(got, want):
        for key in b:
            if key not in TIMING:
                assert a[key] == pytest.approx(b[key], rel=loss_rtol), (run, a["epoch"], key)
    mine = load_checkpoint(run / "checkpoint.pt")
    theirs = load_checkpoint(reference / "checkpoint.pt")
    for key, value in theirs["model_state"].items():
        r, a = (GAN_LOOSE[1], GAN_LOOSE[2]) if model == "gan" and key.startswith(GAN_LOOSE[0]) else (rtol, atol)
        torch.testing.assert_close(mine["model_state"][key], value, rtol=r, atol=a, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("model", sorted(TOLERANCE))
def test_two_processes_equal_one(runs: Path, model: str) -> None:
    """Per-epoch train and test losses and final weights of a 2-process run equal a 1-process run's."""
    assert_close_runs(runs / f"two-{model}", runs / f"one-{model}", model)


def test_rank_zero_alone_writes_the_run_folder(runs: Path) -> None:
    """One config.json, one metric line per epoch, one checkpoint, the pictures; nothing else."""
    for model in TOLERANCE:
        one = sorted(p.name for p in (runs / f"one-{model}").iterdir())
        assert sorted(p.name for p in (runs / f"two-{model}").iterdir()) == one
        assert [r["epoch"] for r in read_metrics(runs / f"two-{model}")] == [1, 2]


def test_a_stop_signal_to_one_rank_stops_every_rank_after_the_same_step(runs: Path) -> None:
    """SIGINT to rank 1 alone at step 3: one checkpoint at step 3, no metric line of an unfinished epoch."""
    state = load_checkpoint(runs / "ae-stopped-by-2" / "checkpoint.pt")
    assert (state["position"]["epoch"], state["position"]["step"]) == (0, 3)
    assert not (runs / "ae-stopped-by-2" / "metrics.jsonl").exists() or not read_metrics(runs / "ae-stopped-by-2")


def test_resume_across_world_sizes(runs: Path) -> None:
    """Stopped with 1 process and resumed with 2, or the reverse: equal to the uninterrupted 1-process run."""
    stopped = load_checkpoint(runs / "vae-stopped-by-1" / "checkpoint.pt")["position"]
    assert (stopped["epoch"], stopped["step"]) == (1, 1)
    assert_close_runs(runs / "vae-1to2", runs / "one-vae", "vae")
    assert_close_runs(runs / "ae-2to1", runs / "one-ae", "ae")


def genzoo_train(data: str, out: Path, *extra: str) -> list[str]:
    """``python -m genzoo train ae`` with the settings of the support script's runs."""
    return [sys.executable, "-m", "genzoo", "train", "ae", "--epochs", "2", "--batch-size", "32", "--seed", "3",
            "--latent", "4", "--train-limit", str(TRAIN_LIMIT), "--test-limit", str(TEST_LIMIT), "--device", "cpu",
            "--data-root", data, "--no-download", "--out", str(out), *extra]


#: Imported first by every Python process of a launch: at exit each rank notes whether it still holds its
#: process group (``RANK-joined`` or ``RANK-left`` in GENZOO_TEST_EXIT_DIR); a process whose interpreter
#: finalizes (its modules torn down) notes ``RANK-finalized`` (``launcher-finalized`` for the launcher).
EXIT_RECORDER = '''
import atexit, os
from pathlib import Path

def record():
    import sys
    if "RANK" in os.environ and "torch.distributed" in sys.modules:
        import torch.distributed as dist
        state = "joined" if dist.is_initialized() else "left"
        Path(os.environ["GENZOO_TEST_EXIT_DIR"], os.environ["RANK"] + "-" + state).write_text("")

atexit.register(record)

class Finalized:
    def __init__(self):
        self.path = Path(os.environ["GENZOO_TEST_EXIT_DIR"], os.environ.get("RANK", "launcher") + "-finalized")
        self.write = Path.write_text

    def __del__(self):
        self.write(self.path, "")

FINALIZED = Finalized()
'''


def test_nproc_launches_through_torch_and_equals_one_process(runs: Path, tmp_path: Path) -> None:
    """``genzoo train ae --nproc 2`` trains one run on two processes, equal to the one-process run.

    Each rank leaves its process group before it exits: a group left to the interpreter's exit
    once ended a rank whose run was complete in C++'s ``terminate`` (SIGABRT), failing the launch.
    Each rank also ends without the interpreter's finalization (its ``atexit`` functions still run):
    DDP keeps gloo's threads past leaving, and one touching Python while the interpreter was torn
    down aborted a complete rank the same way in CI. The launcher, which never joined, finalizes.
    Resumed on two processes, the complete run says so once.
    """
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(EXIT_RECORDER)
    (tmp_path / "exits").mkdir()
    env = subprocess_env(PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]),
                         GENZOO_TEST_EXIT_DIR=str(tmp_path / "exits"))
    done = subprocess.run(genzoo_train(str(runs / "data"), runs / "nproc-ae", "--nproc", "2"), env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("run folder:") == 1  # rank 0 alone reports
    assert_close_runs(runs / "nproc-ae", runs / "one-ae", "ae")
    assert sorted(p.name for p in (tmp_path / "exits").iterdir()) == ["0-left", "1-left", "launcher-finalized"]
    again = subprocess.run([sys.executable, "-m", "genzoo", "resume", str(runs / "nproc-ae"), "--nproc", "2"],
                           env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stdout.count("already complete") == again.stdout.count("run folder:") == 1, again.stdout


def test_two_nodes_through_the_c10d_rendezvous_equal_one_process(tmp_path: Path) -> None:
    """Two ``torchrun --nnodes 2`` launches on this machine, as two nodes would run them, meet through the
    c10d rendezvous and train one run: equal to a one-process run, one run folder, written by rank 0's node.

    Each node runs in its own folder and no ``--out`` is given, so a folder the other node wrote would
    show; the models' noise is off (``distributed_support.py`` runs the CLI so), as in the other tests.
    """
    data = str(write_fake_mnist(tmp_path / "data"))
    cli = [str(SUPPORT), "train", "vae", "--epochs", "2", "--batch-size", "32", "--seed", "3", "--latent", "4",
           "--train-limit", str(TRAIN_LIMIT), "--test-limit", str(TEST_LIMIT), "--device", "cpu",
           "--data-root", data, "--no-download"]
    one = subprocess.run([sys.executable, *cli, "--out", str(tmp_path / "one")], env=subprocess_env(),
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert one.returncode == 0, one.stderr[-4000:]
    torchrun = [str(TORCHRUN), "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", f"genzoo-test-{os.getpid()}"]
    nodes = [tmp_path / "node-a", tmp_path / "node-b"]
    launches = []
    for node in nodes:
        node.mkdir()
        launches.append(subprocess.Popen([*torchrun, *cli], cwd=node, env=subprocess_env(), stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True))
    try:
        outputs = [launch.communicate(timeout=TIMEOUT) for launch in launches]
    finally:
        for launch in launches:
            if launch.poll() is None:
                launch.kill()
    assert [launch.returncode for launch in launches] == [0, 0], [err[-4000:] for _, err in outputs]
    written = [sorted((node / "runs").iterdir()) if (node / "runs").exists() else [] for node in nodes]
    assert sorted(len(w) for w in written) == [0, 1], written  # one run folder, on one node
    main = 0 if written[0] else 1
    assert [sorted(p.name for p in node.iterdir()) for node in nodes][1 - main] == []  # the other wrote nothing
    assert [out.count("run folder:") for out, _ in outputs] == [int(i == main) for i in range(2)]
    assert_close_runs(written[main][0], tmp_path / "one", "vae")


#: Imported first by every Python process of a launch: each rank (not the launcher) fails in ``setup``, before
#: it joins the group or writes anything, with a line of its own.
FAILING_RANKS = '''
import os
if "RANK" in os.environ:
    from genzoo import distributed
    from genzoo.errors import GenzooError

    def fail(device):
        raise GenzooError("this rank cannot start (planted by the test)")

    distributed.setup = fail
'''


def test_nproc_with_a_failing_rank_ends_in_one_error_line(tmp_path: Path) -> None:
    """Ranks that fail before any checkpoint (each rank's ``setup`` made to fail; a bad GENZOO_JOIN_TIMEOUT,
    once the way to do it, is now refused by the launcher): their own Error lines, then the launcher's, which
    suggests no resume; no traceback, no run folder left."""
    data = str(write_fake_mnist(tmp_path / "data"))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(FAILING_RANKS)
    env = subprocess_env(PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(genzoo_train(data, tmp_path / "run", "--nproc", "2"), env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("genzoo: warning:")]
    assert lines[-1].startswith("Error: training process ") and "exited with code 1" in lines[-1], done.stderr
    assert "nothing to resume" in lines[-1] and "genzoo resume" not in done.stderr, lines[-1]
    # Above it the failed ranks' own lines; rank 0 says ``Aborted.`` instead when the launcher stopped it
    # (rank 1 failed first) before it met the error itself. Rank 1, stopped so, says nothing.
    own = [line for line in lines[:-1] if line]
    planted = "Error: this rank cannot start (planted by the test)"
    assert planted in own, done.stderr
    assert all(line == planted or line == "Aborted." for line in own), done.stderr
    assert own.count("Aborted.") <= 1, done.stderr
    assert not (tmp_path / "run").exists()


def test_kill_9_of_one_rank_then_resume_with_one_process(runs: Path, tmp_path: Path) -> None:
    """kill -9 of rank 0 while it trains: torchrun stops rank 1, the checkpoint stays, a resume finishes the run."""
    run, paused, go = tmp_path / "run", tmp_path / "paused", tmp_path / "go"
    command = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", str(Path(__file__).parent / "reliability_support.py"),
               "train", "steered-vae", "--epochs", "2", "--batch-size", "32", "--train-limit", str(TRAIN_LIMIT),
               "--test-limit", str(TEST_LIMIT), "--device", "cpu", "--data-root", str(runs / "data"), "--no-download",
               "--checkpoint-every", "1", "--out", str(run)]
    # Each rank pauses inside the optimiser step of step 6 (epoch 2, step 2): the checkpoint holds step 5.
    env = subprocess_env(**{PAUSE_AT: "6", PAUSED_FILE: str(paused), GO_FILE: str(go)})
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not paused.exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert paused.exists(), launcher.communicate()[0][-4000:] if launcher.poll() is not None else "no pause"
        ranks = {int(env_of(pid).get("RANK", "-1")): pid for pid in children(launcher.pid)}
        os.kill(ranks[0], signal.SIGKILL)
        go.write_text("go")  # rank 1 goes on, to find its peer gone
        output = launcher.communicate(timeout=TIMEOUT)[0]
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0, output[-4000:]
    position = load_checkpoint(run / "checkpoint.pt")["position"]
    assert (position["epoch"], position["step"]) == (1, 1), position
    assert [r["epoch"] for r in read_metrics(run)] == [1]

    resumed = subprocess.run([sys.executable, str(Path(__file__).parent / "reliability_support.py"), "resume", str(run)],
                             env=subprocess_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    final = load_checkpoint(run / "checkpoint.pt")["position"]
    assert (final["epoch"], final["step"], final["global_step"]) == (2, 0, 8)


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def env_of(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)


def test_a_batch_too_small_to_give_every_rank_an_image_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """33 images in batches of 32 on 2 processes: a last batch of 1 cannot be split; refused before any folder."""
    from genzoo import GenzooError, distributed
    from genzoo.building import check_batch_size
    from genzoo.plugin_registry import registry
    from genzoo.train_config import TrainConfig

    model = registry().build_model("ae", (1, 28, 28))
    config = TrainConfig(model="ae", batch_size=32)
    check_batch_size(config, 33, model)  # one process: fine
    monkeypatch.setattr(distributed, "world", lambda: (0, 2))
    with pytest.raises(GenzooError, match="2 processes share each batch of 32 images, but 33 training images leave "
                                          "a batch of 1"):
        check_batch_size(config, 33, model)
    check_batch_size(config, 34, model)


def test_nproc_inside_a_torchrun_launch_launches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun each rank sees --nproc again: it launches nothing; a different count is refused."""
    from genzoo import GenzooError, distributed

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert (distributed.check_processes(1), distributed.check_processes(2)) == (False, True)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # left in a shell, without the rest of a launch: no launch
    assert (distributed.check_processes(1), distributed.check_processes(2)) == (False, True)
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun gives each of its ranks
    assert (distributed.check_processes(1), distributed.check_processes(2)) == (False, False)
    with pytest.raises(GenzooError, match="--nproc 3 inside a torchrun launch of 2 processes per machine"):
        distributed.check_processes(3)


def test_a_manual_model_with_parameters_outside_its_child_modules_is_refused_on_several_processes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """DDP wraps a manual model's children; a trainable parameter of its own would never be averaged."""
    from genzoo import GenzooError, distributed
    from genzoo.plugin_registry import registry
    from genzoo.trainer import replicate

    model = registry().build_model("gan", (1, 28, 28))
    model.temperature = torch.nn.Parameter(torch.ones(()))
    assert replicate(model, distributed.GradientScale()) == {}  # one process: nothing to wrap
    monkeypatch.setattr(distributed, "world", lambda: (0, 2))
    with pytest.raises(GenzooError, match=r"GAN steps its own optimisers and holds trainable parameters "
                                          r"\['temperature'\] outside its child modules"):
        replicate(model, distributed.GradientScale())


@pytest.mark.parametrize(("cores", "local", "threads"), [(8, 2, 4), (16, 8, 2), (2, 2, 1), (3, 8, 1)])
def test_each_process_gets_the_cores_divided_by_the_processes_of_its_machine(
        monkeypatch: pytest.MonkeyPatch, cores: int, local: int, threads: int) -> None:
    """N processes on one machine never oversubscribe its cores: ``setup`` gives each ``cores // N`` threads (at
    least one), whatever torchrun set; the cores are those this process may run on, not the machine's count."""
    from genzoo import distributed

    monkeypatch.setenv("WORLD_SIZE", str(2 * local))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local))
    monkeypatch.setattr(distributed, "_join", lambda backend: None)  # no process group: only the threads are set
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 7)
        assert distributed.setup(torch.device("cpu")) == torch.device("cpu")
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
