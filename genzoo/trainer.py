"""The one trainer every model shares.

It picks the device, seeds everything, feeds shuffled batches from the in-memory
training split to :func:`training_step` (which backpropagates the model's per-image
objective and steps its optimiser, or lets a model with manual optimisation step its
own), reduces every per-image value the model returns, evaluates on the *test* split after each
epoch, appends a line to ``metrics.jsonl`` and writes a checkpoint atomically. The
checkpoint carries the RNG states and the position inside the epoch, so a resumed
run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, NoReturn

import torch
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.table import Column, Table
from rich.text import Text
from torch import nn

from genzoo import distributed, process_settings
from genzoo.building import (
    RESUME_PROTOCOL,
    SPLIT_PROTOCOL,
    check_batch_size,
    loaded_copy,
    refuse_unkept_optimizer_state,
    refuse_unkept_state,
    renamed_weights,
    same_batch,
    with_its_losses,
)
from genzoo.checkpoint import (
    FILENAME,
    Position,
    UnfitOptimizerState,
    changed_hyperparameters,
    check_finite_weights,
    check_optimizer_state,
    contents_sha256,
    hyperparameters,
    load_optimizer_state,
    save_checkpoint,
    unsaveable_state_line,
)
from genzoo.checks import all_finite, data_problem, printable, shown
from genzoo.compile_cache import private_compile_cache
from genzoo.data import Split
from genzoo.errors import (
    PLUGIN_FAULTS,
    GenzooError,
    PluginFault,
    blamed,
    first_line,
    memory_line,
    one_line,
    out_of_memory,
    warn,
)
from genzoo.files import MAX_JSON_BYTES
from genzoo.model import Model, refuse_changed_config, require_stats_dict
from genzoo.precision import fp32_precision, resolved, warn_resolved
from genzoo.run_folder import RUN, append_metrics, check_in_place, metric_line_bytes
from genzoo.sampler import CopiedSplit, model_call
from genzoo.seeding import host_state_problem, host_states, seed_host_streams, seed_streams, seeded, set_host_states
from genzoo.train_config import TrainConfig

#: How many steps pass between two looks at the loss (one device sync each).
SYNC_EVERY = 20


#: The signals that stop training after the current step, with a checkpoint: Ctrl-C; SIGTERM,
#: which ``kill``, batch schedulers and ``docker stop`` send; SIGHUP, which a closed
#: terminal or a dropped ssh connection sends (unless ``nohup`` had it ignored: then it stays so); and SIGXCPU,
#: which a soft CPU-time limit (``ulimit -t``, a scheduler's) sends so that the work can be saved before the hard
#: limit kills it: its default ended a run silently, the steps since its last checkpoint lost (twenty-fourth
#: hostile pass, files F4).
STOP_SIGNALS = process_settings.STOP_SIGNALS  # and guarded plugin calls put their handlers back
#: Seconds within which the same stop signal again is taken as a copy of the first, not a second request: a signal
#: sent to a whole process group or cgroup (a terminal's Ctrl-C, systemd's ``KillMode=control-group``) reaches
#: genzoo directly and again from a parent passing it on (``benchmarks/leaderboard.py``, torch's ``--nproc``
#: launcher) a few milliseconds later; taken as a second request, it stopped genzoo at once without its checkpoint.
REPEAT_WINDOW_S = 1.0


class Interrupted(Exception):
    """Training was stopped by a stop signal after a checkpoint was saved.

    ``signum`` gives the exit code (128 + it, the shell's convention); ``resume`` is the
    command that continues the work: the run's own, or the command of whatever
    started the run (a compare).
    """

    def __init__(self, checkpoint: Path | None, signum: int = signal.SIGINT, resume: str | None = None) -> None:
        if resume is None:
            if checkpoint is None:
                raise ValueError("Interrupted needs a checkpoint or a resume command")
            resume = f"genzoo resume {checkpoint.parent}"
        saved = f"checkpoint saved to {checkpoint}; " if checkpoint is not None else ""
        super().__init__(f"{saved}resume with: {resume}")
        self.checkpoint = checkpoint
        self.signum = signum
        self.resume = resume


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP that stops at once, raised where Ctrl-C raises ``KeyboardInterrupt``."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = signum


def stop_at_once(signum: int, frame: Any) -> NoReturn:
    """Signal handler: unwind now, as Ctrl-C does by default, so ``finally`` blocks run and the CLI reports it."""
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


class StopAtOnce:
    """:func:`stop_at_once` for one command, taking the same signal again within :data:`REPEAT_WINDOW_S` as a copy
    of the one being handled (a group's signal passed on by a parent): raised again, it could land in the CLI's
    own handling of the first."""

    def __init__(self) -> None:
        self.raised: dict[int, float] = {}  # signal: when it last unwound (time.monotonic)

    def __call__(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if signum in self.raised and now - self.raised[signum] < REPEAT_WINDOW_S:
            return
        self.raised[signum] = now
        stop_at_once(signum, frame)


def handled(signum: int) -> bool:
    """Whether genzoo takes ``signum`` over: not a SIGHUP that ``nohup`` (or the caller) has ignored, nor an ignored
    SIGXCPU."""
    return signum not in (signal.SIGHUP, signal.SIGXCPU) or signal.getsignal(signum) is not signal.SIG_IGN


class Diverged(GenzooError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


#: How :func:`training_step` reduces a model's per-image objective (``Model.objective_reduction``).
REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"mean": torch.Tensor.mean, "sum": torch.Tensor.sum}


def per_image(stats: dict[str, torch.Tensor], n: int, where: str) -> dict[str, torch.Tensor]:
    """``stats``, refused in one line unless it is a dict whose every value holds one number per image.

    Each name must be a ``str``: metrics.jsonl writes ``train_NAME``, so the int ``1`` trained to the end, then
    no resume matched its names read back (``'1'``), and ``1`` beside ``"1"`` lost one value without a word
    (seventeenth hostile pass, F3); and not ``""``, written as ``train_`` and printed as a value without a name
    (eighteenth hostile pass, M6), nor a name with white space at an end. A :class:`PluginFault`: the trainer
    adds what the run holds. So is a value of complex dtype: its float64 sum kept the real part with torch's raw
    warning, written as if it were the value (eighteenth hostile pass, F8: a spectrum whose ``.abs()`` was
    forgotten).
    """
    require_stats_dict(stats, where)
    key = next((key for key in stats if type(key) is not str), None)
    if key is not None:
        raise PluginFault(f"{where} returned a value named by the {type(key).__name__} {shown(key)}, not by a str: "
                          "metrics.jsonl names each value train_NAME and test_NAME, where 1 and '1' are one name "
                          "and a resume reads back only str names; name each value with a str")
    if "" in stats:
        raise PluginFault(f"{where} returned a value named by the empty str: metrics.jsonl names each value "
                          "train_NAME and test_NAME, and train_ names none; give each value a name")
    spaced = next((key for key in stats if key != key.strip()), None)
    if spaced is not None:  # 'nelbo ' was filed beside 'nelbo', shown as one name twice (twenty-second pass, M1)
        raise PluginFault(f"{where} returned a value named by {spaced!r}, which starts or ends with white space: "
                          "metrics.jsonl and every table would show it as another value's name, or as none; name "
                          "each value without spaces at its ends")
    for key, value in stats.items():
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        if shape != (n,):
            raise GenzooError(f"{where} returned {key!r} of shape {shape}, not one value per image ({n},)")
        if value.is_complex():
            raise PluginFault(f"{where} returned {key!r} of dtype {str(value.dtype).removeprefix('torch.')}, not real "
                              "values: metrics.jsonl would hold their real part alone; return one real value per "
                              "image (the .abs() of a spectrum, say)")
    return stats


def training_step(model: Model, x: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer],
                  replicas: dict[str, nn.Module] | None = None,
                  forward: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
    """One optimisation step of ``model`` on ``x``; its per-image losses, detached.

    With automatic optimisation this is where the step happens: the objective
    (``loss_names[0]`` of :meth:`Model.loss`) is reduced as ``objective_reduction``
    says, backpropagated, and the one optimiser steps. A model with
    ``automatic_optimization = False`` steps its optimisers in its own ``training_step``.
    In a distributed run ``replicas`` are the DistributedDataParallel wrappers
    :func:`replicate` made, through which the forward passes go so DDP averages the gradients.
    ``forward`` stands in for the per-image losses' forward pass (a :class:`CompiledObjective`).
    """
    name = type(model).__name__
    replicas = replicas or {}
    if not model.automatic_optimization:
        distributed.share_buffers(unreplicated_buffers(model, replicas))
        with _through(model, replicas), blamed(f"{name}.training_step"):
            with model_call(f"{name}.training_step", "taking a training step"):
                returned = model.training_step(x, optimizers)
            stats = per_image(returned, x.shape[0], f"{name}.training_step")
        return {key: value.detach() for key, value in stats.items()}
    problem = _automatic_problem(model, optimizers)
    if problem is not None:
        raise GenzooError(problem)
    ((which, optimizer),) = optimizers.items()
    optimizer.zero_grad(set_to_none=True)
    forward = forward or (replicas[""] if "" in replicas else model.loss)
    who = with_its_losses(f"{name}.loss", model)
    with blamed(who):  # its forward pass and the backward pass through what it computed
        with model_call(f"{name}.loss", "taking a training step"):  # grad mode turned off: named, not "detached"
            returned = forward(x)
        stats = per_image(returned, x.shape[0], who)
        objective = model.loss_names[0]
        if objective not in stats:
            raise GenzooError(f"{name}.loss returned {sorted(stats)}, without its objective {objective!r} "
                              "(the first of loss_names)")
        reduced = REDUCTIONS[model.objective_reduction](stats[objective])
        if not reduced.requires_grad:
            raise GenzooError(f"{name}.loss returned its objective {objective!r} without a gradient to follow "
                              "(computed under torch.no_grad(), or detached?): the trainer cannot backpropagate it")
        reduced.backward()
    # A plugin optimiser's own step is blamed as the loss is (seventeenth hostile pass, F6: a 42-line traceback).
    with blamed(f"{name}'s optimiser {which!r} ({type(optimizer).__name__}.step)"):
        optimizer.step()
    return {key: value.detach() for key, value in stats.items()}


def _automatic_problem(model: Model, optimizers: dict[str, torch.optim.Optimizer]) -> str | None:
    """Why the trainer cannot step ``model`` with ``optimizers`` by automatic optimisation; None if it can."""
    name = type(model).__name__
    if not (isinstance(model.objective_reduction, str) and model.objective_reduction in REDUCTIONS):
        return (f"{name}.objective_reduction is {shown(model.objective_reduction)}: the trainer reduces a model's "
                "per-image objective by 'mean' or 'sum'")
    if len(optimizers) != 1:
        return (f"{name} has {len(optimizers)} optimisers: automatic optimisation steps one; a model with several "
                "sets automatic_optimization = False and steps them in its training_step")
    return None


def import_compiler() -> None:
    """Import torch's compiler, as building any torch optimiser does, before a model's code builds one.

    Its import makes inductor's cache folder (``TORCHINDUCTOR_CACHE_DIR``): one it cannot make
    (``/dev/null``) failed inside the model's ``configure_optimizers``, which was blamed for
    ``File exists: '/dev/null'`` (sixteenth look). The environment is named instead.
    """
    try:
        import torch._dynamo  # noqa: F401
    except OSError as exc:
        where = printable(str(exc.filename)) if exc.filename is not None else "its cache folder"
        raise GenzooError(f"torch could not make its compiler's cache folder {where} ({exc.strerror or exc}), which "
                          "it makes whenever an optimiser is built; point TORCHINDUCTOR_CACHE_DIR at a folder you "
                          "can write, or unset it") from exc


def configured_optimizers(model: Model) -> dict[str, torch.optim.Optimizer]:
    """``model.configure_optimizers()``, refused in one line unless :func:`training_step` can step with them.

    Every mistake here showed only in the first step, after the run folder was made
    (left holding ``config.json`` alone); a new run, ``--nproc``'s launcher and a
    compare's plan call this before they make a folder, the trainer when it is built.
    """
    name = type(model).__name__
    names = model.loss_names
    if not isinstance(names, (tuple, list)) or not names or not all(isinstance(n, str) for n in names):
        raise GenzooError(f"{name}.loss_names is {shown(names)}, not a non-empty tuple of str (the names of its "
                          "per-image losses, objective first; a tuple of one name needs its comma: ('loss',))")
    if len(set(names)) != len(names):  # one name, two columns: the second's numbers were filed as the first's
        twice = sorted({n for n in names if names.count(n) > 1})
        raise GenzooError(f"{name}.loss_names names {', '.join(map(repr, twice))} twice: each per-image loss needs "
                          "a name of its own")
    import_compiler()
    who = f"{name}.configure_optimizers"
    with blamed(who), model_call(who, "configuring its optimisers"):
        optimizers = model.configure_optimizers()
    if not isinstance(optimizers, dict) or not optimizers or not all(
            isinstance(k, str) and isinstance(v, torch.optim.Optimizer) for k, v in optimizers.items()):
        raise GenzooError(f"{name}.configure_optimizers returned {shown(optimizers)}, not a "
                          "dict of torch optimisers by name ({'adam': torch.optim.Adam(...)})")
    # A tensor stepped but not among parameters() is in no checkpoint or export: every load used its first value.
    owned = {id(parameter) for parameter in model.parameters()}
    for key, optimizer in optimizers.items():
        stray = next((t for group in optimizer.param_groups for t in group["params"] if id(t) not in owned), None)
        if stray is not None:
            raise GenzooError(
                f"{name}.configure_optimizers gives optimiser {key!r} a tensor of shape {tuple(stray.shape)} that "
                f"is not one of {name}.parameters(), so no checkpoint or export would hold what it learns; make it "
                "an nn.Parameter attribute of the model (or of one of its modules)")
    if not isinstance(model.automatic_optimization, bool):  # "False" is true: the automatic path's line then told
        raise GenzooError(f"{name}.automatic_optimization is {shown(model.automatic_optimization)}, not True or "
                          "False")  # its author to set it False (twenty-fourth hostile pass, plugins M5)
    if not model.automatic_optimization:
        if type(model).training_step is Model.training_step:
            raise GenzooError(f"{name} sets automatic_optimization = False but does not override training_step, "
                              "which must step its optimisers")
        return optimizers
    if type(model).loss is Model.loss:
        raise GenzooError(f"{name} optimises automatically but does not override loss, whose objective the "
                          "trainer steps (or set automatic_optimization = False and override training_step)")
    problem = _automatic_problem(model, optimizers)
    if problem is not None:
        raise GenzooError(problem)
    return optimizers


def probed_evaluate(model: Model, test: Split, seed: int) -> dict[str, float]:
    """``model.evaluate`` on one test image, as each epoch's test pass calls it (eval mode, its own RNG stream,
    no gradient; the model's mode put back): what it returns is refused before the run folder is made, not
    after the first epoch's training. The values it reports by name, each name a ``test_*`` metric of every epoch."""
    training = model.training
    model.eval()
    names: dict[str, float] = {}
    try:
        with seeded(model.device, seed), torch.no_grad():
            for x in test.take(1).batches(1):
                # Guarded, unlike the test passes' calls (whose changes the run folder's lock and the trainer put
                # back): one that moved the working directory here had the run folder made in the other folder, exit 0
                # (twenty-fourth hostile pass, plugins F1).
                with blamed(evaluating(model)), model_call(evaluating(model), "evaluating a test image"):
                    names = {str(name): float(value[0]) for name, value in
                             per_image(model.evaluate(x), 1, evaluating(model)).items()}
    finally:
        model.train(training)
    return names


def check_metrics_fit(config: TrainConfig, model: Model, evaluated: Collection[str]) -> None:
    """Refuse a run whose ``metrics.jsonl`` could outgrow the ``MAX_JSON_BYTES`` genzoo reads back.

    Each epoch's line holds the step statistics as ``train_*`` (``loss_names``, and what
    ``evaluate`` reports: the base evaluate is ``loss``), ``evaluate``'s as ``test_*``, the
    epoch, the step, the run's name and the timings. A model reporting thousands of statistics writes
    lines of hundreds of kilobytes: its run trained to the end, then every command called it
    damaged (fifteenth hostile pass, F11). Bounded by each value's longest JSON, before any
    folder; :func:`genzoo.run_folder.append_metrics` refuses a line this did not foresee.
    """
    keys = ["epoch", "step", RUN, *TIMING, *(f"train_{name}" for name in {*model.loss_names, *evaluated}),
            *(f"test_{name}" for name in evaluated)]
    line = metric_line_bytes(keys)
    if line * config.epochs > MAX_JSON_BYTES:
        raise GenzooError(f"{config.epochs:,} epochs of {type(model).__name__}, {len(keys):,} values an epoch, could "
                          f"write a metrics.jsonl of up to {line * config.epochs:,} bytes, more than the "
                          f"{MAX_JSON_BYTES:,} genzoo reads back: give --epochs {MAX_JSON_BYTES // line:,} or fewer "
                          "(or have the model report fewer statistics)")


def evaluating(model: Model) -> str:
    """``Class.method`` to blame for what ``model.evaluate`` does: the base evaluate is the model's loss without
    gradients, so then the loss is what to mend."""
    if type(model).evaluate is not Model.evaluate:
        return f"{type(model).__name__}.evaluate"
    return with_its_losses(f"{type(model).__name__}.loss", model)


def declared_steps(model: Model, training_steps: int) -> dict[str, int] | None:
    """``model.optimizer_steps(training_steps)``, refused in one line unless None or a dict of counts by name."""
    with blamed(f"{type(model).__name__}.optimizer_steps"):
        steps = model.optimizer_steps(training_steps)
    if steps is not None and not (isinstance(steps, dict) and all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in steps.items())):
        raise PluginFault(f"{type(model).__name__}.optimizer_steps({training_steps}) returned {shown(steps)}, "
                          "not None or a dict of step counts by optimiser name")
    return steps


def test_losses(model: Model, split: Split, batch_size: int, seed: int, shard: bool = False,
                names: list[str] | None = None, epoch: int | None = None) -> dict[str, float]:
    """Average ``model.evaluate``'s per-image values over ``split``, with its own seeded RNG stream.

    Forking the RNG keeps evaluation noise identical from epoch to epoch and leaves
    the training stream untouched, so evaluating does not change what is trained.
    With ``shard`` every rank of a distributed run evaluates its part of each batch
    and the sums are added over ranks (every rank must call it).

    Every batch must return the first batch's names, or ``names`` (the run's earlier test passes', of ``epoch``'s
    run), and every rank the same: a name some batches or epochs alone returned was averaged over images it was not
    computed for, or gave metric lines of different ``test_*`` keys (seventeenth hostile pass, F5). Else one
    :class:`PluginFault` line names the model's evaluate, on every rank, before the sums are added over ranks.
    """
    who, pass_ = evaluating(model), "the test pass" if epoch is None else f"the test pass of epoch {epoch}"
    rank, world = distributed.world()
    where = f" in process {rank} of {world}" if shard and world > 1 else ""
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    held, said = names, None
    seed = distributed.rank_seed(seed, 0) if shard and rank else seed
    with seeded(model.device, seed), torch.no_grad():
        for batch, x in enumerate(split.batches(batch_size), 1):
            x = distributed.shard(x) if shard else x
            if not len(x):
                continue
            with blamed(evaluating(model)):
                stats = per_image(model.evaluate(x), x.shape[0], f"{type(model).__name__}.evaluate")
            if held is None:
                held = [str(key) for key in stats]
            elif {str(key) for key in stats} != set(held):
                said = (f"{who} returned {sorted(map(str, stats))} for batch {batch} of {pass_}{where}, but "
                        f"{sorted(held)} " + ("in the run's earlier test passes: every test pass must return the "
                                              "same names" if names is not None else
                                              "for its first batch: every batch must return the same names"))
                break
            for key, value in stats.items():
                sums[key] = sums.get(key, 0) + value.detach().sum(dtype=torch.float64)
    model.train()
    if shard and world > 1:  # each rank's names and what each found, on every rank, before any sum over ranks
        ranks: list[dict[str, Any]] = distributed.gather({"names": held, "said": said})
        said = next((part["said"] for part in ranks if part["said"] is not None), None)
        found = [(number, sorted(part["names"])) for number, part in enumerate(ranks) if part["names"] is not None]
        differ = next(((number, part) for number, part in found if part != found[0][1]), None)
        if said is None and differ is not None:
            said = (f"{who} returned {found[0][1]} in process {found[0][0]} but {differ[1]} in process {differ[0]} "
                    f"of {world}, in {pass_}: every process must return the same names")
    if said is not None:
        raise PluginFault(said)
    totals = {key: float(value) for key, value in sums.items()}
    return {key: value / len(split) for key, value in (distributed.sum_dicts(totals) if shard else totals).items()}


def fuse(optimizers: dict[str, torch.optim.Optimizer], fused: bool) -> list[str]:
    """Make each optimiser step with torch's fused kernel (one per parameter group), or not; those that cannot.

    Set on the built optimisers, so every model's ``configure_optimizers`` gets it;
    an optimiser torch offers no fused step for (or whose parameters its fused
    kernels do not take) steps as it was built, and its name is returned.
    """
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    devices = _get_fused_kernels_supported_devices()
    unfused = []
    for name, optimizer in optimizers.items():
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if "fused" not in optimizer.defaults or any(
                p.device.type not in devices or not torch.is_floating_point(p) for p in params):
            unfused += [name] if fused else []
            continue
        for settings in (optimizer.defaults, *optimizer.param_groups):
            settings["fused"] = fused
            if fused and settings.get("foreach"):
                settings["foreach"] = None
    return unfused


class CompiledObjective:
    """A model's per-image losses through ``torch.compile``; eager for good, after one line, if compiling fails.

    Shapes are static (``dynamic=False``): the full batches and the last partial one
    each get their own kernels, the same ones whichever comes first, so a resumed run
    computes what an uninterrupted one does. On CUDA, CUDA graphs replay each step
    ("reduce-overhead"). Compiled code is kept in inductor's on-disk cache
    (:func:`private_compile_cache`), so a second run of the same model compiles in a
    fraction of the time.
    """

    def __init__(self, forward: Callable[[torch.Tensor], dict[str, torch.Tensor]], device: torch.device,
                 say: Callable[[str], None] = warn) -> None:
        self.eager = forward
        self.say = say
        self.lines = _CompilerLine(say)  # each warning of torch's compiler said once for the run
        self.cuda_graphs = device.type == "cuda"
        private_compile_cache()  # whoever compiles (the CLI checked before making a run folder; the API, a script)
        self.compiled: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = torch.compile(
            forward, mode="reduce-overhead" if self.cuda_graphs else None, dynamic=False)

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.compiled is None:
            return self.eager(x)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        from torch._dynamo.exc import BackendCompilerFailed

        try:
            with compiler_lines(self.lines):
                return self.compiled(x)
        except BackendCompilerFailed as exc:
            lines = [line for line in str(exc).splitlines() if line.strip() and not line.startswith("Set ")]
            self.say(f"--compile: torch.compile failed ({' '.join(lines[:2])}); training uncompiled")
            self.compiled = None
            return self.eager(x)


#: The loggers of torch's compiler, whose warnings a compiled step turns into genzoo's lines (:func:`compiler_lines`).
_COMPILER_LOGGERS = ("torch._dynamo", "torch._inductor", "torch.utils.cpp_extension")


class _CompilerLine(logging.Handler):
    """Each distinct warning of torch's compiler once, as one line through ``say``: the recompile limit's block (a
    model counting its calls in a plain attribute) was nine lines of torch's log on stderr, the run going on
    uncompiled without a word of genzoo's (twenty-fifth hostile pass, plugins F3). ``cpp_extension``'s note that no
    CUDA runtime is found, on every CPU-only machine, is nothing to act on, and not said (M1)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.say = say
        self.said: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("torch.utils.cpp_extension") and record.levelno < logging.ERROR:
            return
        try:
            lines = [line.strip() for line in record.getMessage().splitlines() if line.strip()]
        except Exception:  # a message that cannot be formatted: torch's, not the run's
            return
        text = " ".join(lines[:2])
        if text and text not in self.said:
            self.said.add(text)
            self.say(f"--compile: torch: {text}")


@contextmanager
def compiler_lines(handler: _CompilerLine) -> Iterator[None]:
    """Within it, the warnings of torch's compiler reach stderr through ``handler``'s lines, not torch's log."""
    loggers = [logging.getLogger(name) for name in _COMPILER_LOGGERS]
    kept = [(logger.handlers, logger.propagate) for logger in loggers]  # torch's own handler is on each
    for logger in loggers:
        logger.handlers, logger.propagate = [handler], False
    try:
        yield
    finally:
        for logger, (handlers, propagate) in zip(loggers, kept, strict=True):
            logger.handlers, logger.propagate = handlers, propagate


def _quiet(message: str) -> None:
    """Say nothing: a distributed run's ranks but 0 (whose line is the one shown)."""


def compiled_objective(model: Model, replicas: dict[str, nn.Module], compile: bool,
                       say: Callable[[str], None] = warn) -> CompiledObjective | None:
    """The objective compiled when ``compile`` asks for it and it can be; None (eager) otherwise, with one line why."""
    if not compile:
        return None
    if not model.automatic_optimization:
        say(f"--compile: {type(model).__name__} steps its own optimisers; training uncompiled")
        return None
    try:
        return CompiledObjective(replicas[""] if "" in replicas else model.loss, model.device, say)
    except RuntimeError as exc:  # torch.compile refuses this Python or platform
        say(f"--compile: torch.compile is unavailable ({one_line(str(exc))}); training uncompiled")
        return None


class _Objective(nn.Module):
    """The model's per-image losses as a module's forward, for DistributedDataParallel to wrap."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.loss(x)


def replicate(model: Model, scale: distributed.GradientScale) -> dict[str, nn.Module]:
    """DistributedDataParallel wrappers for a distributed run (none in one process).

    With automatic optimisation, one of the objective (key ``""``). A model that steps
    its own optimisers calls its child modules in ``training_step``; each child with
    trainable parameters is wrapped and called through the wrapper during that step
    (:func:`_through`), so such a model must keep its trainable parameters in child
    modules and call them, not reach inside them.
    """
    if distributed.world()[1] == 1:
        return {}
    if model.automatic_optimization:
        return {"": distributed.replicate(_Objective(model), scale)}
    direct = [name for name, p in model.named_parameters(recurse=False) if p.requires_grad]
    if direct:
        raise GenzooError(f"{type(model).__name__} steps its own optimisers and holds trainable parameters "
                          f"{direct} outside its child modules: it cannot train on several processes")
    return {name: distributed.replicate(child, scale) for name, child in model.named_children()
            if any(p.requires_grad for p in child.parameters())}


def unreplicated_buffers(model: Model, replicas: dict[str, nn.Module]) -> Iterator[torch.Tensor]:
    """The buffers of a manual model that no DDP wrapper of :func:`replicate` holds: its own (a running mean it keeps
    as ``self.register_buffer``) and those of children without trainable parameters. DDP broadcasts rank 0's buffers
    of the module it wraps before each forward; these :func:`training_step` broadcasts before each step, as DDP
    would had it wrapped the whole model (twenty-first hostile pass, plugins F4: each rank kept its own)."""
    return (buffer for name, buffer in model.named_buffers() if name.split(".", 1)[0] not in replicas)


@contextmanager
def _through(model: Model, replicas: dict[str, nn.Module]) -> Iterator[None]:
    """Let ``model``'s child modules be called through their DDP wrappers for one step."""
    children = {name: model._modules[name] for name in replicas if name}
    model._modules.update({name: replicas[name] for name in children})
    try:
        yield
    finally:
        model._modules.update(children)


class StepWatch:
    """Whether a manual-optimisation model's trainable parameters moved this session through the run's optimisers.

    genzoo checkpoints the optimisers ``configure_optimizers`` gave the trainer; a model whose
    ``training_step`` stepped an Adam of its own trained with moments no checkpoint held, and
    every resume started them afresh, exit 0 (eighteenth hostile pass, F4). So each trainable
    parameter is copied when a session starts and each optimiser's steps are counted (a hook
    after its step); once an optimiser holding a parameter has stepped, the parameter's moves are
    that optimiser's and its copy is let go. A parameter still copied that moved, moved through
    something else. Neither "no optimiser state yet" nor "a step that moved nothing" is a fault:
    a model accumulating gradients over several steps moves nothing before its optimiser's first
    step, and plain SGD keeps no state even once stepped; the trainer looks after the session's
    first step and before each checkpoint, while a copy is left (none, for a sound model, once
    each of its optimisers has stepped).
    """

    def __init__(self, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        #: How often each optimiser has stepped this session.
        self.counts = dict.fromkeys(optimizers, 0)
        holders: dict[int, dict[str, None]] = {}
        for name, optimizer in optimizers.items():
            for group in optimizer.param_groups:
                for tensor in group["params"]:
                    holders.setdefault(id(tensor), {})[name] = None
        #: Each trainable parameter not yet let go: the parameter, its value at the session's start, its optimisers.
        self.watched = {key: (param, param.detach().clone(), list(holders.get(id(param), {})))
                        for key, param in model.named_parameters() if param.requires_grad}
        self.hooks = [optimizer.register_step_post_hook(self._counter(name)) for name, optimizer in optimizers.items()]

    def _counter(self, name: str) -> Callable[..., None]:
        def count(*args: Any) -> None:
            self.counts[name] += 1
        return count

    def moved(self) -> tuple[str, list[str]] | None:
        """The first parameter that moved while none of the optimisers holding it had stepped, with those
        optimisers; None when there is none. Parameters whose optimisers have stepped are let go first."""
        stepped = {name for name, count in self.counts.items() if count}
        self.watched = {key: entry for key, entry in self.watched.items() if not stepped.intersection(entry[2])}
        return next(((key, holders) for key, (param, start, holders) in self.watched.items()
                     if not torch.equal(param.detach(), start)), None)

    def rebase(self) -> None:
        """Take the parameters' values now as their start: what ``after_training`` sets (a prior fitted by hand)
        is no training step's, and the final checkpoint keeps it (the review of the eighteenth pass's fixes)."""
        self.watched = {key: (param, param.detach().clone(), holders)
                        for key, (param, _, holders) in self.watched.items()}

    def close(self) -> None:
        """Take the step hooks off the optimisers: the session is over."""
        for hook in self.hooks:
            hook.remove()


#: The RNG states every checkpoint holds, and those of numpy's and Python's global streams, which it holds since
#: the twenty-first look (eighteenth hostile pass, F3).
TORCH_STREAMS, HOST_STREAMS = {"torch", "shuffle_epoch_start", "cuda"}, {"numpy", "python"}


#: Timing fields of a metric line: not losses.
TIMING = ("train_seconds", "train_images_per_s", "eval_seconds")


class EpochLines(ProgressColumn):
    """An epoch's bar, count and time left on one line, its losses and speed below, wrapped to the width.

    As columns of one line, the losses were cut to ``epo… … test loss_g 2.…`` in a
    terminal narrower than all of them; wrapped words are never cut.
    """

    def __init__(self) -> None:
        super().__init__(table_column=Column(no_wrap=False, overflow="fold"))
        self.columns = (TextColumn("[bold]{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
                        TimeRemainingColumn())

    def render(self, task: Task) -> RenderableType:
        line = Table.grid(padding=(0, 1), expand=True)
        for column in self.columns:
            if isinstance(column, BarColumn):
                line.add_column(no_wrap=True, ratio=1, max_width=40)  # the bar takes the room left, up to 40
            else:
                line.add_column(no_wrap=True)
        line.add_row(*(column(task) for column in self.columns))
        stats = task.fields["stats"]
        return Group(line, Text(stats, overflow="fold")) if stats else line


class Trainer:
    """Train ``model`` on ``train``, evaluating on ``test``, writing into ``run_dir``."""

    def __init__(
        self,
        model: Model,
        train: Split,
        test: Split,
        config: TrainConfig,
        run_dir: Path,
        console: Console | None = None,
        checkpoint_extra: dict[str, Any] | None = None,
    ) -> None:
        check_batch_size(config, len(train), model)
        self.model = model
        self.train = train
        self.test = test
        self.config = config
        self.run_dir = Path(run_dir)
        self.console = console or Console(stderr=True)
        self.rank, self.world_size = distributed.world()
        if self.rank:  # one progress display, rank 0's
            self.console = Console(quiet=True)
        self.checkpoint_extra = checkpoint_extra or {}
        #: The config as the model was built, which config.json records and every load builds from.
        self.built_config = copy.deepcopy(model.config)
        self.optimizers = configured_optimizers(model)
        unfused = fuse(self.optimizers, config.fused)
        if unfused and not self.rank:  # one line, rank 0's
            warn(f"--fused: torch has no fused step for optimiser(s) {', '.join(unfused)}; they step unfused")
        # What the model changes while training (a learning-rate schedule) differs from these; checkpoints say what.
        self.configured = {name: hyperparameters(optimizer) for name, optimizer in self.optimizers.items()}
        self.scale = distributed.GradientScale()
        self.replicas = replicate(model, self.scale)
        self.objective = compiled_objective(model, self.replicas, config.compile, warn if not self.rank else _quiet)
        self.precision, why = resolved(config.fp32_precision, model.device)
        if why and not self.rank:
            warn_resolved(why)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.position = Position()
        self._epoch_start_state = self.shuffle.get_state()
        self.steps_per_epoch = math.ceil(len(train) / config.batch_size)
        self._stop_signal: int | None = None  # set by the first stop signal
        self._stop_time = 0.0  # when it came (time.monotonic)
        #: The signals :meth:`fit` handles with :meth:`_request_stop` (none outside the main thread).
        self._handled: tuple[int, ...] = ()
        #: The names every step must return, in the order summed: the run's first step's (the sums of a mid-epoch
        #: checkpoint, or the last metric line, on resume; else this process's first step, rank 0's order).
        self.step_names: list[str] | None = None
        #: Where :attr:`step_names` came from, as the line holding a step to them says it.
        self._names_from = "at the run's first step"
        #: The names every epoch's test pass must return: the run's first test pass's (the last metric line's, on
        #: resume).
        self.test_names: list[str] | None = None
        #: A session's watch over a manual-optimisation model's parameters (:class:`StepWatch`), while it trains.
        self._watch: StepWatch | None = None
        #: The global step at which this session (this call of :meth:`fit`) started.
        self._session_start = 0
        #: Two images of this session's first step (or of the split, in a session that takes none), which each
        #: checkpoint's state check computes on.
        self._probe: torch.Tensor | None = None

    def _named(self) -> dict[str, str]:
        """``run``, the run's ``run_id`` that its checkpoints record too, for each metric line: another run's
        ``metrics.jsonl`` copied in is told apart (twentieth hostile pass, F2). Nothing for a run from before."""
        run_id = self.checkpoint_extra.get("run_id")
        return {RUN: run_id} if run_id is not None else {}

    # -- checkpoints -----------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / FILENAME

    def save(self) -> None:
        """Checkpoint everything a resume needs; never a model whose weights went non-finite.

        ``position`` says what the weights hold: ``epoch`` completed epochs plus
        ``step`` steps of the next (``global_step`` in all), so ``eval`` can tell the
        run's last epoch (``epoch`` = planned epochs, ``step`` 0) from a checkpoint that
        a crash left behind its metric lines.
        """
        pos = self.position
        self._check_weights()
        self._share_buffers()
        self._refuse_drifted_weights(f"at step {pos.global_step}, before its checkpoint")
        self._refuse_unsaved_moves(self._reached())
        refuse_changed_config(self.model, self.built_config, "while training")  # fit adds what the run holds
        self._refuse_unsaveable_state("while training")
        if self._probe is None and len(self.train):  # no step this session (resumed at a run's last step)
            self._probe = next(iter(self.train.batches(2)))[:2].detach().clone()
        if self._probe is not None:
            self._refuse_unkept_state(self._probe, f"after step {pos.global_step} of the run")
        if self.rank:  # rank 0 alone writes; every rank holds the same weights
            return
        check_in_place(self.run_dir)
        save_checkpoint(
            self.checkpoint_path,
            {
                **self.checkpoint_extra,
                "model_state": self.model.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "changed_hyperparameters": {k: changed_hyperparameters(self.configured[k], o)
                                            for k, o in self.optimizers.items()},
                "position": asdict(pos),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "shuffle_epoch_start": self._epoch_start_state,
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                    **host_states(),  # numpy's and Python's: a model may draw from them (mixup)
                },
            },
        )

    def restore(self, state: dict[str, Any], source: Path | None = None) -> None:
        """Load model, optimisers, position and RNG states from a checkpoint dict.

        Every field is checked against this run (``source`` names the checkpoint in
        messages) before any of it is used, so a damaged or foreign checkpoint is
        refused before the caller touches a file.
        """
        path = source or self.checkpoint_path
        position = Position.from_checkpoint(state.get("position"), self.config.epochs, path)
        expected = self.steps_per_epoch * position.epoch + position.step
        images = min(position.step * self.config.batch_size, len(self.train))
        if position.step > self.steps_per_epoch or position.global_step != expected or position.images != images:
            raise GenzooError(
                f"{path} is at step {position.step} of epoch {position.epoch + 1} (global step "
                f"{position.global_step}, {position.images} images), which cannot be in this run: an epoch here "
                f"has {self.steps_per_epoch} steps of {self.config.batch_size} images; the data or batch size "
                "differ from its run"
            )
        rng = self._rng_states(state.get("rng"), path)
        optimizers = state.get("optimizers")
        if not isinstance(optimizers, dict) or set(optimizers) != set(self.optimizers):
            saved = sorted(map(repr, optimizers)) if isinstance(optimizers, dict) else shown(optimizers)
            raise GenzooError(f"{path} does not fit this model (optimisers {saved} vs {sorted(self.optimizers)})")
        probe = self._step_probe()
        automatic = self.model.automatic_optimization
        steps = ({name: position.global_step for name in self.optimizers} if automatic
                 else declared_steps(self.model, position.global_step))
        changed = state.get("changed_hyperparameters", {})  # none in a checkpoint from before the record
        for name, opt in self.optimizers.items():
            check_optimizer_state(name, optimizers[name], opt, path, steps=None if steps is None else steps.get(name),
                                  stepped=None if probe is None else probe[1],
                                  steps_from=None if automatic else f"{type(self.model).__name__}.optimizer_steps",
                                  changed=changed.get(name) if isinstance(changed, dict) else changed)
        check_finite_weights(state, path, self.model)
        try:
            self.model.load_state_dict(state["model_state"])
            for name, opt in self.optimizers.items():
                load_optimizer_state(opt, optimizers[name])
            fuse(self.optimizers, self.config.fused)  # the run's setting, not what the saved groups say
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
            if out_of_memory(exc):
                raise GenzooError(f"{path}: {memory_line(exc)}") from exc
            message = first_line(f"{type(exc).__name__}: {exc}")
            raise GenzooError(f"{path} does not fit this model ({message})"
                              f"{renamed_weights(self.model, state['model_state'])}") from exc
        self._check_sums(position, path, None if probe is None else probe[0])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        if HOST_STREAMS <= set(rng):
            set_host_states(rng)
        else:  # a checkpoint from before they were kept: its resumes at least repeat each other
            seed_host_streams(self.config.seed + position.global_step)
        self.shuffle.set_state(rng["shuffle_epoch_start"])
        self.position = position
        self._epoch_start_state = rng["shuffle_epoch_start"]
        self.step_names = list(position.sums) or None

    def _check_sums(self, position: Position, path: Path, reported: set[str] | None) -> None:
        """Mid-epoch, the epoch's sums must be of exactly the model's step statistics (:meth:`check_step_names`).

        ``genzoo.training.resume_run`` adds the exact names of the last epoch's metric line when there is one.
        """
        if position.step:
            self.check_step_names(set(position.sums), f"{path} holds epoch sums of", reported)

    def check_step_names(self, names: set[str], holds: str, reported: set[str] | None = None) -> None:
        """``names``, the step statistics a run file ``holds`` (a mid-epoch checkpoint's sums, a metric line's
        ``train_*``), must be the model's, or the file is called damaged, before any step.

        Sums of other names would come out as other ``train_*`` metrics, a name
        missing would drop one; a metric line's other names were found only after a
        step, and blamed on the model (seventeenth hostile pass, M6). ``reported`` is
        what a step reports (see :meth:`_step_probe`, which runs when it is not given);
        a model that steps its own optimisers says that only in a step, so ``names`` must
        hold each of ``loss_names`` and only names ``evaluate`` also reports (its names,
        from one test image on its own RNG stream).
        """
        if reported is None:
            probe = self._step_probe()
            reported = None if probe is None else probe[0]
        if reported is not None and names != reported:
            raise GenzooError(f"{holds} {sorted(names)}, but this model's steps report {sorted(reported)}; it is "
                              "damaged or not from this run")
        if reported is not None:
            return
        reported = set(test_losses(self.model, self.test.take(1), 1, self.config.seed)) | set(self.model.loss_names)
        if not set(self.model.loss_names) <= names <= reported:
            raise GenzooError(f"{holds} {sorted(names)}, but this model's steps report "
                              f"{sorted(self.model.loss_names)} and at most {sorted(reported)}; "
                              "it is damaged or not from this run")

    def _step_probe(self) -> tuple[set[str], set[int]] | None:
        """The names a step reports and the positions (in group order) of the parameters it updates.

        Found without a step, for automatic optimisation: the step reports every
        value of ``Model.loss`` and updates the parameters its objective has a
        gradient for, so ``loss`` runs on one training image in eval mode, on a fork
        of the RNG, its gradient taken by ``torch.autograd.grad`` (nothing stepped,
        no ``.grad`` set, no buffer moved). A model that steps its own optimisers
        tells either only in a step: None.
        """
        model = self.model
        if not model.automatic_optimization or len(self.optimizers) != 1:
            return None
        (optimizer,) = self.optimizers.values()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        trainable = [i for i, p in enumerate(params) if p.requires_grad]
        x = next(iter(self.train.batches(max(1, model.min_batch_size))))
        was_training = model.training
        model.eval()
        try:
            with seeded(model.device, self.config.seed), torch.enable_grad(), \
                    blamed(with_its_losses(f"{type(model).__name__}.loss", model)):
                stats = model.loss(x)
                objective = stats.get(model.loss_names[0])
                grads: tuple[torch.Tensor | None, ...] = ()
                if isinstance(objective, torch.Tensor) and objective.requires_grad and trainable:
                    grads = torch.autograd.grad(objective.sum(), [params[i] for i in trainable], allow_unused=True)
        finally:
            model.train(was_training)
        return set(stats), {i for i, grad in zip(trainable, grads) if grad is not None}

    @staticmethod
    def _rng_states(rng: Any, path: Path) -> dict[str, Any]:
        """The checkpoint's RNG states, each tried on a scratch generator first (numpy's and Python's are in no
        checkpoint from before the twenty-first look: those resume without them)."""
        if not isinstance(rng, dict) or set(rng) not in (TORCH_STREAMS, TORCH_STREAMS | HOST_STREAMS):
            raise GenzooError(f"{path} has no usable RNG states")
        problem = host_state_problem(rng) if HOST_STREAMS <= set(rng) else None
        if problem is not None:
            raise GenzooError(first_line(f"{path} has no usable RNG states ({problem})"))
        cuda = rng["cuda"]
        states = [rng["torch"], rng["shuffle_epoch_start"]]
        if not isinstance(cuda, list) or not all(isinstance(t, torch.Tensor) and data_problem(t) is None
                                                 and t.dtype == torch.uint8 for t in [*states, *cuda]):
            raise GenzooError(f"{path} has no usable RNG states (not plain byte tensors)")
        for state in states:
            try:
                torch.Generator().set_state(state)
            except (RuntimeError, ValueError, TypeError) as exc:
                raise GenzooError(first_line(f"{path} has no usable RNG states ({exc})")) from exc
        return rng

    # -- the loop ----------------------------------------------------------------------

    def fit(self, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Train the remaining epochs; return the metric records written this call.

        On a terminal each epoch has a progress bar; elsewhere (a log file, a pipe, a
        batch job) a bar is noise, so each epoch prints one plain line when it ends.
        """
        records = []
        progress = Progress(EpochLines(), console=self.console, transient=False,
                            disable=not self.console.is_terminal)
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {signum: signal.signal(signum, self._request_stop) for signum in STOP_SIGNALS
                        if handled(signum)}
        self._handled = tuple(previous)
        self._session_start = self.position.global_step
        if not self.model.automatic_optimization:  # the trainer steps an automatic model's one optimiser itself
            self._watch = StepWatch(self.model, self.optimizers)
        try:
            with progress:
                while self.position.epoch < self.config.epochs:
                    try:
                        record = self._epoch(progress)
                    except PluginFault as exc:  # a bug in the plugin's own code: one line, and what the run holds
                        raise PluginFault(self._plugin_failed(str(exc))) from exc.__cause__
                    records.append(record)
                    with distributed.together():  # rank 0's loggers alone: an error of theirs stops every rank
                        if on_epoch is not None:
                            on_epoch(record)
                    stop = distributed.agree(self._stop_signal)
                    if stop is not None:
                        # A stop during evaluation (or the last epoch's after_training): the epoch's checkpoint is
                        # already saved. After the last epoch too: the pictures still to draw (an AE's mixture fitted
                        # for them: minutes) went on past it without a word (twentieth hostile pass, plugins M7);
                        # a resume of the complete run draws them.
                        raise Interrupted(self.checkpoint_path, stop)
        finally:
            self._handled = ()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._watch is not None:
                self._watch.close()
                self._watch = None
        return records

    def _request_stop(self, signum: int, frame: Any) -> None:
        """Ctrl-C, SIGTERM or SIGHUP: finish the current step, then checkpoint and stop (see ``_epoch``).

        A second stop signal stops at once, without a checkpoint, for a step that hangs; the same signal again
        within :data:`REPEAT_WINDOW_S` is a copy of the first (a group's signal passed on by a parent), not a second.
        """
        now = time.monotonic()
        if self._stop_signal is not None:
            if signum == self._stop_signal and (now - self._stop_time < REPEAT_WINDOW_S or signum == signal.SIGXCPU):
                return  # the kernel sends SIGXCPU again each second of CPU past the soft limit: no second request
            stop_at_once(signum, frame)
        self._stop_signal, self._stop_time = signum, now

    def _keep_stop_handlers(self) -> None:
        """Put back the stop handlers :meth:`fit` set, with a warning, where code genzoo does not guard (a model's
        ``evaluate``) replaced one: a SIGTERM then killed the run at once, with no checkpoint and no line (nineteenth
        hostile pass, F3; a guarded plugin call puts them back itself, naming the plugin)."""
        for signum in self._handled:
            handler = signal.getsignal(signum)
            if handler != self._request_stop:
                signal.signal(signum, self._request_stop)
                if not self.rank:
                    set_to = process_settings.handler_name(handler)
                    warn(f"the {signal.Signals(signum).name} handler was set to {set_to} by code that genzoo does "
                         "not guard (a model's evaluate); it is put back, so a stop still saves a checkpoint")

    def _epoch(self, progress: Progress) -> dict[str, Any]:
        pos = self.position
        epoch = pos.epoch + 1
        if 0 < pos.step < self.steps_per_epoch:  # past the last step, a batch is refused as not due
            self._check_resumed_order(epoch)
        task = progress.add_task(
            f"epoch {epoch}/{self.config.epochs}",
            total=self.steps_per_epoch,
            completed=pos.step,
            stats="",
        )
        self.shuffle.set_state(self._epoch_start_state)
        batches = self.train.batches(
            self.config.batch_size, shuffle=True, generator=self.shuffle, skip=pos.step
        )
        window: list[dict[str, torch.Tensor]] = []
        window_sizes: list[int] = []
        started = time.perf_counter()
        self.model.train()
        every = self.config.checkpoint_every
        # Training's products alone in the run's precision: each epoch's test pass multiplies exactly.
        with fp32_precision(self.precision, self.model.device):
            for x in batches:
                due = min(self.config.batch_size, len(self.train) - pos.step * self.config.batch_size)
                if not isinstance(x, torch.Tensor):
                    raise self._broken_split(epoch, f"gave a {type(x).__name__} at step {pos.step + 1}, not a tensor "
                                                    "of images")
                if x.shape[0] != due:  # counted, not trusted: the checks before training read them unshuffled
                    raise self._broken_split(epoch, f"gave a batch of {x.shape[0]} images at step {pos.step + 1}, "
                                                    f"where {max(due, 0)} were due")
                x = self._shard(x)
                first, opening = pos.global_step == 0, pos.global_step == self._session_start
                if first and self._watch is not None:
                    stats = self._counted_step(x, self._watch)
                else:
                    stats = training_step(self.model, x, self.optimizers, self.replicas, self.objective)
                # The batch's means, summed in float64 (float16 values overflow their own sum), weighted in _flush.
                window.append({key: value.sum(dtype=torch.float64) / x.shape[0] for key, value in stats.items()})
                window_sizes.append(x.shape[0])
                pos.step += 1
                pos.global_step += 1
                signum = distributed.agree(self._stop_signal)  # read once: a signal may arrive during the checks below
                stop = signum is not None
                due = every is not None and pos.step % every == 0 and pos.step < self.steps_per_epoch
                # The run's first step alone is flushed first: a non-finite loss there is a divergence, which
                # the first-step check would otherwise report as optimiser state no resume takes.
                if first or stop or due or len(window) >= SYNC_EVERY or pos.step == self.steps_per_epoch:
                    self._flush(window, window_sizes, epoch)
                    window, window_sizes = [], []
                    elapsed = pos.seconds + time.perf_counter() - started
                    progress.update(task, completed=pos.step, stats=self._describe(elapsed))
                if opening:  # what every checkpoint's state check computes on (two of this session's first images)
                    self._probe = x[:2].detach().clone()
                if first:
                    self._check_first_step(x)
                if opening:
                    self._refuse_unsaved_moves("in the run's first step" if first else
                                               f"in the first step this resume took (step {pos.step} of epoch {epoch})")
                if stop or due:
                    pos.seconds += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save()
                    if signum is not None:
                        raise Interrupted(self.checkpoint_path, signum)
        pos.seconds += time.perf_counter() - started
        if pos.step != self.steps_per_epoch:  # an epoch short of images is no finished epoch
            raise self._broken_split(epoch, f"ended after batch {pos.step}")
        record = self._finish_epoch(epoch)
        progress.update(task, stats=self._summary(record))
        if progress.disable:
            self.console.print(f"epoch {epoch}/{self.config.epochs}  {self._summary(record)}", soft_wrap=True,
                               markup=False, highlight=False)
        return record

    def _counted_step(self, x: torch.Tensor, watch: StepWatch) -> dict[str, torch.Tensor]:
        """A run's first step of a model that steps its own optimisers, its ``optimizer_steps(1)`` checked.

        A resume holds the saved optimiser states to what ``optimizer_steps`` says; one
        that disagrees with what ``training_step`` does (a critic said to step five times
        a step, stepped once) had every checkpoint refused, all work lost. So
        each optimiser's steps are counted in the first step and compared, before any
        checkpoint is written. The session's ``watch`` counts them: this is its first step too.
        """
        stats = training_step(self.model, x, self.optimizers, self.replicas, self.objective)
        taken = dict(watch.counts)
        said = declared_steps(self.model, 1)
        if said is not None and any(said.get(name, count) != count for name, count in taken.items()):
            cls = type(self.model).__name__
            raise PluginFault(f"{cls}.optimizer_steps(1) says {said}, but {cls}.training_step stepped {taken} in "
                              "the first step: resume would refuse every checkpoint; make optimizer_steps count "
                              "the steps training_step takes (or return None)")
        return stats

    def _check_first_step(self, x: torch.Tensor) -> None:
        """After a run's first step on ``x`` (its values found finite), before any checkpoint: refuse what would make
        every resume differ or fail.

        The state check before the run folder takes no step, so a config changed by a manual
        ``training_step`` or an optimiser hook is caught here, and so is state a manual ``training_step`` keeps
        outside the state_dict (:meth:`_refuse_unkept_state`); and each optimiser's state must pass
        the check a resume makes of it (:func:`check_optimizer_state`), so one holding what a safe
        checkpoint cannot (an enum member, numpy's float64) is stopped now, not after hours of
        training that no resume could continue (sixteenth hostile pass, F9). Non-finite weights or
        moments are a divergence, said as such, not state no resume takes. A refusal is the model's
        fault (:class:`PluginFault`): ``fit`` adds that the run folder holds its config.json alone.
        """
        cls = type(self.model).__name__
        self._check_weights()
        self._share_buffers()
        self._refuse_drifted_weights("after the run's first step")
        refuse_changed_config(self.model, self.built_config, "in its first training step")
        steps = (dict.fromkeys(self.optimizers, 1) if self.model.automatic_optimization
                 else declared_steps(self.model, 1))
        for name, optimizer in self.optimizers.items():
            try:  # its settings (the step may have changed them) are compared with themselves: a value no checkpoint
                # holds as it is fails
                check_optimizer_state(name, optimizer.state_dict(), optimizer, self.checkpoint_path,
                                      steps=None if steps is None else steps.get(name))
            except UnfitOptimizerState as exc:
                raise PluginFault(
                    f"{cls}'s optimiser {name!r} holds, after the run's first step, what no resume would take "
                    f"({exc.why}), so every checkpoint of the run would be refused; keep its state in tensors, "
                    "numbers, strings, None, or lists, tuples and dicts of them") from exc
        self._refuse_unsaveable_state("after the run's first step")
        self._refuse_unkept_state(x, "after the run's first training step",
                                  methods=not self.model.automatic_optimization)

    def _share_buffers(self) -> None:
        """Rank 0's buffers on every rank (:func:`distributed.share_buffers`), where what the ranks hold is
        evaluated or checkpointed: rank 0's alone are checkpointed, and a buffer a step updates from the rank's own
        batches (BatchNorm's running statistics in a forward, a running mean a manual ``training_step`` keeps)
        differs on each rank after it. Evaluated with them, the test metrics are those of the checkpoint, and a
        resume continues from what every rank held (twenty-first hostile pass, plugins F4)."""
        distributed.share_buffers(buffer for _, buffer in self.model.named_buffers())

    def _refuse_drifted_weights(self, when: str) -> None:
        """Refuse, in the same line on every rank, ranks whose parameters are no longer the same (``when`` says
        when): rank 0 checkpoints its own, and each rank evaluates its part of the test split with its own.

        DDP averages the gradients of the forward passes made through the wrappers :func:`replicate` swaps in
        for a manual model's children; a model that calls a child through a reference it kept (a plain list of
        its networks, a bound ``self.decoder.forward``) bypasses the wrapper, and that child trained apart on
        each rank, exit 0 (twentieth hostile pass on plugins, F5). Each parameter's digest by name is agreed
        (:func:`distributed.disagreement`: one all-gather when they agree), and so is each persistent buffer's,
        which a checkpoint keeps: the callers share rank 0's first (:meth:`_share_buffers`), so one that differs
        was changed past that, never left to pass unsaid (twenty-first hostile pass, plugins F4). Nothing to agree
        in one process.
        """
        if self.world_size == 1:
            return
        found = distributed.disagreement({name: contents_sha256({"": value.detach()})
                                          for name, value in self.model.state_dict().items()
                                          if isinstance(value, torch.Tensor)})
        if found is None:
            return
        rank, names = found
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        raise PluginFault(
            f"process {rank} of {self.world_size} holds other weights than process 0 {when} "
            f"({', '.join(printable(name) for name in names[:3])}{more}): {type(self.model).__name__} trained "
            "them apart on each process, as when it calls a child module through a reference it kept (a list of "
            "its networks, a bound method such as self.decoder.forward), which bypasses genzoo's DDP wrapper and "
            "averages no gradient of it, or when it picks at random which parameters a step uses (each process "
            "draws its own noise: a layer dropped on one is trained on another); call each trainable child as the "
            "attribute it is (self.decoder(z)), and make such picks alike on every process (from a generator of "
            "its own seeded by the step)")

    def _refuse_unkept_state(self, x: torch.Tensor, when: str, methods: bool = True) -> None:
        """Refuse a model that keeps state outside the state_dict: a copy of the trained model and fresh copies
        given its state_dict must compute each method alike (:func:`refuse_unkept_state`), on two of the images
        of this session's first step, on the run's device; the model itself and the random streams are left as
        they were.

        A running mean of the codes kept in a non-persistent buffer or a plain attribute and read by ``sample``
        trained to exit 0, and ``genzoo sample RUN``, eval and every resume saw it reset (eighteenth hostile pass,
        F13): checked after a manual model's first step (the check before the run folder runs no
        ``training_step``). State whose effect starts later (a KL warm-up counted in a plain attribute, a loss
        plugin counting its calls) passed both, and a resumed run differed from one never stopped (nineteenth
        hostile pass, F1): so every checkpoint is checked too, before it is written. A model that cannot be
        deep-copied is left to the optimiser check.

        Then each optimiser is held to a fresh one that a fresh build of the model given its state_dict configures,
        given the optimiser's state_dict, as a resume makes them (:func:`refuse_unkept_optimizer_state`): slow
        weights a Lookahead-style optimiser kept in a plain attribute were in no checkpoint (twentieth hostile pass,
        plugins F7), nor those it kept on the parameters (twenty-first pass, plugins F3), which a deep copy of the
        model drops as a load does, though not those the model sets when built. After the first step of a model
        the trainer steps (``methods`` False) that is all: the check before the run folder ran its methods.
        """
        name = type(self.model).__name__
        try:
            stepped = copy.deepcopy(self.model) if methods else None
        except KeyboardInterrupt:
            raise
        except PLUGIN_FAULTS:
            stepped = None
        try:
            if stepped is not None:
                refuse_unkept_state(stepped, x[:2].detach(), f"a {name} {when} and a fresh {name} given its "
                                                             "state_dict (running each method first, as after a load)",
                                    " (a non-persistent buffer or plain attribute that training changes, or state in "
                                    "a loss it was handed?)")
            refuse_unkept_optimizer_state(self.model, self.optimizers,
                                          self._fresh_optimizers(loaded_copy(self.model)), when)
        except GenzooError as exc:  # the model's fault: fit adds what the run folder holds
            raise PluginFault(str(exc)) from exc

    def _fresh_optimizers(self, model: Model) -> dict[str, torch.optim.Optimizer]:
        """The optimisers ``model`` (a fresh build of the trained one) configures, each given the state_dict of the
        trained optimiser of its name, as a resume gives them: one that cannot take it is refused now."""
        fresh = configured_optimizers(model)
        cls = type(self.model).__name__
        if set(fresh) != set(self.optimizers):
            raise GenzooError(f"{cls}.configure_optimizers gives optimisers {sorted(fresh)} for a fresh build of the "
                              f"trained model, not {sorted(self.optimizers)} as for the model: a resume could not "
                              "restore them")
        for name, optimizer in fresh.items():
            with blamed(f"{cls}'s optimiser {name!r} ({type(optimizer).__name__}.load_state_dict)",
                        "taking the state_dict of the trained one, as a resume does"):
                optimizer.load_state_dict(self.optimizers[name].state_dict())
        fuse(fresh, self.config.fused)  # as a resume does: the run's setting, which their defaults hold
        return fresh

    def _refuse_unsaved_moves(self, when: str) -> None:
        """Refuse a run whose trainable parameters moved this session while no optimiser holding them that the
        checkpoints keep had stepped (:class:`StepWatch`): an optimiser of the model's own, whose state every
        resume would start afresh. Looked at after the session's first step and before each checkpoint (``when``
        says which), so a model accumulating gradients before its first step is not refused for moving nothing."""
        moved = None if self._watch is None else self._watch.moved()
        if moved is None:
            return
        key, holders = moved
        held = (f"the optimiser{'s' if len(holders) > 1 else ''} that hold{'' if len(holders) > 1 else 's'} it "
                f"({', '.join(map(repr, holders))}, from configure_optimizers) had not stepped" if holders
                else "no optimiser from configure_optimizers holds it")
        raise PluginFault(f"{type(self.model).__name__}.training_step moved the parameter {key!r} {when}, "
                          f"but {held}: an optimiser of the model's own (or a step by hand) moved it, whose state no "
                          "checkpoint holds, so every resume would start it afresh; step the optimisers "
                          "training_step is given (its optimizers argument)")

    def _reached(self) -> str:
        """How far the run has trained, as a refusal before a checkpoint says it."""
        pos = self.position
        if pos.step in (0, self.steps_per_epoch):
            return f"by the end of epoch {pos.epoch + 1 if pos.step else pos.epoch}"
        return f"by step {pos.step} of epoch {pos.epoch + 1}"

    def _refuse_unsaveable_state(self, when: str) -> None:
        """Refuse a state_dict no weights-only checkpoint holds (:func:`extra_state_problem`): after the first step,
        and before each checkpoint, since a value can turn unloadable later in training (F2, seventeenth pass)."""
        line = unsaveable_state_line(self.model, f", {when},", "every checkpoint of the run would be refused")
        if line is not None:
            raise PluginFault(line)

    def _check_resumed_order(self, epoch: int) -> None:
        """A resumed epoch must start with the batch an uninterrupted run trains at its step.

        A split that skipped wrongly (past its first shard, say) trained batches the run had
        trained already and saved that over the run's checkpoint, then failed at the epoch's
        end, on every resume. The batches skipped are read once more, here, before any step:
        at most an epoch's reading, as resume's data hash reads anyway.
        """
        step, size = self.position.step, self.config.batch_size

        def shuffled(skip: int) -> Iterator[Any]:
            generator = torch.Generator()
            generator.set_state(self._epoch_start_state)
            return iter(self.train.batches(size, shuffle=True, generator=generator, skip=skip))

        due = next(itertools.islice(shuffled(0), step, None), None)
        if not (isinstance(due, torch.Tensor) and same_batch(due, next(shuffled(step), None))):
            raise GenzooError(f"the training split broke the Split protocol in epoch {epoch}, resumed at step "
                              f"{step + 1}: its batches({size}, shuffle=True, skip={step}) did not start with batch "
                              f"{step + 1} of the epoch's order drawn again from the same generator state, so the run "
                              "would go on with other batches than it skipped; nothing was trained and the checkpoint "
                              f"is kept: mend the split, then resume; {RESUME_PROTOCOL}")

    def _broken_split(self, epoch: int, problem: str) -> GenzooError:
        """The training split's shuffled batches broke the protocol: one line, before the epoch counts."""
        return GenzooError(f"the training split broke the Split protocol in epoch {epoch}: its shuffled "
                           f"batches({self.config.batch_size}) {problem}, but its {len(self.train)} images (len) "
                           f"make {self.steps_per_epoch} batches of {self.config.batch_size}; {SPLIT_PROTOCOL}")

    def _shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's part of the global batch ``x``, its gradient scale and noise set for it.

        Rank 0 draws from the run's own random stream; the others reseed before every
        step (:func:`genzoo.distributed.rank_seed`), so no state of theirs needs a checkpoint.
        """
        if self.world_size == 1:
            return x
        part = distributed.shard(x)
        self.scale.set(self.model.objective_reduction, part.shape[0], x.shape[0])
        if self.rank:
            seed_streams(distributed.rank_seed(self.config.seed, self.position.global_step))
        return part

    def _flush(self, window: list[dict[str, torch.Tensor]], sizes: list[int], epoch: int) -> None:
        """Fold a window of step stats into the epoch sums; stop on a non-finite loss.

        In a distributed run each rank's step means are over its shard: they are
        weighted by shard size and summed over ranks into the global batch's means.
        """
        pos = self.position
        keys = self._held_names(window, epoch)
        taken = [key for key in keys if f"train_{key}" in TIMING]
        if taken:  # its value would be overwritten by the trainer's own timing, unseen
            raise GenzooError(f"{type(self.model).__name__} returns the loss {taken[0]!r}, a name the trainer keeps "
                              f"for its own timing (train_{taken[0]} in metrics.jsonl): rename it")
        stacked = torch.stack([torch.stack([s[k] for k in keys]) for s in window]).double().cpu()
        if self.world_size > 1:
            local = torch.tensor(sizes, dtype=torch.float64)
            global_sizes = distributed.reduce_sum(local)
            stacked = distributed.reduce_sum(stacked * local[:, None]) / global_sizes[:, None]
            sizes = [int(n) for n in global_sizes.tolist()]
        finite = torch.isfinite(stacked).all(dim=1)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0])
            step = pos.step - len(window) + bad + 1
            which = [key for key, value in zip(keys, stacked[bad].tolist()) if not math.isfinite(value)]
            objective = self.model.loss_names[0] if self.model.automatic_optimization else None
            if objective is not None and objective not in which:  # the objective is finite: a statistic is not
                raise PluginFault(f"{type(self.model).__name__}.loss gave a non-finite {printable(which[0])!r} "
                                  f"({stacked[bad][keys.index(which[0])].item()}) at epoch {epoch}, step {step}, its "
                                  f"objective {printable(objective)!r} finite: every statistic it reports must be "
                                  f"finite; {self._kept()}")  # not a divergence (twenty-fourth pass, plugins M10)
            raise Diverged(
                f"training diverged: non-finite loss at epoch {epoch}, step {step}; {self._kept()}"
            )
        weights = torch.tensor(sizes, dtype=torch.float64)
        totals = (stacked * weights[:, None]).sum(dim=0)
        for key, total in zip(keys, totals.tolist()):
            pos.sums[key] = pos.sums.get(key, 0.0) + total
        pos.images += int(weights.sum())

    def _held_names(self, window: list[dict[str, torch.Tensor]], epoch: int) -> list[str]:
        """The names of the window's step values, each step's held to the run's first step's (:attr:`step_names`;
        a resume that found none held to its own first step's).

        A model whose steps return a name only sometimes was a ``KeyError`` here, or had a
        value dropped or averaged over images it was not computed for; across the ranks of a
        distributed run, all-reduces of different lengths hung or failed in gloo. So every
        rank's names are compared (with every other rank's too) before any all-reduce of
        them, and every rank stops with the same line (a :class:`PluginFault`: ``fit`` adds
        what the run holds), before the sums or a checkpoint take in the window.
        """
        cls = type(self.model).__name__
        who = f"{cls}.loss" if self.model.automatic_optimization else f"{cls}.training_step"
        first = self.position.step - len(window) + 1
        where = f" in training process {self.rank} of {self.world_size}" if self.world_size > 1 else ""
        held = self.step_names if self.step_names is not None else list(window[0])
        if self.step_names is None and self.position.global_step > len(window):  # resumed, with no names to go by
            self._names_from = f"at step {first} of epoch {epoch}, the first this resume trained"
        said = next((f"{who} returned {sorted(map(str, stats))} at step {first + i} of epoch {epoch}{where}, but "
                     f"{sorted(map(str, held))} {self._names_from}: every step must return the same names"
                     for i, stats in enumerate(window) if set(stats) != set(held)), None)
        missing = [name for name in self.model.loss_names if name not in held]
        if said is None and missing:  # loss.png drew an empty panel for it, with matplotlib's raw warning
            said = (f"{who} returned {sorted(map(str, held))} at step {first} of epoch {epoch}{where}, without "
                    f"{', '.join(map(repr, missing))} of {cls}.loss_names: every step must return each of them")
        if self.world_size > 1:  # each rank's names and what each found, on every rank
            ranks: list[dict[str, Any]] = distributed.gather({"names": [str(key) for key in held], "said": said})
            said = next((part["said"] for part in ranks if part["said"] is not None), None)
            names = [sorted(part["names"]) for part in ranks]
            differ = next((rank for rank, part in enumerate(names) if part != names[0]), None)
            if said is None and differ is not None:
                said = (f"{who} returned {names[0]} in training process 0 but {names[differ]} in process {differ} "
                        f"of {self.world_size}, from step {first} of epoch {epoch}: every process must return the "
                        "same names")
            if said is None:  # rank 0's order: the sums are all-reduced key by key
                order: list[str] = ranks[0]["names"]
                held = sorted(held, key=lambda key: order.index(str(key)))
        if said is not None:
            raise PluginFault(said)
        self.step_names = held
        return held

    def _plugin_failed(self, said: str) -> str:
        """``said``, what the model's code raised during training, and what it left: whether a resume can continue."""
        if not self.checkpoint_path.exists():
            return (f"{said}; no checkpoint had been written yet, so {self.run_dir} (its config.json alone) cannot "
                    "be resumed: once the model is mended, train again into another folder")
        return (f"{said}; the last good checkpoint is kept at {self.checkpoint_path}, and what followed it is "
                f"trained again once the model is mended: resume with: genzoo resume {self.run_dir}")

    def _kept(self) -> str:
        if self.checkpoint_path.exists():
            return f"the last good checkpoint is kept at {self.checkpoint_path}"
        return "no checkpoint had been written yet"

    def _check_weights(self) -> None:
        """Stop before a checkpoint or a metrics line records weights or optimiser state that went NaN or infinite.

        A step's loss is computed before its update, so the update that breaks the
        weights shows in no loss until the next step; this check closes that gap. An
        optimiser's moments can overflow while loss and weights stay finite (Adam's
        squared gradients at a huge learning rate): resume refuses such a state, so it
        is never saved either. The weights are the whole state the checkpoint holds and its
        loader checks, buffers too: a BatchNorm's running variance can overflow while every
        parameter stays finite; complex and float8 tensors as well as the others, with the loader's check.
        """
        bad = next((name for name, t in self.model.state_dict().items()
                    if isinstance(t, torch.Tensor) and not all_finite(t)), None)  # not get_extra_state's values
        broken = [] if bad is None else [f"weights ({bad!r})"]
        broken += [f"optimiser state ({name!r})" for name, opt in self.optimizers.items()
                   if not all(all_finite(v) for entry in opt.state.values() for v in entry.values()
                              if isinstance(v, torch.Tensor))]
        if not broken:
            return
        pos = self.position
        where = (f"at the end of epoch {pos.epoch}" if pos.step == 0 and pos.epoch
                 else f"at epoch {pos.epoch + 1}, step {pos.step}")
        raise Diverged(f"training diverged: non-finite {' and '.join(broken)} {where}; {self._kept()}")

    def _describe(self, elapsed: float) -> str:
        """Running train losses and throughput for the progress bar."""
        pos = self.position
        parts = [f"{printable(k)} {pos.sums.get(k, 0.0) / max(pos.images, 1):.3f}" for k in self.model.loss_names]
        parts.append(f"{pos.images / max(elapsed, 1e-9):,.0f} img/s")
        return "  ".join(parts)

    def _summary(self, record: dict[str, Any]) -> str:
        """Every train and test loss of the finished epoch and its speed: its bar's last state, or its plain line."""
        parts = []
        for split in ("train", "test"):
            parts += [f"{split} {printable(key[len(split) + 1:])} {value:.3f}" for key, value in record.items()
                      if key.startswith(f"{split}_") and key not in TIMING]
        if record["train_images_per_s"]:
            parts.append(f"{record['train_images_per_s']:,.0f} img/s")
        return "  ".join(parts)

    def _finish_epoch(self, epoch: int) -> dict[str, Any]:
        pos = self.position
        last = epoch == self.config.epochs
        self._check_weights()
        self._refuse_unsaved_moves(self._reached())  # before the epoch's metric line, as its checkpoint would
        if last:
            who = f"{type(self.model).__name__}.after_training"
            distributed.share_random_state()  # what it draws is the same on every rank: one process's draws
            with blamed(who), model_call(who, "the trainer ran it after the last epoch"):
                self.model.after_training(CopiedSplit(self.train))
            if self._watch is not None:
                self._watch.rebase()
        self._share_buffers()  # each rank evaluates its part of the test split with the buffers the checkpoint keeps
        eval_started = time.perf_counter()
        test = test_losses(self.model, self.test, self.config.eval_batch_size, self.config.seed + epoch, shard=True,
                           names=self.test_names, epoch=epoch)
        self.test_names = [str(key) for key in test]
        self._keep_stop_handlers()
        # Never written: every reader of metrics.jsonl refuses a non-finite value as damage.
        broken = next(((key, value) for key, value in test.items() if not math.isfinite(value)), None)
        if broken is not None:
            raise Diverged(f"{type(self.model).__name__}.evaluate gave a non-finite test {broken[0]!r} "
                           f"({broken[1]}) at epoch {epoch}, so its metrics were not written; {self._kept()}")
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": pos.global_step,
            **{f"train_{k}": v / pos.images for k, v in pos.sums.items()},
            **{f"test_{k}": v for k, v in test.items()},
            "train_seconds": pos.seconds,
            "train_images_per_s": pos.images / pos.seconds if pos.seconds > 0 else None,
            "eval_seconds": time.perf_counter() - eval_started,
        }
        if not self.rank:
            check_in_place(self.run_dir)
            append_metrics(self.run_dir, {**record, **self._named()})
        self.position = Position(epoch=epoch, global_step=pos.global_step)
        self._epoch_start_state = self.shuffle.get_state()
        self.save()
        return record
