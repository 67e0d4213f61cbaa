"""Runs for the distributed tests, started under ``torchrun`` (2 processes) or plain ``python`` (1).

``python tests/distributed_support.py SPEC.json`` carries out the jobs of SPEC in order in
one launch, so the tests need few launches: ``{"train": MODEL, "out": DIR}`` trains a
run, ``{"resume": DIR}`` resumes one; ``"stop_after": K`` on either raises SIGINT in the
last rank only after K more steps, as a Ctrl-C that reaches one process would (every rank
must then stop after the same step, with one checkpoint). A stopped job prints nothing
more and the next job runs. ``python tests/distributed_support.py train MODEL ...`` (any
first argument but a ``.json`` file) is ``python -m genzoo train MODEL ...`` with the
models' noise switched off, for launches whose command line is the CLI's own.

The model's own randomness is switched off (noise zero or one fixed row, no dropout): a
rank draws noise for its own shard, so with noise on, N processes equal one only in
distribution; without it they must equal it to float rounding, which is what is tested.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional

import genzoo.trainer
from genzoo import distributed
from genzoo.train_config import TrainConfig
from genzoo.trainer import Interrupted
from genzoo.training import resume_run, start_run

TRAIN_LIMIT = 101  # batches of 32 leave a last batch of 5: shards of 3 and 2 on two ranks
TEST_LIMIT = 37



def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now (for a launch's rendezvous)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

def noiseless() -> None:
    """Make every draw a model makes the same on each rank and in one process."""
    row = torch.linspace(-1, 1, 1000)

    def fixed_rows(*size: Any, **kwargs: Any) -> torch.Tensor:
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size
        kwargs.pop("generator", None)
        return row[: shape[-1]].expand(*shape).to(**kwargs).clone()

    torch.randn = fixed_rows  # type: ignore[assignment]
    torch.randn_like = lambda t, **kwargs: torch.zeros_like(t, **kwargs)  # type: ignore[assignment]
    torch.nn.functional.dropout = lambda input, p=0.5, training=True, inplace=False: input  # type: ignore[assignment]


def stop_after(steps: int) -> None:
    """Raise SIGINT in the last rank once ``steps`` more training steps are done."""
    step = genzoo.trainer.training_step
    done = [0]

    def counted(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        stats = step(*args, **kwargs)
        done[0] += 1
        rank, size = distributed.world()
        if done[0] == steps and rank == size - 1:
            signal.raise_signal(signal.SIGINT)
        return stats

    genzoo.trainer.training_step = counted  # type: ignore[assignment]


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    noiseless()
    original = genzoo.trainer.training_step
    for job in spec["jobs"]:
        genzoo.trainer.training_step = original
        if job.get("stop_after"):
            stop_after(job["stop_after"])
        try:
            if "train" in job:
                config = TrainConfig(model=job["train"], epochs=2, batch_size=32, seed=3, device="cpu",
                                     data_root=spec["data_root"], train_limit=TRAIN_LIMIT, test_limit=TEST_LIMIT,
                                     eval_batch_size=16)
                start_run(config, {"latent": 4}, out=job["out"], download=False)
            else:
                resume_run(job["resume"], download=False)
        except Interrupted:
            continue


if __name__ == "__main__":
    if sys.argv[1].endswith(".json"):
        main(sys.argv[1])
    else:
        from genzoo.cli import main as cli

        noiseless()
        cli(sys.argv[1:])
