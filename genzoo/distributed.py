"""Training on several processes through PyTorch's own distributed stack (torchrun, DDP, c10d).

A process started by ``torchrun`` finds ``WORLD_SIZE``, ``RANK`` and ``LOCAL_WORLD_SIZE`` in
its environment; :func:`setup` joins the process group from them (gloo on CPU, nccl on
CUDA). Everything else here is a no-op in a single process, so the trainer calls the same
functions either way: :func:`shard` cuts each global batch into this rank's disjoint part,
:func:`replicate` wraps a module in ``DistributedDataParallel`` whose all-reduce is scaled
(:class:`GradientScale`) so every update equals the single-process update of the whole
batch, and :func:`reduce_sum`, :func:`sum_dicts`, :func:`broadcast` and :func:`agree`
make every rank see the same metrics, run folder and stop signal.
"""

import os
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch._C._distributed_c10d import GradBucket

from genzoo.errors import GenzooError

T = TypeVar("T")


def world() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes files (rank 0 alone does)."""
    return world()[0] == 0


def launched_size() -> int:
    """The world size torchrun gave this process (1 when not launched by it)."""
    value = os.environ.get("WORLD_SIZE", "1")
    if not value.isdigit() or int(value) < 1:
        raise GenzooError(f"WORLD_SIZE={value!r} in the environment is not a positive integer")
    return int(value)


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group once, if launched by it; return the device this rank trains on.

    gloo on CPU, nccl on CUDA (each rank on ``cuda:LOCAL_RANK``). Threads per process are
    the cores divided by the processes on this machine, so N ranks never oversubscribe
    the cores (torchrun itself sets one thread per process).
    """
    if launched_size() == 1:
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)  # one GPU per rank, whatever index was asked for
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        except (RuntimeError, ValueError) as exc:
            raise GenzooError(f"cannot join the process group: {exc}".splitlines()[0]) from exc
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // max(1, local)))
    return device


def shard(x: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous part of the global batch ``x`` (the parts are disjoint, sizes differ by at most 1)."""
    rank, size = world()
    return x if size == 1 else torch.tensor_split(x, size)[rank]


def smallest_shard(batch: int) -> int:
    """The fewest images a rank gets from a global batch of ``batch``."""
    return batch // world()[1]


def rank_seed(seed: int, step: int) -> int:
    """A seed for this rank's own noise at ``step``; rank 0 keeps the single-process stream instead.

    Ranks other than 0 reseed before every step, so their noise differs from rank 0's
    and a resume at any step draws what an uninterrupted run draws.
    """
    rank, _ = world()
    return (seed * 1_000_003 + rank * 7_919 + step) % (2**63)


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over all ranks (``t`` itself in one process)."""
    if world()[1] == 1:
        return t
    buffer = t.to(_collective_device()).clone()
    dist.all_reduce(buffer)
    return buffer.to(t.device)


def sum_dicts(values: dict[str, float]) -> dict[str, float]:
    """Per-key sums over ranks of dicts that may hold different keys (a rank with no data holds none)."""
    if world()[1] == 1:
        return values
    gathered: list[Any] = [None] * world()[1]
    dist.all_gather_object(gathered, values)
    total: dict[str, float] = {}
    for part in gathered:
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    return total


def broadcast(value: T) -> T:
    """Rank 0's ``value`` on every rank (a run folder made by rank 0 alone)."""
    if world()[1] == 1:
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[no-any-return]


def agree(signum: int | None) -> int | None:
    """A stop signal seen by any rank, on every rank, so all stop after the same step."""
    if world()[1] == 1:
        return signum
    flag = torch.tensor([signum or 0], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


class GradientScale:
    """The factor each rank's gradient is multiplied by before DDP averages it over ranks.

    A rank's loss is reduced over its own shard. For a mean over the batch, the
    single-process gradient is the shard gradients weighted by shard size over the
    global batch; DDP divides the sum by the world size, so each rank scales its
    gradient by ``world * shard / batch`` first (1 when the shards are equal). For a
    sum, by ``world``.
    """

    def __init__(self) -> None:
        self.factor = 1.0

    def set(self, reduction: str, shard_size: int, batch_size: int) -> None:
        size = world()[1]
        self.factor = size * shard_size / batch_size if reduction == "mean" else float(size)


def _scaled_allreduce(scale: GradientScale, bucket: GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP's own all-reduce hook, on the gradients multiplied by ``scale.factor``.

    DDP checks this signature's annotations as objects, so this module does not
    postpone their evaluation (no ``from __future__ import annotations``).
    """
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    if scale.factor != 1.0:
        bucket.buffer().mul_(scale.factor)
    return default_hooks.allreduce_hook(None, bucket)  # type: ignore[arg-type]


def replicate(module: nn.Module, scale: GradientScale) -> nn.Module:
    """``module`` in DistributedDataParallel, its gradients scaled by ``scale`` (see :class:`GradientScale`)."""
    from torch.nn.parallel import DistributedDataParallel

    device = next(module.parameters()).device
    ddp = DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)
    ddp.register_comm_hook(scale, _scaled_allreduce)
    return ddp


def launch(processes: int, args: list[str]) -> None:
    """Run ``python -m genzoo ARGS`` on ``processes`` processes of this machine through torch's
    elastic launcher (what ``torchrun --standalone --nproc-per-node N -m genzoo ARGS`` runs).

    The rendezvous port is chosen free by the launcher. A rank that fails or is killed
    makes the launcher stop the others; that, or a launch that cannot start, becomes
    one :class:`GenzooError` line (the failed rank's own ``Error:`` line, if it wrote one,
    is above it).
    """
    import logging
    import signal

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    options = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={processes}", "--module", "genzoo"])
    options.training_script_args = list(args)  # set, not parsed: the launcher's parser would take --nproc as its own
    # The launcher's log lines (its thread warning: setup sets the threads) would bury the ranks' own.
    loggers = [logging.getLogger(name) for name in ("torch.distributed.run", "torch.distributed.elastic")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        run(options)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        how = (f"was killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals()
               else f"exited with code {code}")
        raise GenzooError(f"training process {rank} of {processes} {how}; the launcher stopped the others. A run "
                          "keeps its last checkpoint: genzoo resume RUN_DIR continues it") from None
    except Exception as exc:  # the rendezvous, or a process that cannot start
        raise GenzooError(f"could not run {processes} training processes: {type(exc).__name__}: {exc}"
                          .splitlines()[0]) from exc
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def check_processes(processes: int) -> bool:
    """Whether ``--nproc processes`` asks this process to launch the others (not when torchrun started it)."""
    local = os.environ.get("LOCAL_WORLD_SIZE")
    if local is None:
        return processes > 1
    if processes not in (1, int(local)):
        raise GenzooError(f"--nproc {processes} inside a torchrun launch of {local} processes per machine; "
                          "give one or the other")
    return False
