"""Carry out a training run, new or resumed: run folder, trainer, pictures."""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import platform
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

import genzoo
from genzoo import distributed, figures
from genzoo.building import (
    build_sampler,
    check_batch_size,
    check_data,
    check_plugins,
    check_state_complete,
    data_sha256,
    load_splits,
    plugin_versions,
    select_device,
)
from genzoo.checkpoint import FILENAME, check_matches, contents_sha256, load_checkpoint, unsaveable_state_line
from genzoo.checks import NotCodes, NotPixels, NotShaped, check_pixels, printable
from genzoo.compile_cache import private_compile_cache
from genzoo.data import Split
from genzoo.errors import PLUGIN_FAULTS, GenzooError, PluginFault, blamed, describe, warn
from genzoo.files import is_temporary, plain_path
from genzoo.logger import GENZOO_FILES, Logger
from genzoo.model import Model, parameter_count, refuse_unrebuilt_config
from genzoo.plugin_registry import registry
from genzoo.process_settings import working_directory
from genzoo.run_folder import (
    CONFIG,
    METRICS,
    RESUME_OTHERS,
    RunDescription,
    RunFilesPutBack,
    back_in,
    check_in_place,
    keep_metrics_through,
    locked,
    lost_metrics,
    new_run_dir,
    new_run_id,
    own_files_kept,
    read_metrics,
    read_run,
    write_config,
)
from genzoo.sampler import PutBack, Sampler, defaults_kept, drawn_by, model_images, sampler_problem, threads_noted
from genzoo.seeding import forked, seed_streams, seeded
from genzoo.train_config import TrainConfig
from genzoo.trainer import TIMING, Trainer, check_metrics_fit, configured_optimizers, probed_evaluate


@dataclass
class RunResult:
    run_dir: Path
    model: Model
    records: list[dict[str, Any]]


def _describe_run(config: TrainConfig, model: Model, device: torch.device, shape: tuple[int, ...],
                  data: dict[str, str], loggers: list[str]) -> dict[str, Any]:
    return {
        "loggers": loggers,
        "run_id": new_run_id(),
        "model": config.model,
        "plugins": plugin_versions(config.model, config.dataset, model),
        "model_config": model.config.to_dict(),
        "loss_names": list(model.loss_names),
        "train_config": config.to_dict(),
        "sample_shape": list(shape),
        "data_sha256": data,
        "device": str(device),
        "genzoo_version": genzoo.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "parameters": parameter_count(model),
    }


def start_run(
    config: TrainConfig,
    model_options: dict[str, Any] | None = None,
    out: str | Path | None = None,
    download: bool = True,
    console: Console | None = None,
    loggers: Sequence[str] = (),
    after_epoch: AfterEpoch | None = None,
) -> RunResult:
    """Train a new model as ``config`` says and leave a complete run folder behind.

    Every check that can fail on bad input (names, options, device, data, batch
    size, loggers) runs before the run folder is created, so a refused run writes
    nothing. ``loggers`` names registered loggers to stream the run to; ``after_epoch``
    is called by the main process after each epoch's checkpoint (the FID curve).
    """
    started_in = working_directory()  # where ``out`` is meant, whatever plugin code below does
    reg = registry()
    reg.entry("model", config.model)  # fail on an unknown name before touching data
    names = check_loggers(loggers)
    dataset_cls = reg.dataset(config.dataset)
    device = distributed.setup(select_device(config.device))
    _refuse_unlike_settings(config, model_options or {})
    seed_streams(config.seed)  # torch's, numpy's and Python's: a model may draw from any of them
    shape = tuple(dataset_cls.sample_shape)
    model = reg.build_model(config.model, shape, **(model_options or {}))
    model = model.to(device)
    train, test = load_splits(config, device, download)
    check_curve_reference(config, len(test))
    sampler_problem(model)  # a default sampler that is not registered: one line before any folder
    refuse_untrainable(config, model, train, test)
    if config.compile:
        private_compile_cache()
    data = data_sha256(train, test)
    back_in(started_in)
    # Rank 0 makes the folder; the others learn its name (their "" is replaced).
    run_dir = Path(distributed.broadcast(str(new_run_dir(config.model, out)) if distributed.is_main() else ""))
    with _locked_by_main(run_dir):
        description = _describe_run(config, model, device, shape, data, names)
        if distributed.is_main():
            write_config(run_dir, description)
        trainer = Trainer(model, train, test, config, run_dir, console, checkpoint_extra=_identity(description))
        drawer = default_sampler(model, config.model, train)
        with logging_to(names if distributed.is_main() else [], run_dir, model, 0, description, drawer,
                        config.epochs) as on_epoch:
            records = trainer.fit(_then(on_epoch, after_epoch, run_dir, model, config, train, test))
            if distributed.is_main():  # before the loggers close: one that fails then leaves the run whole
                # a new folder: these are all its records
                save_pictures(model, config.model, train, test, run_dir, records, drawer)
    return RunResult(run_dir, model, records)


#: Called after each epoch's checkpoint by the main process: (run folder, model, its name, train, test, config,
#: the epoch's metric line). A resume calls it once first with ``{"epoch": E, "resumed": True, "boundary": B}``,
#: E the checkpoint's finished epochs and B whether it is at an epoch's end, so the callback can drop what it
#: wrote after the checkpoint and catch up on an epoch a crash cut it off from; it must ignore an epoch it has.
AfterEpoch = Callable[[Path, Model, str, Split, Split, TrainConfig, dict[str, Any]], None]


def _then(on_epoch: Callable[[dict[str, Any]], None], after_epoch: AfterEpoch | None, run_dir: Path, model: Model,
          config: TrainConfig, train: Split, test: Split) -> Callable[[dict[str, Any]], None]:
    """``on_epoch``, then ``after_epoch`` on the main process (the others go on to the next epoch's collectives)."""
    if after_epoch is None or not distributed.is_main():
        return on_epoch

    def both(record: dict[str, Any]) -> None:
        on_epoch(record)
        after_epoch(run_dir, model, config.model, train, test, config, record)

    return both


def _locked_by_main(run_dir: Path) -> AbstractContextManager[None]:
    """The run folder's lock, taken by the process that writes it (rank 0 of a distributed run)."""
    return locked(run_dir) if distributed.is_main() else nullcontext()


def check_loggers(names: Sequence[str]) -> list[str]:
    """``names`` without repeats, each a registered logger that can work here (else one line)."""
    reg = registry()
    unique = list(dict.fromkeys(names))
    for name in unique:
        entry = reg.entry("logger", name)
        # Guarded: its library missing is a bare import's error; torch's default dtype changed, the model built next
        # would be float64 and its first step blamed.
        doing = "checking that it can work here"
        with blamed(entry.origin, doing), logger_call(entry.origin, doing):
            entry.obj.check()
    return unique


#: The end of the line of a logger that changed torch's defaults (:func:`genzoo.sampler.defaults_kept`).
_LOGGER_CONTRACT = "the Logger contract: a logger leaves torch's defaults and the process's settings alone"


@contextmanager
def logger_call(who: str, what: str) -> Iterator[None]:
    """A logger's code, ``who``, in the block, as a sampler's is guarded: it may draw from or seed torch's random
    streams, which are forked (:func:`genzoo.seeding.forked`), and torch's default dtype, device and grad mode it
    changes are put back, a :class:`genzoo.sampler.PutBack` line naming it. Either kind of change once moved a
    run's numbers after its checkpoint (a resumed run differed), or failed its next step blaming the model
    (eighteenth hostile pass, F1 and F2)."""
    with forked(), threads_noted(who), defaults_kept(who, what, _LOGGER_CONTRACT):
        yield


def default_sampler(model: Model, name: str, train: Split) -> Callable[[], Sampler | None]:
    """The model's default sampler for a run's loggers and pictures: built (and fitted to ``train``) once,
    when first asked for; None when it cannot draw from the model."""

    @functools.cache
    def built() -> Sampler | None:
        return build_sampler(model, name, None, lambda: train) if sampler_problem(model) is None else None

    return built


@contextmanager
def logging_to(names: list[str], run_dir: Path, model: Model, start_epoch: int,
               description: dict[str, Any] | None = None, sampler: Callable[[], Sampler | None] | None = None,
               last_epoch: int | None = None) -> Iterator[Callable[[dict[str, Any]], None]]:
    """The loggers ``names`` for this session, as the ``on_epoch`` callback of :meth:`Trainer.fit`.

    A new run's ``description`` goes to them first; each epoch they get its metric line
    and 64 samples drawn as ``samples.png`` is, with ``sampler`` (:func:`default_sampler`;
    none without it, or when it cannot draw from the model). One that fits to the training
    split (the AE's ``gmm``) draws at ``last_epoch`` only, when the weights are final: it is
    fitted once, then, and the finished run's ``samples.png`` uses the same fit. They are closed
    however the session ends. A logger that fails (its server is down, a bug) must not
    end hours of training: it warns once and logs no more; a ``GenzooError`` stops the run, its
    line saying what the run folder holds when that is not plain: a new run's ``config.json`` alone
    (a logger that cannot start), or a complete run (one that cannot close, after the block, which
    draws the pictures); one as the session ends with another error is a warning, and that error stands.
    Each call is a :func:`logger_call`: what a logger draws leaves the run's numbers alone, and
    one that changes torch's defaults has them put back, and is dropped as a failed one is.
    """
    loggers: dict[str, Logger] = {}

    def guarded(name: str, what: str, call: Callable[..., object], *args: Any) -> None:
        try:
            with own_files_kept(run_dir, f"logger {name!r}", what), logger_call(f"logger {name!r}", what):
                call(*args)
        except (PutBack, RunFilesPutBack) as exc:  # put back: the run goes on as if the call had not been
            loggers.pop(name, None)
            warn(f"{exc}, and it logs no more of this session")
        except (GenzooError, KeyboardInterrupt):
            raise
        except PLUGIN_FAULTS as exc:
            loggers.pop(name, None)
            warn(f"logger {name!r} failed and logs no more of this session: {describe(exc)}")

    def start(name: str) -> None:
        loggers[name] = registry().logger(name)(run_dir, start_epoch)

    completed = False
    try:
        # Rank 0's loggers alone: one that cannot start stops every rank (the others met its closed connection).
        with distributed.together():
            _started(names, guarded, start, loggers, description, run_dir)

        fits = registry().sampler(model.default_sampler).needs_fit

        def on_epoch(record: dict[str, Any]) -> None:
            samples = None
            try:
                drawer = sampler() if loggers and sampler is not None and (
                    not fits or record["epoch"] == last_epoch) else None
            except GenzooError:
                drawer = None  # a sampler that cannot fit: no grid; save_pictures warns why
            if drawer is not None:
                model.eval()
                try:
                    with seeded(model.device, figures.PICTURE_SEED), torch.no_grad():
                        samples = drawer.sample(64)
                except GenzooError:
                    pass  # not able to sample yet: this epoch's loggers get no grid
                model.train()
            for name, logger in list(loggers.items()):
                # copies: a logger that rounds or pops what it is given changed the run's own summary and loss.png
                guarded(name, f"logging epoch {record['epoch']}", logger.log_epoch, copy.deepcopy(record),
                        None if samples is None else samples.clone())

        yield on_epoch
        completed = True
    finally:
        _close(loggers, guarded, run_dir, completed)


def _started(names: list[str], guarded: Callable[..., None], start: Callable[[str], None], loggers: dict[str, Logger],
             description: dict[str, Any] | None, run_dir: Path) -> None:
    """Start each logger of ``names`` (with :func:`logging_to`'s ``guarded``), and give a new run's ``description``
    to each. A ``GenzooError`` stopping a new run says that its folder holds ``config.json`` alone: it once left
    that folder without a word, and ``resume`` then said there was no checkpoint (eighteenth hostile pass, M8)."""
    try:
        for name in names:
            guarded(name, "starting", start, name)
        if description is not None:
            for name, logger in list(loggers.items()):
                guarded(name, "logging the hyperparameters", logger.log_hyperparameters,
                        copy.deepcopy(description))  # its edits stay its own
    except GenzooError as exc:
        if description is None:  # a resumed run: its checkpoint is as it was
            raise
        raise GenzooError(f"{exc}; the run stopped before its first step, so {run_dir} (its config.json alone) "
                          "cannot be resumed: once the logger can work, train again into another folder") from exc


def _close(loggers: dict[str, Logger], guarded: Callable[..., None], run_dir: Path, completed: bool) -> None:
    """Close each of ``loggers`` (with :func:`logging_to`'s ``guarded``). The first ``GenzooError`` of a session
    that ``completed`` stops it, saying the training is complete: it once kept the pictures from being drawn, and
    nothing said the run was finished (eighteenth hostile pass, M9). One of a session ending with another error is
    a warning: that error (a divergence, a stop signal and its ``resume``) is what the user must read."""
    failed: GenzooError | None = None
    for name, logger in list(loggers.items()):
        try:
            guarded(name, "closing", logger.close)
        except GenzooError as exc:
            if not completed:
                warn(str(exc))
            elif failed is None:
                failed = exc
    if failed is not None:
        raise GenzooError(f"{failed}; the training itself is complete: {run_dir} holds its checkpoint, metrics and "
                          "pictures") from failed


def _identity(description: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint records about itself, to refuse a mismatched resume or load: the data it was trained on
    too, since runs of the same settings on other data differ, and the run's ``run_id``, since two runs of the same
    settings and data differ too (each None for a run from before it was recorded)."""
    keys = ("model", "model_config", "train_config", "sample_shape")
    return {**{key: description[key] for key in keys},
            **{key: description.get(key) for key in ("data_sha256", "run_id")}}


def _train_config(run: RunDescription, **overrides: Any) -> TrainConfig:
    """The run's ``TrainConfig`` from its checked ``config.json``, with this session's overrides."""
    return dataclasses.replace(run.train_config, **{k: v for k, v in overrides.items() if v is not None})


def _refuse_links(run_dir: Path) -> None:
    """Refuse a run folder whose files are symbolic links: writing them would reach outside it."""
    for name in (CONFIG, METRICS, FILENAME):
        if (run_dir / name).is_symlink():
            raise GenzooError(
                f"{run_dir / name} is a symbolic link; genzoo only writes regular files "
                "inside a run folder"
            )


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the half-written temporary files a killed run left (``.NAME.*.tmp``).

    Only names that :func:`genzoo.files.atomic_write` makes for the files a run writes (a user's own
    ``.notes.20261202.tmp`` was deleted too: twenty-sixth hostile pass, files M5), and only in this run
    folder, which the caller has locked: nothing else can be writing them.
    """
    for path in run_dir.glob(".*.tmp"):
        if is_temporary(path.name) and path.name[1:].rsplit(".", 2)[0] in GENZOO_FILES and path.is_file() \
                and not path.is_symlink():
            path.unlink()


def resume_run(
    run_dir: str | Path,
    download: bool = True,
    console: Console | None = None,
    device: str | None = None,
    data_root: str | None = None,
    after_epoch: AfterEpoch | None = None,
) -> RunResult:
    """Continue the run in ``run_dir`` from its last checkpoint (``after_epoch`` as for :func:`start_run`).

    Model, optimisers, position in the epoch and RNG states come back from the
    checkpoint and metric lines written after it are dropped (that work is redone), so
    on CPU the finished run equals one never interrupted. ``device`` and ``data_root``
    override where this session trains and reads data, nothing else.
    """
    run_dir = Path(run_dir)
    run, state, names = read_resumable(run_dir)
    source = run_dir / FILENAME
    config = _train_config(run, device=device, data_root=data_root)
    reg = registry()
    dataset_cls = reg.dataset(config.dataset)
    device_ = distributed.setup(select_device(config.device))
    model = reg.build_model(config.model, tuple(dataset_cls.sample_shape), **run.model_config)
    model.refuse_shared_losses()  # a loss every model shares: no run of it can be resumed faithfully
    _refuse_other_objective(model, run, run_dir / CONFIG)
    sampler_problem(model)  # a default sampler that is not registered: one line before any file is touched
    model = model.to(device_)
    train, test = load_splits(config, device_, download)
    check_data(run, train, test, run_dir)
    if config.compile:
        private_compile_cache()
    with _locked_by_main(run_dir):
        trainer = Trainer(model, train, test, config, run_dir, console, checkpoint_extra=_identity(run.raw))
        # Every check comes before the first file is touched: the checkpoint's fields...
        trainer.restore(state, source)
        done = trainer.position.epoch
        # ... and the metric lines, which must be this run's.
        records = read_metrics(run_dir, run.run_id, refuse_others=RESUME_OTHERS)
        for record in records:
            if record["epoch"] <= done and record["step"] != record["epoch"] * trainer.steps_per_epoch:
                raise GenzooError(
                    f"{run_dir / METRICS} ends epoch {record['epoch']} at step {record['step']}, but an epoch of "
                    f"this run has {trainer.steps_per_epoch} steps: the file is not this run's"
                )
        for record in records:
            if record["epoch"] != done:
                continue
            # every test pass to come returns what the last one returned
            trainer.test_names = [key[len("test_"):] for key in record if key.startswith("test_")]
            if trainer.position.step:
                _check_sums_of(record, trainer.position.sums, source)
            else:  # at an epoch's end, the steps to come return what its steps returned
                trainer.step_names = _step_names(record)
        lost = lost_metrics(run_dir, records, done)
        if distributed.is_main():
            if lost:
                warn(lost)
            _remove_stale_temporaries(run_dir)
            keep_metrics_through(run_dir, done, run.run_id)
        drawer = default_sampler(model, config.model, train)
        if after_epoch is not None and distributed.is_main():
            after_epoch(run_dir, model, config.model, train, test, config,
                        {"epoch": done, "resumed": True, "boundary": trainer.position.step == 0})
        with logging_to(names if distributed.is_main() else [], run_dir, model, done, None, drawer,
                        config.epochs) as on_epoch:
            records = trainer.fit(_then(on_epoch, after_epoch, run_dir, model, config, train, test))
            # A run that was complete keeps its pictures: redrawing them failed in a finished run the user may
            # read but not write (twenty-fifth hostile pass, files M1); one that lost a picture gets them again.
            drawn = not records and all((run_dir / picture).is_file() for picture in picture_names(type(model)))
            if distributed.is_main() and not drawn:  # before the loggers close: one that fails leaves the run whole
                save_pictures(model, config.model, train, test, run_dir, read_metrics(run_dir, run.run_id), drawer)
    return RunResult(run_dir, model, records)


def _refuse_other_objective(model: Model, run: RunDescription, path: Path) -> None:
    """Refuse to resume a run whose model now names its losses in another order than when it started: the first is
    the objective the trainer minimises. ``loss_names`` built from a set (whose order Python draws anew in each
    process) had the resumed part of a run minimise another objective than the part before it, exit 0, no word
    (twenty-sixth hostile pass, plugins F13)."""
    if run.loss_names is not None and tuple(model.loss_names) != run.loss_names:
        cls = type(model).__name__
        raise PluginFault(f"{cls}.loss_names is {tuple(model.loss_names)} now, but {run.loss_names} when the run "
                          f"started ({path}): the first is the objective the trainer minimises, so the rest of the "
                          f"run would minimise another; {cls}.loss_names must keep one order (a tuple, not one "
                          "built from a set)")


def read_resumable(run_dir: Path) -> tuple[RunDescription, dict[str, Any], list[str]]:
    """The run, its checkpoint and its loggers, each checked: what a resume reads before it touches anything.

    ``genzoo resume --nproc`` calls it in the launching process too, so a run that
    cannot be resumed is one line, not one per rank. Metric lines of another run are refused here too.
    """
    run = read_run(run_dir)
    _refuse_links(run_dir)
    check_plugins(run, run_dir)
    source = run_dir / FILENAME
    state = load_checkpoint(source)
    check_matches(state, run.model, run.model_config, source, train_config=run.train_config.to_dict(),
                  sample_shape=list(run.sample_shape), data_sha256=run.data_sha256, run_id=run.run_id)
    read_metrics(run_dir, run.run_id, refuse_others=RESUME_OTHERS)
    return run, state, check_loggers(run.loggers)


def refuse_untrainable(config: TrainConfig, model: Model, train: Split, test: Split,
                       processes: int | None = None) -> None:
    """Every model mistake that shows without training, refused in one line before a run folder is made.

    A new run, ``--nproc``'s launcher and a compare's plan call it: each such mistake
    otherwise showed in the first step or epoch, and left a folder holding ``config.json``
    alone. In order: the config as every load rebuilds it from config.json, the batch size, the
    optimisers, one ``evaluate``, the size its metric lines could reach, then state the
    ``state_dict`` does not hold.
    """
    refuse_unrebuilt_config(model)
    model.refuse_shared_losses()
    check_batch_size(config, len(train), model, processes)
    configured_optimizers(model)
    probed = probed_evaluate(model, test, config.seed)
    check_metrics_fit(config, model, probed)
    check_state_complete(model, train)
    line = unsaveable_state_line(model, "", "no checkpoint of the run could be loaded (resume, eval, sample and "
                                 "export would refuse it)")
    if line is not None:
        raise GenzooError(line)
    # Each rank's checks above are its own; then the ranks agree (its state_dict is known to work by now)
    _refuse_unlike_processes(model, "built", lambda: {name: f"{tuple(value.shape)} {value.dtype}" for name, value
                                                      in model.state_dict().items() if isinstance(value, torch.Tensor)})
    _refuse_unlike_processes(model, "evaluated", lambda: probed)


def _refuse_unlike_processes(model: Model, how: str, found: Callable[[], dict[str, Any]]) -> None:
    """Refuse, on every rank of a launch and before the run folder, a model ``how`` (built, evaluated) otherwise than
    on rank 0: ``found()`` is what this rank found by name (its weights' shapes and dtypes, the values ``evaluate``
    gave for one test image, the same weights and stream on every rank).

    A model whose config read the rank ended in two 40-line tracebacks from DDP and gloo, its run folder left
    (twenty-fourth hostile pass, plugins F7); one whose ``evaluate`` read it had its test metrics reported as a mix
    of two models', exit 0 (F4). Values are compared as numbers (NaN alike), to a millionth: a GPU's kernels may
    differ in the last bits. A no-op in one process.
    """
    def alike(a: Any, b: Any) -> bool:
        if isinstance(a, float) and isinstance(b, float):
            return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        return bool(a == b)

    world = distributed.world()[1]
    if world == 1:
        return
    found_by = distributed.gather(found())
    for other, theirs in enumerate(found_by):
        differ = sorted(name for name in {*theirs, *found_by[0]}
                        if name not in theirs or name not in found_by[0] or not alike(theirs[name], found_by[0][name]))
        if differ:
            shown_names = ", ".join(f"{printable(name)} {_value(theirs.get(name))} vs {_value(found_by[0].get(name))}"
                                    for name in differ[:3])
            raise PluginFault(f"process {other} of {world} {how} {type(model).__name__} otherwise than process 0 "
                              f"({shown_names}{f' and {len(differ) - 3} more' if len(differ) > 3 else ''}): a "
                              "model must be built and compute alike in every process (does it read the process's "
                              "rank, or draw with a stream of its own?)")


def _value(value: Any) -> str:
    """A value :func:`_refuse_unlike_processes` found, as its line shows it: 'none' for none, a number short."""
    return "none" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def check_curve_reference(config: TrainConfig, test_images: int) -> None:
    """One line before any work when an FID curve is asked for and the test split cannot be its reference, as
    eval and compare refuse such an FID (each epoch's curve entry would otherwise be n/a, with a warning)."""
    if config.fid_curve and test_images < 2:
        raise GenzooError(f"the FID curve needs at least 2 test images as its reference, and the test split has "
                          f"{test_images}: raise --test-limit, or give --fid-curve 0 for no curve")


#: The settings a process of a launch may hold of its own: where its machine keeps the data, which device it uses.
_OWN_SETTINGS = ("data_root", "device")


def _refuse_unlike_settings(config: TrainConfig, model_options: dict[str, Any]) -> None:
    """Refuse, on every process of a launch at once, settings that differ from process 0's.

    A torchrun launch whose ranks were given other ``--epochs`` (a job script building each rank's command line)
    hung before its first epoch with no word, deaf to SIGTERM; another ``--lr`` was blamed on the model, another
    ``--train-limit`` on the data (twenty-fifth hostile pass, files F2).
    """
    given = {**{name: value for name, value in dataclasses.asdict(config).items() if name not in _OWN_SETTINGS},
             **model_options}  # (a model's option never shares a name with genzoo's: options.config_clash)
    settings = {f"--{name.replace('_', '-')}": value for name, value in given.items()}
    found = distributed.disagreement({name: contents_sha256({"": value}) for name, value in settings.items()})
    if found is not None:
        rank, names = found
        raise GenzooError(f"process {rank} of {distributed.world()[1]} was given other settings than process 0 "
                          f"({', '.join(names)}): every process of a launch runs the same command (only --data-root "
                          "and --device may differ)")


@contextmanager
def run_folder_for_launch(config: TrainConfig, model_options: dict[str, Any], out: str | None, download: bool,
                          loggers: Sequence[str], processes: int) -> Iterator[Path]:
    """The run folder that ``genzoo train --nproc`` launches its ranks into, after the checks that need no rank.

    The launching process checks the loggers, the folder, the data (downloading what
    is missing, once, before any rank starts) and that each batch gives each of the
    ``processes`` ranks enough images, so bad input is one line. It makes the
    folder, so its name is known to say how to resume; one the ranks left empty (they
    failed first) is removed again, unless it was there before.
    """
    check_loggers(loggers)
    select_device(config.device)  # each rank would refuse it in its own line, after the folder was made
    model = registry().build_model(config.model, tuple(registry().dataset(config.dataset).sample_shape),
                                   **model_options)
    train, test = load_splits(config, torch.device("cpu"), download)
    check_curve_reference(config, len(test))
    refuse_untrainable(config, model, train, test, processes)
    if config.compile:
        private_compile_cache()  # the ranks inherit the folder it names
    wanted = plain_path(out) if out is not None else None  # the folder new_run_dir makes, which may be there before
    existed = wanted is not None and wanted.exists()
    run_dir = new_run_dir(config.model, wanted)
    try:
        yield run_dir
    finally:
        if not existed and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()


def _step_names(record: dict[str, Any]) -> list[str]:
    """The names a metric line's steps returned (its ``train_*`` but the timings)."""
    return [key[len("train_"):] for key in record if key.startswith("train_") and key not in TIMING]


def _check_sums_of(record: dict[str, Any], sums: dict[str, float], source: Path) -> None:
    """Mid-epoch sums must be of the names the last epoch's metric line reports (``train_*``)."""
    names = set(_step_names(record))
    if set(sums) != names:
        raise GenzooError(f"{source} holds epoch sums of {sorted(sums)}, but epoch {record['epoch']} of this run "
                          f"reported {sorted(names)}; it is damaged or not from this run")


def picture_names(model: type[Model]) -> list[str]:
    """The pictures :func:`save_pictures` draws for a finished run of ``model`` (so a missing one is noticed)."""
    return [*(["samples.png"] if sampler_problem(model) is None else []),
            *(["reconstructions.png"] if model.can_reconstruct else []), "loss.png"]


def _draw(run_dir: Path, picture: str, draw: Callable[[], None]) -> None:
    """Draw one picture of a trained, saved run: one matplotlib cannot draw costs that picture alone.

    Each is checked in place (:func:`check_in_place`) before it is drawn: a folder moved away since the last
    checkpoint, or between two pictures (twentieth hostile pass, files F3), gets no picture at its old path.
    """
    check_in_place(run_dir)
    try:
        draw()
    except figures.PictureFailed as exc:
        warn(f"{exc}; no {picture} is drawn")


def save_pictures(model: Model, name: str, train: Split, test: Split, run_dir: Path,
                  records: list[dict[str, Any]], drawer: Callable[[], Sampler | None] | None = None) -> None:
    """``samples.png``, ``reconstructions.png`` and ``loss.png``, as the model allows, titled with its ``name``.

    The samples are drawn with ``drawer`` (default: :func:`default_sampler`, fitted to ``train`` if it must be).
    """
    model.eval()
    try:  # the run is trained and saved: a sampler that cannot fit or draw costs only its picture
        sampler = (drawer or default_sampler(model, name, train))()
    except GenzooError as exc:
        warn(f"{exc}; no samples.png is drawn")
        sampler = None
    with seeded(model.device, figures.PICTURE_SEED), torch.no_grad():
        if sampler is not None:
            try:
                samples = check_pixels(sampler.sample(64), name, drawn_by(sampler))
            except GenzooError as exc:  # NotPixels too: the picture would be false
                warn(f"{exc}; no samples.png is drawn")
            else:
                _draw(run_dir, "samples.png", lambda: figures.save_samples(samples, run_dir / "samples.png",
                                                                           f"{name}: 64 samples"))
        if model.can_reconstruct:
            x = next(iter(test.batches(32)))
            try:  # float8 or complex ones: a picture of them would fail here, and in every resume
                # A copy: a model that edits its input in place must not change the test images drawn beside.
                with blamed(f"{type(model).__name__}.reconstruct"):
                    reconstructed = model.reconstruct(x.clone())
                reconstructions = model_images(reconstructed, name, "reconstruct", "reconstructions")
                if reconstructions.shape != x.shape:  # flat rows: matplotlib's stack failed, and was blamed
                    raise NotShaped(name, f"shape {tuple(reconstructions.shape)} for images of shape "
                                          f"{tuple(x.shape)}", "reconstruct", "reconstructions")
            except (NotPixels, NotCodes, PluginFault) as exc:  # NotCodes: its encode's codes of another shape
                warn(f"{exc}; no reconstructions.png is drawn")
            else:
                _draw(run_dir, "reconstructions.png", lambda: figures.save_reconstructions(
                    x, reconstructions, run_dir / "reconstructions.png",
                    f"{name}: test images (left) and reconstructions (right)",
                ))
    if records:
        _draw(run_dir, "loss.png", lambda: figures.save_loss_curves(
            records, model.loss_names, run_dir / "loss.png", f"{name} losses per epoch"))
