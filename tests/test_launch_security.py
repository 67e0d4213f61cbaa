"""Ninth hostile pass F8 and F9: ``--nproc`` launches ran another local user's code.

F8: the launcher's c10d rendezvous kept its state in its TCP store as a pickle and unpickled
it every few seconds; any local user could list the store's keys and put theirs in (uid
65534 ran ``id`` as root). The launch now uses the static rendezvous on 127.0.0.1, whose
agent reads only JSON from the store, and genzoo's own collectives send JSON in tensors, not
pickles. F9: the ranks were started as ``python -m genzoo``, which imports a ``genzoo`` in
the current folder first; they now take the current folder off the module path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from reliability_support import subprocess_env, write_fake_mnist

from genzoo import distributed

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is needed")

#: The genzoo command line as the ``genzoo`` script runs it: not from the current folder.
GENZOO = [sys.executable, "-c", "import sys; del sys.path[0]; from genzoo.cli import main; main()"]


def test_nproc_ranks_never_import_a_genzoo_planted_in_the_current_folder(tmp_path: Path) -> None:
    """Another user's ``genzoo/`` in a folder anyone may write (as /tmp) ran in every rank; the launch ended 0
    with nothing written. Now the ranks run the installed genzoo: one run, the planted code never imported."""
    data = str(write_fake_mnist(tmp_path / "data"))
    shared = tmp_path / "shared"
    (shared / "genzoo").mkdir(parents=True)
    marker = tmp_path / "PLANTED-RAN"
    (shared / "genzoo" / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('ran\\n')\n")
    (shared / "genzoo" / "__main__.py").write_text("")
    out = tmp_path / "run"
    done = subprocess.run([*GENZOO, "train", "ae", "--nproc", "2", "--epochs", "1", "--batch-size", "32",
                           "--latent", "4", "--train-limit", "64", "--test-limit", "32", "--device", "cpu",
                           "--data-root", data, "--no-download", "--out", str(out)],
                          cwd=shared, env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not marker.exists()
    assert (out / "checkpoint.pt").is_file() and done.stdout.count("run folder:") == 1


def test_the_launch_meets_through_the_static_rendezvous_on_the_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not ``--standalone``: its c10d rendezvous unpickles its state from a store any local user can write."""
    import torch.distributed.run

    seen: dict[str, Any] = {}
    monkeypatch.setattr(torch.distributed.run, "run", lambda options: seen.update(vars(options)))
    distributed.launch(2, ["train", "ae"], lambda: None)
    assert seen["rdzv_backend"] == "static" and not seen["standalone"]
    assert seen["master_addr"] == "127.0.0.1" and 0 < seen["master_port"] < 65536
    assert seen["no_python"] and seen["training_script"] == sys.executable
    assert seen["training_script_args"][:2] == ["-u", "-c"] and seen["training_script_args"][3:] == ["train", "ae"]


def _collectives(rank: int, store_path: str, results: Any) -> None:
    """One rank: genzoo's collectives with every unpickler torch could use made to fail."""
    import pickle

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a collective unpickled what arrived")

    os.environ.update(OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store_path, 2), rank=rank, world_size=2)
    try:
        dist.distributed_c10d._unpickler = refuse  # type: ignore[attr-defined]
        pickle.loads = refuse
        pickle.Unpickler = refuse  # type: ignore[misc, assignment]
        summed = distributed.sum_dicts({"loss": 0.1 * (rank + 1), **({"only-1": 2.5} if rank else {})})
        sent = distributed.broadcast("runs/vae-1" if rank == 0 else "")
        failed = distributed.broadcast(None)
        results.put((rank, summed, sent, failed))
    finally:
        dist.destroy_process_group()


def test_genzoo_collectives_send_json_never_pickles(tmp_path: Path) -> None:
    """What another rank (or someone posing as one) sends is read as JSON: data, never code."""
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_collectives, args=(rank, str(tmp_path / "store"), results))
                 for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0, 0]
    got = sorted(results.get(timeout=5) for _ in processes)
    assert [rank for rank, *_ in got] == [0, 1]
    for _, summed, sent, failed in got:
        assert summed == {"loss": 0.1 + 0.2, "only-1": 2.5}  # the same sum, to the last bit, as the pickled one
        assert (sent, failed) == ("runs/vae-1", None)
