"""Training on several processes through PyTorch's own distributed stack (torchrun, DDP, c10d).

A process started by ``torchrun`` finds ``WORLD_SIZE``, ``RANK`` and ``LOCAL_WORLD_SIZE`` in
its environment; :func:`setup` joins the process group from them (gloo on CPU, nccl on
CUDA). Everything else here is a no-op in a single process, so the trainer calls the same
functions either way: :func:`shard` cuts each global batch into this rank's disjoint part,
:func:`replicate` wraps a module in ``DistributedDataParallel`` whose all-reduce is scaled
(:class:`GradientScale`) so every update equals the single-process update of the whole
batch, and :func:`reduce_sum`, :func:`sum_dicts`, :func:`gather`, :func:`broadcast`, :func:`share_buffers`
and :func:`agree` make every rank see the same metrics, run folder, buffers and stop signal.
"""

import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch._C._distributed_c10d import GradBucket

from genzoo import seeding
from genzoo.errors import GenzooError, first_line, says_aborted

#: A value :func:`broadcast` sends: what JSON holds (None, bool, int, float, str, lists and str-keyed dicts).
J = TypeVar("J")


def world() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes files (rank 0 alone does)."""
    return world()[0] == 0


#: Seconds a process whose environment names a launch (``WORLD_SIZE`` above 1) waits for the
#: other processes to join before it gives up; torch's own default is 30 minutes.
JOIN_TIMEOUT_ENV = "GENZOO_JOIN_TIMEOUT"
DEFAULT_JOIN_TIMEOUT = 120
#: Seconds past that timeout before a process stops waiting itself: torch's client keeps retrying a store that
#: never came (its launcher killed) well past the timeout it was given.
JOIN_GRACE = 10
#: Holds ``True`` once this process has joined a process group (see :func:`end`).
_joined: list[bool] = []
#: The launcher's variables genzoo or torch's ``env://`` rendezvous read: (lowest, highest) value.
LAUNCH_VARIABLES = {"WORLD_SIZE": (1, None), "RANK": (0, None), "LOCAL_RANK": (0, None),
                    "LOCAL_WORLD_SIZE": (1, None), "MASTER_PORT": (1, 65535),
                    JOIN_TIMEOUT_ENV: (1, 10**9)}  # seconds: about 31 years, within what a timedelta holds


def launch_variable(name: str, default: int) -> int:
    """The integer launcher variable ``name`` (see :data:`LAUNCH_VARIABLES`) from the environment, else ``default``.

    A value that is not a whole number in range (``LOCAL_RANK=abc``) is one line naming
    the variable, not a traceback from deep inside a rank.
    """
    low, high = LAUNCH_VARIABLES[name]
    value = os.environ.get(name)
    if value is None:
        return default
    number = int(value) if re.fullmatch(r"[0-9]{1,18}", value) else None  # ASCII digits only: int() takes others
    if number is None or number < low or (high is not None and number > high):
        wanted = f"an integer from {low} to {high if high is not None else 10**18 - 1}"
        raise GenzooError(f"{name}={value!r} in the environment is not {wanted}")
    return number


def launched_size() -> int:
    """The world size torchrun gave this process (1 when not launched by it)."""
    return launch_variable("WORLD_SIZE", 1)


def _check_launch() -> tuple[int, int]:
    """This rank and its local rank, every launcher variable checked before torch reads one."""
    size = launched_size()
    rank, local_rank = launch_variable("RANK", 0), launch_variable("LOCAL_RANK", 0)
    local_size = launch_variable("LOCAL_WORLD_SIZE", 1)
    launch_variable("MASTER_PORT", 0)
    if rank >= size:
        raise GenzooError(f"RANK={rank} in the environment is not below WORLD_SIZE={size}")
    if local_rank >= local_size:
        raise GenzooError(f"LOCAL_RANK={local_rank} in the environment is not below LOCAL_WORLD_SIZE={local_size}")
    return rank, local_rank


def _join(backend: str) -> None:
    """Join the process group, waiting at most ``GENZOO_JOIN_TIMEOUT`` seconds for the others.

    The timeout bounds the rendezvous alone (torch's 30 minutes stay for the collectives:
    rank 0 may download data while the others wait). The join runs in a helper thread, so
    Ctrl-C or SIGTERM while it waits ends this process at once with ``Aborted.``; a
    blocking C++ call would never let a Python signal handler run. Nothing is written yet.
    c10d's own log lines about each failed connection go nowhere while it waits: the
    one line below says what they would. A process whose launcher dies while it waits
    (kill -9) ends at once and says nothing: its command has already ended.
    """
    from torch.distributed.rendezvous import rendezvous

    timeout = launch_variable(JOIN_TIMEOUT_ENV, DEFAULT_JOIN_TIMEOUT)
    failure: list[BaseException] = []

    def join() -> None:
        try:
            store, rank, size = next(rendezvous("env://", timeout=timedelta(seconds=timeout)))
            store.set_timeout(dist.default_pg_timeout)
            dist.init_process_group(backend, store=store, rank=rank, world_size=size)
        except BaseException as exc:  # handed to the main thread
            failure.append(exc)

    stderr = os.dup(2)

    def abort(signum: int, frame: Any) -> None:
        os.dup2(stderr, 2)
        if says_aborted():
            os.write(2, b"Aborted.\n")
        os._exit(128 + signum)

    thread = threading.Thread(target=join, name="genzoo-join", daemon=True)
    in_main = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.signal(signum, abort)
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU)
                if in_main and signal.getsignal(signum) is not signal.SIG_IGN}
    launcher = os.getppid()
    deadline = time.monotonic() + timeout + JOIN_GRACE
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        thread.start()
        while thread.is_alive():  # a signal interrupts this wait and runs ``abort``
            thread.join(1.0)
            if os.getppid() != launcher:  # the launcher is gone (kill -9): no one waits for this process's words
                os._exit(1)
            if thread.is_alive() and time.monotonic() > deadline:  # a client retrying a store that never came
                failure.append(TimeoutError(f"timed out after {timeout} s"))
                break
    finally:
        os.dup2(stderr, 2)
        os.close(stderr)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if not failure:
        _joined.append(True)
        return
    exc = failure[0]
    if "timed out" in str(exc).lower():  # rank 0 waiting for clients, or a client for rank 0
        variables = ", ".join(f"{name}={os.environ[name]}" for name in
                              ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT") if name in os.environ)
        raise GenzooError(f"no other training process joined within {timeout} s: the environment ({variables}) "
                          "looks like a torchrun launch, but the other ranks never came; unset these variables "
                          f"to train in one process (or raise {JOIN_TIMEOUT_ENV}, in seconds)") from exc
    if "EADDRINUSE" in str(exc):  # rank 0 could not listen on MASTER_PORT; torch's line names only the errno
        raise GenzooError(f"cannot join the process group: MASTER_PORT={os.environ.get('MASTER_PORT')} is in use "
                          "by another program on this machine; give the launch a free port") from exc
    raise GenzooError(first_line(f"cannot join the process group: {exc}")) from exc


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group once, if launched by it; return the device this rank trains on.

    gloo on CPU, nccl on CUDA (each rank on ``cuda:LOCAL_RANK``). Threads per process are
    the cores divided by the processes on this machine, so N ranks never oversubscribe
    the cores (torchrun itself sets one thread per process).
    """
    if launched_size() == 1:
        return device
    _, local_rank = _check_launch()
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)  # one GPU per rank, whatever index was asked for
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        _join("nccl" if device.type == "cuda" else "gloo")
        local = launch_variable("LOCAL_WORLD_SIZE", 1)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // max(1, local)))
    return device


def leave() -> None:
    """Leave the process group, if this process joined one, once its work is done.

    DDP's all-reduce hook is Python: a group left to the interpreter's exit could finish
    its last works on gloo's threads after Python was gone, and the process ended in C++'s
    ``terminate`` (SIGABRT) with its run complete. Not after an error: another rank may
    wait in a collective with this one, and leaving waits for pending works; the launcher
    stops that rank instead.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def ignore_stops() -> None:
    """A rank whose command is over ignores the stop signals: its outcome is said and decided, a group's Ctrl-C as
    the launch ends has nothing to stop, and Python's own handler would raise it as a traceback."""
    if _joined and threading.current_thread() is threading.main_thread():
        for signum in _STOPS:
            signal.signal(signum, signal.SIG_IGN)


def end(code: int) -> NoReturn:
    """End this process with ``code``; one that joined a process group skips Python's finalization.

    DDP keeps gloo's worker threads alive past ``destroy_process_group``. A C++ thread that
    touches Python while the interpreter finalizes is ended by ``pthread_exit`` through
    ``noexcept`` frames, which is C++'s ``terminate`` (SIGABRT): a rank whose run was
    complete failed its launch that way, once in a few hundred. Such a rank runs its
    ``atexit`` functions, flushes its streams and exits at once instead; every file genzoo
    writes is closed (and renamed into place) before this.
    """
    if not _joined:
        sys.exit(code)
    ignore_stops()  # (cli.main has from its command's end; a KeyboardInterrupt traceback in atexit, else)
    atexit._run_exitfuncs()
    flush_streams()
    os._exit(code)


def flush_streams() -> None:
    """Flush standard output and error before an ``os._exit``, which would drop what they buffer."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said
            pass


def shard(x: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous part of the global batch ``x`` (the parts are disjoint, sizes differ by at most 1)."""
    rank, size = world()
    return x if size == 1 else torch.tensor_split(x, size)[rank]


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
    total: dict[str, float] = {}
    for part in _all_gather_json(values):
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    return total


def gather(value: J) -> list[J]:
    """``value`` (a JSON value) from every rank, in rank order (``[value]`` in one process)."""
    if world()[1] == 1:
        return [value]
    return _all_gather_json(value)


def disagreement(digests: dict[str, str]) -> tuple[int, list[str]] | None:
    """The first rank whose ``digests`` (a digest by name) differ from rank 0's and the names that differ, or None
    where every rank holds rank 0's (always in one process).

    One all-gather of a digest of them all; only when they differ, a second of every name's, to say which.
    """
    if world()[1] == 1:
        return None
    whole = hashlib.sha256(json.dumps(sorted(digests.items())).encode()).hexdigest()
    if len(set(gather(whole))) == 1:
        return None
    found = gather(digests)
    for rank, theirs in enumerate(found):
        differ = sorted(name for name in {*theirs, *found[0]} if theirs.get(name) != found[0].get(name))
        if differ:
            return rank, differ
    return None


def share_buffers(buffers: Iterable[torch.Tensor]) -> None:
    """Rank 0's values of ``buffers`` on every rank, in place: what DDP does to the buffers of the module it wraps
    before each forward (``broadcast_buffers``), for buffers no wrapper reaches or at a point no forward is.

    A buffer a rank updates from its own batches (a running mean) otherwise differs on each rank (twenty-first hostile
    pass, plugins F4). A bool buffer travels as bytes (gloo has no bool). A no-op in one process.
    """
    if world()[1] == 1:
        return
    device = _collective_device()
    for buffer in buffers:
        sent = buffer.detach().to(device, torch.uint8 if buffer.dtype == torch.bool else buffer.dtype,
                                  copy=True).contiguous()
        dist.broadcast(sent, src=0)
        with torch.no_grad():
            buffer.copy_(sent)


def share_random_state() -> None:
    """Rank 0's state of every global random stream on every rank: torch's (the CPU's, and the current GPU's),
    numpy's and Python's.

    Ranks other than 0 draw their own noise (:func:`rank_seed`), so a model's ``after_training`` that draws from
    torch's stream (as docs/plugins.md tells it to) set each rank's weights apart, and the ranks' agreement then
    refused the finished run on every resume (twenty-second hostile pass, plugins F3); numpy's and Python's
    streams did the same (twenty-third hostile pass, plugins F3). A no-op in one process.
    """
    if world()[1] == 1:
        return
    device = _collective_device()
    states = [(torch.get_rng_state, torch.set_rng_state)]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states.append((torch.cuda.get_rng_state, torch.cuda.set_rng_state))
    for get, put in states:
        state = get().to(device)
        dist.broadcast(state, src=0)
        put(state.cpu())
    host = seeding.host_states()
    for stream, words in (("numpy", "key"), ("python", "state")):
        tensor = host[stream][words].to(device)
        dist.broadcast(tensor, src=0)
        host[stream][words] = tensor.cpu()
    scalars = broadcast({stream: {k: v for k, v in host[stream].items() if not isinstance(v, torch.Tensor)}
                         for stream in host})
    seeding.set_host_states({stream: {**host[stream], **scalars[stream]} for stream in host})


def broadcast(value: J) -> J:
    """Rank 0's ``value`` (a JSON value) on every rank: a run folder made by rank 0 alone, its failure to load data."""
    if world()[1] == 1:
        return value
    device = _collective_device()
    data = json.dumps(value).encode() if is_main() else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    buffer = _bytes_tensor(data, int(size.item()), device)
    dist.broadcast(buffer, src=0)
    return json.loads(_tensor_bytes(buffer))  # type: ignore[no-any-return]


def _all_gather_json(value: Any) -> list[Any]:
    """``value`` from every rank, in rank order, sent as JSON bytes in tensors.

    Not torch's object collectives: they unpickle what arrives, and the store the ranks
    meet through (a TCP port) takes any local user's connection, who could make a rank
    read their bytes instead of a peer's. JSON read back can only be data.
    """
    device = _collective_device()
    data = json.dumps(value).encode()
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(world()[1])]
    dist.all_gather(sizes, torch.tensor([len(data)], dtype=torch.int64, device=device))
    longest = max(int(size.item()) for size in sizes)
    parts = [torch.zeros(longest, dtype=torch.uint8, device=device) for _ in sizes]
    dist.all_gather(parts, _bytes_tensor(data, longest, device))
    return [json.loads(_tensor_bytes(part[:int(size.item())])) for part, size in zip(parts, sizes)]


def _bytes_tensor(data: bytes, size: int, device: torch.device) -> torch.Tensor:
    """``data`` in a uint8 tensor of ``size`` bytes (zeros after it; all zeros where ``data`` is empty)."""
    buffer = torch.zeros(size, dtype=torch.uint8)
    if data:
        buffer[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return buffer.to(device)


def _tensor_bytes(buffer: torch.Tensor) -> bytes:
    return buffer.cpu().numpy().tobytes()


def agree(signum: int | None) -> int | None:
    """A stop signal seen by any rank, on every rank, so all stop after the same step."""
    if world()[1] == 1:
        return signum
    flag = torch.tensor([signum or 0], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


class StoppedByAnother(Exception):
    """Another rank stopped the run with an error it prints itself (rank 0's loggers, which run there alone): this
    rank's part ends without a word and with exit 0, so that the launch's status and its line are that rank's."""


@contextmanager
def together() -> Iterator[None]:
    """A block every rank enters, where some ranks alone run code that may fail (rank 0's loggers): an exception
    raised there on one rank is known to all at the block's end, and the others raise :class:`StoppedByAnother`.
    A logger's ``GenzooError`` stopped rank 0 alone, and rank 1 met its closed connection in the next step's
    collective: a 37-line gloo traceback (eighteenth hostile pass, F12). No-op in one process."""
    try:
        yield
    except Exception:
        _any_rank(True)
        raise
    if _any_rank(False):
        raise StoppedByAnother()


def _any_rank(failed: bool) -> bool:
    """Whether any rank ``failed``, on every rank (this rank's ``failed`` in one process)."""
    if world()[1] == 1:
        return failed
    flag = torch.tensor([int(failed)], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


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


#: Set by :func:`launch` for its ranks: the command a stop signal's ``Interrupted:`` line gives
#: (a compare's, not the run's own).
RESUME_ENV = "GENZOO_RESUME_WITH"


class Stopped(Exception):
    """The launcher was stopped by Ctrl-C or SIGTERM and passed it to every rank, which said what was saved
    (``said``), or which ended without a word, its command cut short before it could say anything."""

    def __init__(self, signum: int, said: bool = True) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum
        self.said = said


#: Where rank 0 writes the exit code of its command (a file in a folder of the launcher's own), so that a launcher
#: stopped by a signal knows whether the work had finished (twentieth hostile pass, files M5: a Ctrl-C as a
#: complete run printed its last lines exited 130 without a word).
OUTCOME_ENV = "GENZOO_RANK0_OUTCOME"


def say_outcome(code: int) -> None:
    """Rank 0 of a launch: write its command's exit ``code`` where :data:`OUTCOME_ENV` says."""
    path = os.environ.get(OUTCOME_ENV)
    # The launcher's RANK, not world(): after leave() every rank is rank 0 of a world of one.
    if not path or not _joined or launch_variable("RANK", 0) != 0:
        return
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(str(code))
    except OSError:  # the launcher then says the command was cut short; nothing else depends on it
        pass


def _rank0_outcome(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


#: What each launched process runs: genzoo's command line, with the current folder taken off the module path
#: first (``python -m genzoo`` would import a ``genzoo`` or ``torch`` there before the installed ones, and the
#: folder a user trains from may be one others can write), bound to its launcher (:func:`follow_launcher`,
#: ``{launcher}`` its process id) once ``genzoo.cli`` is imported: its imports (torch's) run under its stop-signal
#: handlers, and a Ctrl-C in a rank's first second printed a ``KeyboardInterrupt`` traceback from torch's import
#: in ``genzoo.distributed`` (twenty-third hostile pass, files F1); a launcher gone by then is caught by its pid.
_RANK_CODE = ("import sys\nif sys.path[:1] == ['']:\n    del sys.path[0]\n"
              "from genzoo.cli import main\nfrom genzoo.distributed import follow_launcher\n"
              "follow_launcher({launcher})\nmain()\n")


def parent_death_signal(signum: int, parent: int) -> bool:
    """Have the kernel send this process ``signum`` when ``parent`` dies (Linux's ``PR_SET_PDEATHSIG``, which
    ``exec`` keeps); a parent already gone by then is caught by the parent's process id. False where there is no
    ``prctl`` (not Linux): nothing is set."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    if prctl(1, signum, 0, 0, 0) != 0:  # 1 is PR_SET_PDEATHSIG
        return False
    if os.getppid() != parent:
        os.kill(os.getpid(), signum)
    return True


def follow_launcher(launcher: int) -> None:
    """End this rank at once (SIGKILL) when its launcher, process ``launcher``, dies.

    A launcher killed by kill -9 cannot stop its ranks: they trained on as orphans, holding
    the run's lock, so ``resume`` said the run was in use. Linux's ``PR_SET_PDEATHSIG`` has
    the kernel kill this process with its parent; a launcher already gone before that was
    set is caught by the parent's process id. Elsewhere a thread watches that id. The rank
    ends as a kill -9 would end it: the last checkpoint stays whole (written by rename),
    and the lock dies with the process.
    """
    if parent_death_signal(signal.SIGKILL, launcher):
        return

    def watch() -> None:
        while os.getppid() == launcher:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="genzoo-launcher-watch", daemon=True).start()


#: The exit code of a rank whose work is done but whose printing failed (a full disk, a closed pipe), as
#: sysexits' EX_IOERR: it has said so itself, and the launcher, which stops the others, adds nothing.
OUTPUT_FAILED = 74


class PrintingFailed(Exception):
    """A rank's work was done but its printing failed, which it said: the launch exits 1 with no more words."""


def joined() -> bool:
    """Whether this process joined a process group (a rank of a launch)."""
    return bool(_joined)


#: What gloo's errors say when the process at the other end of a connection is gone.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


def peer_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or one it was raised from) is a collective's error for a rank of this launch that is gone.

    A rank killed by SIGKILL (or ended by its own error) broke the others' next collective, and rank 0 blamed the
    model whose step it was in, with gloo's text (``Error: VAE.loss raised RuntimeError: ... Connection reset by
    peer``), above the launcher's line naming the killed rank (twenty-third hostile pass, files M1). The launcher
    says what happened; such a rank ends without a word (:func:`genzoo.cli.main`).
    """
    if not joined():
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, dist.DistNetworkError):
            return True
        try:
            text = str(current)
        except Exception:  # a plugin's exception whose str() raises
            text = ""
        if "gloo" in text and any(words in text for words in _PEER_GONE):
            return True
        current = current.__cause__ or current.__context__
    return False


#: The stop signals a rank checkpoints and ends on, with exit 128 + the signal.
_STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU)


#: Where torch's launcher leaves the signals it stops its processes on and passes on to them (and does not unset).
_LAUNCHER_SIGNALS_ENV = "TORCHELASTIC_SIGNALS_TO_HANDLE"
#: Those signals: the launcher's own (SIGQUIT among them), and each of genzoo's stop signals.
_LAUNCHER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGXCPU)


def launch(processes: int, args: list[str], resume: Callable[[], str | None],
           resume_on_stop: str | None = None) -> None:
    """Run genzoo's command line with ``ARGS`` on ``processes`` processes of this machine through
    torch's elastic launcher (what ``torchrun --nnodes 1 --rdzv-backend static --master-addr
    127.0.0.1 --nproc-per-node N`` runs), never from the current folder (:data:`_RANK_CODE`).

    The static rendezvous, not ``--standalone``'s c10d one: that one keeps its state in the
    store as a pickle, which the launcher unpickles every few seconds, and the store is a TCP
    port any local user can connect to and write (the ninth hostile pass ran code that way).
    The port is a free one of 127.0.0.1. A rank that fails or is killed
    makes the launcher stop the others; that, or a launch that cannot start, becomes
    one :class:`GenzooError` line (the failed rank's own ``Error:`` line, if it wrote one,
    is above it), which gives ``resume()``, the command that continues the work, when
    there is a checkpoint to continue from. Ctrl-C or SIGTERM reaches every rank through
    the launcher; rank 0 prints the ``Interrupted:`` line (with ``resume_on_stop`` if
    given) and this ends in :class:`Stopped`, saying nothing more; so does a stop signal one rank alone got (the
    ranks agree on it, rank 0 alone ends with 128 + the signal, the others with 0).
    """
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun's parser takes each option it is not given from a PET_<OPTION> variable (PET_MAX_RESTARTS re-ran
    # the whole command, PET_REDIRECTS hid all output): it never sees them, and the user's environment keeps them.
    hidden = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("PET_")}
    try:
        options = get_args_parser().parse_args([
            "--nnodes=1", "--node-rank=0", "--rdzv-backend=static", "--master-addr=127.0.0.1",
            f"--master-port={_free_port()}", f"--nproc-per-node={processes}", "--no-python",
            # The launcher passes on the signals it handles to the ranks: SIGXCPU too, which genzoo stops on as on
            # SIGTERM (genzoo's stop-at-once handler took it instead and printed "Aborted." under rank 0's
            # "Interrupted: checkpoint saved" line; twenty-sixth hostile pass, files F1).
            "--signals-to-handle=" + ",".join(signal.Signals(signum).name for signum in _LAUNCHER_SIGNALS),
            sys.executable])
    finally:
        os.environ.update(hidden)
    # Set, not parsed: the launcher's parser would take --nproc as its own.
    options.training_script_args = ["-u", "-c", _RANK_CODE.format(launcher=os.getpid()), *args]
    # The launcher's log lines (its thread warning: setup sets the threads; "Received 15 death signal") would
    # bury the ranks' own. Each of its modules' loggers has a level of its own, so each is quietened.
    loggers = [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)
               if name.startswith(("torch.distributed.run", "torch.distributed.elastic"))]
    levels = [logger.level for logger in loggers]
    before = {name: os.environ.get(name) for name in (RESUME_ENV, OUTCOME_ENV, _LAUNCHER_SIGNALS_ENV)}
    outcome = os.path.join(tempfile.mkdtemp(prefix="genzoo-launch-"), "outcome")  # a folder only this user can write
    # The launcher learns how each rank ended by reaping it: with SIGCHLD ignored (a plugin may set that at import,
    # to never reap its own children) the kernel reaps them instead, and a failed rank went unnoticed, the others
    # waiting in gloo until its traceback, exit 0 (twenty-third hostile pass, plugins F4).
    children = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        if resume_on_stop is not None:
            os.environ[RESUME_ENV] = resume_on_stop  # the ranks inherit the launcher's environment
        os.environ[OUTCOME_ENV] = outcome
        run(options)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        if code == OUTPUT_FAILED:
            raise PrintingFailed() from None
        if rank == 0 and _rank0_outcome(outcome) == code and code - 128 in _STOPS:
            raise Stopped(code - 128) from None  # a stop signal one rank alone got: rank 0 said what it saved
        how = (f"was killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals()
               else f"exited with code {code}")
        command = resume()
        then = (f"the work keeps its last checkpoint: {command} continues it" if command is not None
                else "no checkpoint was written, so there is nothing to resume")
        raise GenzooError(f"training process {rank} of {processes} {how}; the launcher stopped the others; "
                          f"{then}") from None
    except SignalException as exc:
        finished = _rank0_outcome(outcome)
        if finished == 0:  # the work had finished, and rank 0 said so: the signal came too late to stop anything
            return
        raise Stopped(int(exc.sigval), said=finished is not None) from None
    except Exception as exc:  # the rendezvous, or a process that cannot start
        raise GenzooError(first_line(f"could not run {processes} training processes: {type(exc).__name__}: {exc}")
                          ) from exc
    finally:
        signal.signal(signal.SIGCHLD, children)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(os.path.dirname(outcome), ignore_errors=True)


def _free_port() -> int:
    """A port of 127.0.0.1 no one listens on now (the launcher's store takes it next; one taken meanwhile is
    an error of the launch, not a store shared with someone else)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


#: How many training processes ``--nproc`` may start per CPU core (more than one: a test of a launch on a small
#: machine); a GPU machine may start one per GPU where that is more.
PROCESSES_PER_CORE = 4


def most_processes() -> int:
    """The most processes ``--nproc`` launches on this machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(PROCESSES_PER_CORE * cores, torch.cuda.device_count())


def check_processes(processes: int) -> bool:
    """Whether ``--nproc processes`` asks this process to launch the others (not when torchrun started it).

    Started by a launcher means what :func:`setup` joins by: ``WORLD_SIZE`` set, as torchrun sets it
    for every rank. A launcher's variable left alone in a shell (``LOCAL_WORLD_SIZE=2``) is no launch:
    taken for one, ``--nproc 2`` trained in one process without a word.
    """
    if "WORLD_SIZE" not in os.environ:
        if processes > 1:  # what each rank would read: one line here, not one per rank
            launch_variable(JOIN_TIMEOUT_ENV, DEFAULT_JOIN_TIMEOUT)
            most = most_processes()
            if processes > most:  # --nproc 1000 started ranks until the machine ran out of memory (26th pass, F3)
                raise GenzooError(f"--nproc {processes} is more training processes than this machine can run: each "
                                  f"one imports torch and takes a share of every batch; at most {most} here "
                                  f"({PROCESSES_PER_CORE} per CPU core this process may use, or one per GPU)")
        return processes > 1
    local = launch_variable("LOCAL_WORLD_SIZE", 1)
    if processes not in (1, local):
        raise GenzooError(f"--nproc {processes} inside a torchrun launch of {local} processes per machine; "
                          "give one or the other")
    return False
