"""``genzoo compare``: train (or reuse) several models on one budget, evaluate them alike.

Every model is trained with the same epochs, batch size, latent size, seed and data
subset through :func:`genzoo.training.start_run`, then evaluated on one and the same test
split. The output folder receives ``results.json`` (every number, with its
conditions), ``report.md``, ``compare.png`` and ``latent.png`` (the test codes of the
models that encode); trained runs live in its ``runs/``.

``compare.json``, written into the output folder before anything trains, holds the
compare's settings, so a compare stopped part-way continues with
``genzoo compare --resume OUT`` (:func:`resume_compare`): finished runs are kept as
they are, an interrupted one resumes from its checkpoint, missing ones train.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import re
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from rich.console import Console
from rich.text import Text

from genzoo import distributed, figures
from genzoo.building import (
    build_sampler,
    check_data,
    data_sha256,
    load_model,
    load_split,
    model_config,
    run_training_split,
    select_device,
    trained_on,
    unfitted_sampler,
)
from genzoo.checkpoint import FILENAME, Position, load_checkpoint
from genzoo.checks import NotCodes, is_count, is_number, printable, same_value, shown
from genzoo.compile_cache import private_compile_cache
from genzoo.data import Split
from genzoo.errors import GenzooError, warn
from genzoo.evaluation import mnist_classifier
from genzoo.evaluation.fid_curve import CURVE_FEATURES, STILL_FALLING, is_entry, measure_epoch, read_curve, settle
from genzoo.evaluation.latent_space import project, split_labels, test_codes
from genzoo.evaluation.phases import Phases, make_progress
from genzoo.evaluation.protocols import PROTOCOLS, protocol_problem
from genzoo.evaluation.report import compare_figure, markdown_table, notes, phase_table, rich_table, table_console
from genzoo.evaluation.run_evaluation import (
    EVAL_FILE,
    EvalConfig,
    check_fid_reference,
    earlier_evaluation,
    environment,
    evaluate_model,
    evaluation_problem,
    finished_records,
    load_test_split,
    merge_earlier,
    model_weights_sha256,
    note_lost_metrics,
    prepare_reference,
    run_identity,
    same_run,
)
from genzoo.files import atomic_write_json, atomic_write_text, plain_path, read_json
from genzoo.model import Model
from genzoo.plugin_registry import registry
from genzoo.precision import warned_once
from genzoo.process_settings import working_directory
from genzoo.run_folder import (
    CONFIG,
    RESUME_OTHERS,
    back_in,
    check_in_place,
    is_sha256,
    locked,
    metric_lines,
    new_run_dir,
    parse_train_config,
    read_config,
    read_run,
    run_labels,
)
from genzoo.sampler import Sampler, fit_attributes, origin, sampler_problem
from genzoo.sampler_cache import fit_key
from genzoo.train_config import ADDED_LATER, TrainConfig
from genzoo.trainer import Interrupted
from genzoo.training import check_curve_reference, picture_names, refuse_untrainable, resume_run, start_run

#: The compare's settings, command and training wall time so far, for ``--resume``.
COMPARE_FILE = "compare.json"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
FIGURE_FILE = "compare.png"
#: Each encoding model's test codes in 2-D, as ``genzoo latent`` draws them; none when no model encodes.
LATENT_FILE = "latent.png"
#: Each model's FID after every epoch (its run's ``fid_curve.jsonl``); none when no run measured one.
CURVE_FIGURE = "fid_curve.png"


#: The model name in a compare's shared ``TrainConfig``: each model trained gets it with its own name.
EACH_MODEL = "*"


@dataclass
class CompareConfig:
    """One shared budget (a ``TrainConfig``) for every model trained, and the evaluation settings."""

    models: list[str] = field(default_factory=list)
    training: TrainConfig = field(default_factory=lambda: TrainConfig(model=EACH_MODEL))
    #: The latent size of every model trained (None: each model's default).
    latent: int | None = 40
    from_runs: list[str] = field(default_factory=list)
    #: A trained model's own config options, by model name (``--set beta-vae.beta=2``).
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: str | None = None
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    #: Processes each model trains on (``--nproc``): a setting of this session, as a resume's device, not saved.
    processes: int = 1
    #: The sha256 of the budget's train and test pixels when the compare started (:func:`~genzoo.building.data_sha256`),
    #: which ``--resume`` holds the data found then to; None for a compare that trains nothing, or from before.
    data_sha256: dict[str, str] | None = None

    def __post_init__(self) -> None:
        problem = protocol_problem(self.evaluation.protocol, self.evaluation.to_dict(), self.training.test_limit)
        if problem is not None:
            raise GenzooError(problem)

    def options_for(self, model: str) -> dict[str, Any]:
        """The config options ``model`` is trained with: the shared latent size, then its ``--set``s."""
        latent = {"latent": self.latent} if self.latent is not None else {}
        return {**latent, **self.model_options.get(model, {})}

    def train_config(self, model: str) -> TrainConfig:
        """The shared budget, for ``model``."""
        return dataclasses.replace(self.training, model=model)


@dataclass
class Entry:
    """One column of the comparison: a label, its model name and the run that holds it."""

    label: str
    model: str
    run_dir: Path | None = None  # None until trained
    reused: bool = False
    training_seconds: float | None = None


def plan(config: CompareConfig) -> list[Entry]:
    """Which models to train and which runs to reuse; fail before any work on a bad request."""

    reg = registry()
    shape = tuple(reg.dataset(config.training.dataset).sample_shape)
    # Builds every model now, with its options, so a model or a --set that fails
    # does so before any model trains.
    built = {name: reg.build_model(name, shape, **config.options_for(name)) for name in config.models}
    if len(set(config.models)) != len(config.models):
        raise GenzooError("each model may be named once; to compare two runs of one model, pass both with --from-runs")
    budget = config.training
    if built:
        # A split some model cannot finish on (say, a batch of one for a model that
        # needs two) is refused now, not after the models before it have trained.
        train = load_split(budget.dataset, "train", budget.data_root, budget.train_limit, torch.device("cpu"))
        probe = load_split(budget.dataset, "test", budget.data_root, 1, torch.device("cpu"))
        for name, model in built.items():
            refuse_untrainable(config.train_config(name), model, train, probe, config.processes)
        if budget.compile:
            private_compile_cache()  # a cache another user could plant code in: refused before compare.json
    # The test split read only when an FID needs it as its reference: the evaluation's, or a trained model's curve.
    if config.evaluation.fid_samples or (built and budget.fid_curve):
        test = load_split(budget.dataset, "test", budget.data_root, budget.test_limit, torch.device("cpu"))
        check_fid_reference(config.evaluation, len(test))
        if built:
            check_curve_reference(budget, len(test))
    reused: list[Entry] = []
    for run in config.from_runs:
        description, _ = finished_records(Path(run))
        dataset = description.get("train_config", {}).get("dataset", "mnist")
        if dataset != config.training.dataset:
            raise GenzooError(f"run {run} was trained on {dataset!r}, not on {config.training.dataset!r}")
        reused.append(Entry(description["model"], description["model"], Path(run), reused=True))
    if built and reused:
        _warn_on_other_data(budget, reused)
    counts = {e.model: sum(1 for o in reused if o.model == e.model) for e in reused}
    _label_reused(reused, counts)
    entries = [Entry(name, name) for name in config.models if name not in counts]
    entries += reused
    if not entries:
        raise GenzooError("nothing to compare: name models (genzoo compare MODEL...) or pass --from-runs")
    _check_samplers(config, entries, built)
    return entries


def _warn_on_other_data(budget: TrainConfig, reused: list[Entry]) -> None:
    """Say which reused runs were trained on other data than the models trained here (the data found now).

    Their budgets may differ too (:func:`_warn_on_budget_mismatch`), so each is checked on
    its own number of the first training images. A warning, as for other budgets: the
    runs were named to be compared, and the table puts them side by side.
    """
    whole = load_split(budget.dataset, "train", budget.data_root, None, torch.device("cpu"))
    for entry in reused:
        assert entry.run_dir is not None
        if not trained_on(read_run(entry.run_dir), whole):
            warn(f"run {printable(str(entry.run_dir))} (--from-runs) was trained on other data than the models "
                 f"trained here (sha256 recorded in its {CONFIG} vs the training data found now); the table puts "
                 "it beside them")


def _check_samplers(config: CompareConfig, entries: list[Entry], built: dict[str, Model]) -> None:
    """Find a fault in a sampler plugin's ``unsupported``, ``needs_fit`` or config before any model trains.

    Each would otherwise fail the compare after all its training, and again on every ``--resume``.
    The samplers asked for and each model's default (``compare.png``'s) are built for the untrained
    models built above (reused runs' model classes answer ``unsupported`` alone), not fitted.
    """
    reg = registry()
    for entry in entries:
        model: Model | type[Model] = built[entry.model] if entry.model in built else reg.model(entry.model)
        for chosen in dict.fromkeys([*(config.evaluation.samplers or []), model.default_sampler]):
            if sampler_problem(model, chosen) is not None:
                continue
            if isinstance(model, Model):
                sampler = unfitted_sampler(model, entry.label, chosen)
                if sampler.fit_version is not None:
                    fit_key(chosen, sampler, "")
            else:
                who = reg.entry("sampler", chosen)
                fit_attributes(who.obj, origin(chosen, who.plugin, who.distribution))


def _label_reused(reused: list[Entry], counts: dict[str, int]) -> None:
    """Labels for reused runs, one per run: the results and the figure are keyed by label.

    A model reused once is its name; two runs of one model are told apart by :func:`run_labels`
    (their folder's name, then its parent's, ``a/run`` and ``b/run``, then a number for the same
    folder passed twice).
    """
    runs = []
    for e in reused:
        assert e.run_dir is not None  # a reused run's folder is known from the start
        runs.append((e.model, e.run_dir))
    for e, label in zip(reused, run_labels(runs)):
        if counts[e.model] > 1:
            e.label = label


def compare(config: CompareConfig, console: Console | None = None, command: str | None = None) -> dict[str, Any]:
    """Train or reuse every entry, evaluate all on one test split, write the three outputs."""

    console = console or Console(stderr=True)
    started_in = working_directory()  # where --out is meant, whatever the models' code in the plan does
    entries = plan(config)
    device = select_device(config.training.device)
    features = config.evaluation.check(device)
    if config.out is not None:  # OLD/new/.. is OLD: a compare stopped in it is one to continue, not to overwrite
        config.out = str(plain_path(config.out))
    if config.out is not None and (Path(config.out) / COMPARE_FILE).exists() \
            and not (Path(config.out) / RESULTS_FILE).exists():
        raise GenzooError(f"{config.out} holds a compare that was stopped part-way; continue it with: "
                          f"genzoo compare --resume {config.out}")
    if config.models:  # what --resume holds the data it finds to, even with none of the runs there
        config.data_sha256 = data_sha256(*_budget_data(config.training))
    back_in(started_in)
    out = new_run_dir("compare", config.out)
    config.out = str(out)
    _save_progress(out, command, config, {})
    return _carry_out(config, entries, out, device, features, console, command, {})


def resume_compare(out: str | Path, console: Console | None = None, device: str | None = None,
                   data_root: str | None = None, processes: int = 1) -> dict[str, Any] | None:
    """Continue the compare in ``out`` with its saved settings; ``None`` if it was already complete.

    Finished runs under ``out/runs`` are kept untouched, an interrupted one resumes from
    its checkpoint, missing ones train; then every model is evaluated. ``device`` and
    ``data_root`` change where this session trains and reads data, and ``processes`` on how
    many processes, as for ``genzoo resume``.
    """

    console = console or Console(stderr=True)
    out = Path(out)
    config, command, seconds = read_saved_compare(out)
    config.processes = processes
    config.training = dataclasses.replace(config.training, device=device or config.training.device,
                                          data_root=data_root or config.training.data_root)
    if (out / RESULTS_FILE).exists():  # written last: the compare is complete
        gone = [model for model in config.models if not os.path.lexists(out / "runs" / model)]
        if gone:  # its results name runs that are no longer there: "complete" would be a stale answer
            runs = ", ".join(printable(str(out / "runs" / model)) for model in gone)
            raise GenzooError(f"the compare in {printable(str(out))} is complete, but its run(s) {runs} are gone, "
                              f"which its results and report still name; move {RESULTS_FILE} away and run genzoo "
                              f"compare --resume {printable(str(out))} to train them again and evaluate everything")
        for model in config.models:  # there, and still the finished runs they name, by eval's own reader
            run_dir = out / "runs" / model
            try:
                finished_records(run_dir)
            except GenzooError as exc:
                raise GenzooError(f"the compare in {printable(str(out))} is complete, but its run "
                                  f"{printable(str(run_dir))} is no finished run any more ({exc}), which its "
                                  f"results and report still name; move {RESULTS_FILE} and that run away and run "
                                  f"genzoo compare --resume {printable(str(out))} to train it again and evaluate "
                                  "everything") from None
        with locked(out), _move_explained(out):  # written where the compare is, not into a folder put in its place
            rewritten = _write_missing_outputs(out, config)
        if rewritten:
            console.print(f"wrote {', '.join(printable(str(p)) for p in rewritten)} again from "
                          f"{printable(str(out / RESULTS_FILE))}", soft_wrap=True,
                          markup=False, emoji=False)
        else:
            console.print(f"the compare in {out} is already complete; nothing to do", soft_wrap=True,
                          markup=False, emoji=False)
        return None
    _check_runs_match(config, out)
    entries = plan(config)
    target = select_device(config.training.device)
    features = config.evaluation.check(target)
    return _carry_out(config, entries, out, target, features, console, command, seconds)


def _check_runs_match(config: CompareConfig, out: Path) -> None:
    """Refuse saved settings, or data found now, that a run under ``out/runs`` was not trained with.

    ``compare.json`` is a file anyone can edit: a budget changed there (epochs 2 -> 9)
    would otherwise be reported for runs trained on another one. The data are checked
    as ``genzoo resume`` checks them (:func:`~genzoo.building.check_data`), before any
    model trains: a missing model trained on other data than the kept runs' was ranked
    beside them as one budget (eighteenth hostile pass, F4).
    """
    splits: list[Split] = []  # the budget's train and test data found now, loaded for the first run kept
    for model in config.models:
        run_dir = out / "runs" / model
        if not (run_dir / CONFIG).is_file():
            continue
        run = read_config(run_dir)
        train = config.train_config(model)
        expected: list[tuple[str, Any, Any]] = [("model", model, run.get("model"))]
        expected += [(key, getattr(train, key), run["train_config"].get(key, ADDED_LATER.get(key)))
                     for key in ("dataset", "epochs", "batch_size", "seed", "train_limit", "test_limit", "fused",
                                 "compile", "fp32_precision")]  # how it trains too: results.json records them
        # Every field of the model's config, defaults included: ``latent: null`` or an option
        # deleted from the file would otherwise build another model than the run holds.
        built = registry().model(model).Config.from_dict(config.options_for(model)).to_dict()
        expected += [(key, built.get(key), run["model_config"].get(key))
                     for key in sorted({*built, *run["model_config"]})]
        for key, wanted, found in expected:
            if not same_value(wanted, found):  # a NaN option (clip_norm=nan) is the same NaN in both
                raise GenzooError(f"{out / COMPARE_FILE} does not match the run {run_dir}: {key} {wanted} in the "
                                  f"compare, {found} in the run; the compare file was edited or the run replaced")
        kept = read_run(run_dir)
        if kept.data_sha256 is not None:
            splits = splits or list(_budget_data(config.training))
            check_data(kept, splits[0], splits[1], run_dir)
    # The compare's own record, after its runs' (each names the run): it holds though every run was moved away.
    if config.data_sha256 is not None and config.models:
        splits = splits or list(_budget_data(config.training))
        found = data_sha256(*splits)
        differ = [split for split in ("train", "test") if found[split] != config.data_sha256[split]]
        if differ:
            raise GenzooError(f"the {' and '.join(differ)} data found now differ from those the compare in "
                              f"{printable(str(out))} started on (sha256 recorded in its {COMPARE_FILE}); point "
                              "--data-root (or GENZOO_DATA) at the data it was started on")


def _budget_data(budget: TrainConfig) -> tuple[Split, Split]:
    """The train and test splits a compare's models train on, found now (after the budget's limits)."""
    train, test = (load_split(budget.dataset, split, budget.data_root, limit, torch.device("cpu"))
                   for split, limit in (("train", budget.train_limit), ("test", budget.test_limit)))
    return train, test


def _carry_out(config: CompareConfig, entries: list[Entry], out: Path, device: Any, features: list[str],
               console: Console, command: str | None, seconds: dict[str, float]) -> dict[str, Any]:
    """Train what is not trained yet, evaluate everything, write the outputs.

    A stop signal ends it with the command that continues the compare, not the run's own.
    """
    try:
        with locked(out), _move_explained(out):
            return _train_and_evaluate(config, entries, out, device, features, console, command, seconds)
    except Interrupted as exc:
        raise Interrupted(exc.checkpoint, exc.signum, resume=f"genzoo compare --resume {out}") from None
    except KeyboardInterrupt as exc:  # outside training, or a second stop signal
        raise Interrupted(None, getattr(exc, "signum", signal.SIGINT),
                          resume=f"genzoo compare --resume {out}") from None


def _held(out: Path) -> None:
    """Refuse to write into the compare folder ``out`` by its path once the folder locked there was moved or replaced.

    Held as a run folder is (:func:`~genzoo.run_folder.check_in_place`), before each write into it and each run
    it trains or evaluates: ``mv c c-old && mkdir c`` while the last model was evaluated had ``report.md``,
    ``results.json`` and the pictures written into the new ``c``, exit 0 (twentieth hostile pass, files F3).
    """
    check_in_place(out, "compare --resume", "compare folder")


@contextlib.contextmanager
def _move_explained(out: Path) -> Iterator[None]:
    """A failure while the compare folder ``out`` is moved away is said as the move: what failed was most likely its
    runs gone from the old path (``No such file or directory: c/runs/vae``), or one of them checked in place, whose
    ``run folder ... was moved`` named ``genzoo resume`` for one run, not the compare that carries on."""
    try:
        yield
    except (GenzooError, OSError):
        _held(out)
        raise


def _train_and_evaluate(config: CompareConfig, entries: list[Entry], out: Path, device: Any, features: list[str],
                        console: Console, command: str | None, seconds: dict[str, float]) -> dict[str, Any]:

    started = time.perf_counter()
    for entry in entries:
        if not entry.reused:
            entry.run_dir = out / "runs" / entry.label
            _check_resumable(entry.run_dir, out)
            earlier_evaluation(entry.run_dir)  # one genzoo could not merge into is refused before any work
    with warned_once():  # every model trains on one device: a precision it cannot keep is said once
        for i, entry in enumerate(entries, 1):
            if entry.reused:
                _rule(console, f"[{i}/{len(entries)}] {entry.label}: reusing {printable(str(entry.run_dir))}")
                continue
            assert entry.run_dir is not None
            if _trained(entry.run_dir) and not _pictures_missing(entry):
                _rule(console, f"[{i}/{len(entries)}] {entry.label}: trained before, in {entry.run_dir}")
            else:
                _held(out)  # a run started at the old path would be made in the folder found there
                t0 = time.perf_counter()
                try:
                    _train(config, entry, f"[{i}/{len(entries)}] {entry.label}", console)
                finally:  # the wall time so far, kept for the report of a compare that continues
                    seconds[entry.label] = seconds.get(entry.label, 0.0) + time.perf_counter() - t0
                    _save_progress(out, command, config, seconds)
            entry.training_seconds = seconds.get(entry.label)
    _warn_on_budget_mismatch(entries, console)

    console.rule(f"evaluating {len(entries)} models on one test split")
    # The whole split: measurements an eval.json keeps are checked against its first images.
    whole = load_test_split(config.training.dataset, config.training.data_root, None, device)
    limit = config.training.test_limit
    test = whole.take(limit) if limit is not None else whole
    results, models, described = [], {}, {}
    with make_progress(console) as progress:
        reference = Phases(progress, "test split")
        reg = registry()
        asked: list[str | None] = [*(config.evaluation.samplers or [])] or [None]  # None: each model's default
        if any(sampler_problem(reg.model(e.model), chosen) is None for e in entries for chosen in asked):
            for label in features:
                prepare_reference(test, label, config.evaluation, config.training.dataset, reference, device)
        overall = progress.add_task("compare: models evaluated", total=len(entries))
        for entry in entries:
            assert entry.run_dir is not None  # every entry was trained or reused above
            _held(out)  # the run read and written is the compare's own, not a copy or look-alike put at its path
            # A run whose eval.json this writes is locked, as genzoo eval locks it: a
            # concurrent eval would otherwise overwrite one of the two evaluations.
            with contextlib.nullcontext() if entry.reused else locked(entry.run_dir):
                description, records = finished_records(entry.run_dir)
                model = load_model(entry.run_dir, str(device), description)
                identity = run_identity(description, model_weights_sha256(model))
                fitting = _training_split(entry.run_dir, description, device, config.training.data_root)
                built: dict[str, Sampler] = {}
                result = evaluate_model(model, test, config.evaluation, name=entry.label,
                                        dataset=config.training.dataset, records=records, progress=progress,
                                        train=fitting, samplers=built)
                # Where a later --resume finds it from any folder: the compare's own runs under OUT, reused
                # ones resolved.
                result.update(run=str(entry.run_dir.resolve() if entry.reused else entry.run_dir.relative_to(out)),
                              reused_run=entry.reused,
                              run_config=identity)
                note_lost_metrics(result, entry.run_dir, description, records)
                if not entry.reused:
                    _held(out)
                    _write_evaluation(entry.run_dir, result, whole)
            results.append(result)
            models[entry.label] = (model, fitting, built)
            described[entry.label] = description
            progress.advance(overall)

    figure_started = time.perf_counter()
    _draw_figure(models, test, out)
    latent = _draw_latent(models, test, out, config.training.dataset)
    curves = _fid_curves(entries, config.training.fid_curve, len(test), models, described)
    _draw_fid_curves(curves, out)
    summary = {
        "command": command,
        "config": _config_dict(config),
        "out": str(out),
        "models": results,
        # Without the FID curve's measurements, made during training and given apart.
        "training_seconds": {e.label: max(0.0, e.training_seconds - curves["seconds"].get(e.label, 0.0))
                             for e in entries if e.training_seconds is not None},
        "reference_seconds": reference.seconds,
        "figure_seconds": time.perf_counter() - figure_started,
        "latent": latent,
        "fid_curve": curves,
        "mnist_classifier": _classifier_info(),
        "environment": environment(device),
    }
    summary["total_seconds"] = time.perf_counter() - started
    _held(out)
    atomic_write_text(out / REPORT_FILE, render_report(summary))
    _held(out)
    atomic_write_json(out / RESULTS_FILE, summary)  # last: it marks the compare complete
    table_console().print(rich_table(results, title=f"genzoo compare ({out})"))
    pictures = [out / FIGURE_FILE, *([out / LATENT_FILE] if latent["drawn"] else []),
                *([out / CURVE_FIGURE] if curves["drawn"] else [])]
    console.print(f"wrote {', '.join(printable(str(p)) for p in [out / 'report.md', out / 'results.json', *pictures])} "
                  f"in {summary['total_seconds']:.0f} s", markup=False, emoji=False)
    return summary


def _write_evaluation(run_dir: Path, result: dict[str, Any], test: Split) -> None:
    """The run's ``eval.json``: this evaluation, keeping what an earlier one measured and this one did not.

    The same merge as ``genzoo eval``'s; the comparison's own results keep only what it
    measured, alike for every model.
    """
    stored = {**copy.deepcopy(result), "run": str(run_dir)}  # as genzoo eval records it, not relative to OUT
    earlier = earlier_evaluation(run_dir)
    if earlier is not None:
        merge_earlier(stored, earlier, run_dir / EVAL_FILE, test)
    check_in_place(run_dir, "eval")
    atomic_write_json(run_dir / EVAL_FILE, stored)


def _training_split(run_dir: Path, description: dict[str, Any], device: Any,
                    data_root: str | None) -> Callable[[], Split]:
    """The run's training split, loaded when a sampler fits to it (``gmm``)."""
    return lambda: run_training_split(run_dir, description, device, data_root)


def _draw_figure(models: dict[str, tuple[Model, Callable[[], Split], dict[str, Sampler]]], test: Any,
                 out: Path) -> None:
    """``compare.png``, each model's samples drawn with its default sampler (the reason it has none in its place).

    A sampler the evaluation built for the model is reused, not fitted again.
    """
    samplers: dict[str, Sampler | str] = {}
    for label, (model, train, built) in models.items():
        try:
            problem = sampler_problem(model)
            samplers[label] = f"{label} cannot sample: {problem}" if problem is not None else \
                built.get(model.default_sampler) or build_sampler(model, label, None, train)
        except GenzooError as exc:  # a sampler that cannot fit: its place says so, the evaluation stands
            warn(str(exc))
            samplers[label] = f"{label} cannot sample: its sampler failed"
    _held(out)
    compare_figure({label: model for label, (model, _, _) in models.items()}, samplers,
                   next(iter(test.batches(32))), out / FIGURE_FILE, figures.PICTURE_SEED)


def _draw_latent(models: dict[str, tuple[Model, Callable[[], Split], dict[str, Sampler]]], test: Split, out: Path,
                 dataset: str) -> dict[str, list[str]]:
    """``latent.png``: each encoding model's test codes in 2-D, coloured by label, side by side.

    Drawn as ``genzoo latent`` draws them (its own functions: the codes at latent 2, their
    first two principal components otherwise); a model that cannot encode is named in the
    title. No picture when no model encodes. The labels drawn and left out, for the report: a model whose
    encode gives codes of another shape is left out as one that cannot encode, with a warning saying why.
    """
    codes: dict[str, torch.Tensor] = {}
    for label, (model, _, _) in models.items():
        if model.can_encode:
            try:
                codes[label] = test_codes(model, test)
            except NotCodes as exc:  # after all the training and evaluation: its panel alone is lost
                warn(f"{exc}; {label} is left out of {LATENT_FILE}")
    drawn = list(codes)
    left_out = [label for label in models if label not in drawn]
    if drawn:
        labels = split_labels(test)
        panels = []
        for label in drawn:
            model = models[label][0]
            points, axes = project(codes[label])
            panels.append(figures.LatentPanel(f"{label}, latent {model.config.latent}", points.numpy(),
                                              None if labels is None else labels.numpy(), axes))
        title = f"{dataset} test codes" + ("" if labels is not None else " (the split has no labels)")
        if left_out:
            title += f"; left out, as they cannot encode: {', '.join(left_out)}"
        _held(out)
        figures.save_latent_scatter(panels, out / LATENT_FILE, title)
    return {"drawn": drawn, "cannot_encode": left_out}


def _fid_curves(entries: list[Entry], samples: int, reference_images: int,
                models: dict[str, tuple[Model, Callable[[], Split], dict[str, Sampler]]],
                described: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each run's FID after every epoch (``train --fid-curve``), and where the ranking by it settles.

    Only curves measured alike are ranked together (FID depends on the sample count and the
    reference): alike this compare's own (``samples`` against ``reference_images``), or,
    when it measures none, the first model's. A reused run's curve that cannot be read, or
    that its run cannot have measured (copied or edited), is left out with a warning: the
    rest of the comparison stands. What its run measures with is the run as evaluated
    (``described``, its config.json as read then; ``models``, its model, default sampler
    and training split), not the folder read again.
    """
    curves: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        assert entry.run_dir is not None
        model, fitting, _ = models[entry.label]
        description = described[entry.label]
        try:
            config = parse_train_config(description["train_config"], description["model"], GenzooError)
            points = read_curve(entry.run_dir, config=config, sampler=model.default_sampler, train=fitting,
                                run_id=description.get("run_id"))
        except GenzooError as exc:
            warn(f"{entry.label}'s FID curve is left out: {exc}")
            continue
        if points:  # a non-finite FID is no point of a curve
            curves[entry.label] = [{**p, "fid": p["fid"] if p["fid"] is not None and math.isfinite(p["fid"])
                                    else None} for p in points]

    def how(points: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
        return {(p["features"], p["samples"], p.get("reference_images")) for p in points}

    wanted = ({(CURVE_FEATURES, samples, reference_images)} if samples else
              how(next(iter(curves.values()))) if curves else set())
    alike = {label: points for label, points in curves.items() if how(points) == wanted}
    unlike = {label: "; ".join(f"{f} features, {n} samples against {r} images" for f, n, r in sorted(
        how(points), key=str)) for label, points in curves.items() if label not in alike}
    drawn = any(p["fid"] is not None for points in curves.values() for p in points)
    seconds = {label: sum(p.get("seconds", 0.0) for p in points) for label, points in curves.items()}
    return {"curves": curves, "ranking": settle(alike), "drawn": drawn, "unlike": unlike, "seconds": seconds,
            "measured_as": [list(w) for w in wanted]}


def _draw_fid_curves(curves: dict[str, Any], out: Path) -> None:
    """``fid_curve.png``: the curves of :func:`_fid_curves`, when there is one to draw."""
    if not curves["drawn"]:
        return
    lines: dict[str, tuple[Sequence[int], Sequence[float | None]]] = {
        label: ([p["epoch"] for p in points], [p["fid"] for p in points]) for label, points in curves["curves"].items()}
    how = sorted({f"{p['features']} features, {p['samples']:,} samples" for points in curves["curves"].values()
                  for p in points})
    _held(out)
    figures.save_fid_curves(lines, out / CURVE_FIGURE, "FID after each epoch, each model's default sampler ("
                            + "; ".join(how) + ")")


def _write_missing_outputs(out: Path, config: CompareConfig) -> list[Path]:
    """Write again from ``results.json`` whichever of ``report.md``, ``compare.png`` and ``latent.png`` is missing.

    ``results.json`` is written last, so it is complete; the others can still be
    lost afterwards (deleted, or written by a genzoo that wrote results.json first).
    ``latent.png`` is missing only where ``results.json`` says it was drawn.
    """

    missing = [out / name for name in (REPORT_FILE, FIGURE_FILE, LATENT_FILE, CURVE_FIGURE)
               if not (out / name).is_file()]
    if not missing:
        return []
    path = out / RESULTS_FILE
    summary = read_json(path)
    advice = f"move it away and run genzoo compare --resume {out} to evaluate again"
    problem = _results_problem(summary, config)
    if problem is not None:
        raise GenzooError(f"{path} is not a usable genzoo compare result ({problem}); {advice}")
    for name, key in ((LATENT_FILE, "latent"), (CURVE_FIGURE, "fid_curve")):
        if not (summary.get(key) or {}).get("drawn"):  # none was drawn: none is missing
            missing = [p for p in missing if p.name != name]
    if not missing:
        return []
    try:
        if out / REPORT_FILE in missing:
            _held(out)
            atomic_write_text(out / REPORT_FILE, render_report(summary))
        if out / CURVE_FIGURE in missing:
            _draw_fid_curves(summary["fid_curve"], out)
        if out / FIGURE_FILE in missing or out / LATENT_FILE in missing:
            device = select_device(config.training.device)
            models: dict[str, tuple[Model, Callable[[], Split], dict[str, Sampler]]] = {}
            for r in summary["models"]:
                run_dir = Path(r["run"]) if r["reused_run"] else out / "runs" / r["model"]
                description = read_run(run_dir).raw
                model = load_model(run_dir, str(device), description)
                # The run results.json measured, not another one put at its path since: the pictures would show
                # other weights, even another model's, under its label, exit 0 (twenty-fourth hostile pass, files F1)
                if not same_run(r["run_config"], run_identity(description, model_weights_sha256(model))):
                    raise GenzooError(f"{run_dir} is not the run {path} measured as {printable(r['model'])!r} (other "
                                      "settings or weights: replaced since); put that run back to draw its pictures, "
                                      f"or {advice}")
                models[r["model"]] = (model, _training_split(run_dir, description, device, config.training.data_root),
                                      {})
            budget = config.training
            test = load_test_split(budget.dataset, budget.data_root, budget.test_limit, device)
            if out / FIGURE_FILE in missing:
                _draw_figure(models, test, out)
            if out / LATENT_FILE in missing:
                _draw_latent(models, test, out, budget.dataset)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise GenzooError(f"{path} is not a usable genzoo compare result ({type(exc).__name__}: {exc}); "
                          f"{advice}") from None
    return missing


def _results_problem(summary: Any, config: CompareConfig) -> str | None:
    """What in ``results.json`` genzoo did not write for this compare, field by field (None: nothing found).

    Every number finite (10**400 is no float; models' options may be any float), the text the report prints
    printable, each model's measurements as ``eval.json`` holds them, the budget that of ``compare.json``, and
    each run one of the compare's: its own ``runs/MODEL`` or a ``--from-runs`` folder. A number edited to another
    finite one cannot be told from a measured one (nothing holds a digest of the results).
    """
    if not isinstance(summary, dict):
        return f"a JSON {type(summary).__name__}, not an object"
    bad = _bad_number(summary)
    if bad is not None:
        return f"{bad} is not a finite number"
    command = summary.get("command")
    if command is not None and not (isinstance(command, str) and command.isprintable()):
        return f"command is {shown(command)}"
    budget = _config_dict(config)
    for key in ("epochs", "batch_size", "latent", "seed", "train_limit", "test_limit", "fp32_precision"):
        # (a results.json from before a setting holds none: it was its ADDED_LATER value)
        if not isinstance(summary.get("config"), dict) or \
                summary["config"].get(key, ADDED_LATER.get(key)) != budget[key]:
            return f"its config does not hold the compare's {key} {budget[key]}"
    env, clf = summary.get("environment"), summary.get("mnist_classifier")
    if not isinstance(env, dict) or not all(isinstance(env.get(k), str) and env[k].isprintable()
                                            for k in ("device", "torch_version", "platform")):
        return "environment is not genzoo's"
    if not is_count(env.get("torch_threads")) or not isinstance(clf, dict) \
            or not is_number(clf.get("test_accuracy")) or not is_count(clf.get("test_images")):
        return "environment or mnist_classifier is not genzoo's"
    for key in ("training_seconds", "reference_seconds"):
        if not isinstance(summary.get(key), dict) or not all(is_number(v) for v in summary[key].values()):
            return f"{key} is not an object of seconds"
    if not is_number(summary.get("total_seconds")):
        return "no total_seconds"
    models = summary.get("models")
    if not isinstance(models, list) or not models:
        return "models is not a list of evaluations"
    for r in models:
        problem = _model_problem(r, config)
        if problem is not None:
            return problem
    labels = [r["model"] for r in models]
    return _latent_problem(summary, labels) or _curve_problem(summary, labels)


def _latent_problem(summary: dict[str, Any], labels: list[str]) -> str | None:
    """What is wrong with ``results.json``'s ``latent`` (the models drawn in ``latent.png`` and those left out).

    Absent in a compare from before ``latent.png``; else every model compared, once, in one of its two lists.
    """
    if "latent" not in summary:
        return None
    latent = summary["latent"]
    if not isinstance(latent, dict) or sorted(latent) != ["cannot_encode", "drawn"] \
            or not all(_names(latent[key]) for key in latent) \
            or sorted(latent["drawn"] + latent["cannot_encode"]) != sorted(labels):
        return f"latent is {shown(latent)}, not the compare's models drawn and left out"
    return None


def _curve_problem(summary: dict[str, Any], labels: list[str]) -> str | None:
    """What is wrong with ``results.json``'s ``fid_curve`` (:func:`_fid_curves`: the curves, their ranking, whether
    ``fid_curve.png`` was drawn), as far as the report and the picture read it.

    Absent in a compare from before FID curves; else curves of the compare's models, made of curve entries, and
    a ranking of those models after each epoch it names.
    """
    if "fid_curve" not in summary:
        return None
    curves = summary["fid_curve"]

    def by_label(value: Any, check: Callable[[Any], bool]) -> bool:
        return isinstance(value, dict) and set(value) <= set(labels) and all(check(v) for v in value.values())

    def models(value: Any) -> bool:
        return _names(value) and set(value) <= set(labels)

    ranking = curves.get("ranking") if isinstance(curves, dict) else None
    epochs = ranking.get("epochs") if isinstance(ranking, dict) else None
    if not (isinstance(curves, dict) and isinstance(ranking, dict) and isinstance(curves.get("drawn"), bool)
            and by_label(curves.get("curves"), lambda points: isinstance(points, list)
                         and all(is_entry(p) for p in points))
            and by_label(curves.get("unlike", {}), _string) and by_label(curves.get("seconds", {}), is_number)
            and isinstance(epochs, list) and all(is_count(e) for e in epochs)
            and isinstance(ranking.get("orders"), dict) and sorted(ranking["orders"]) == sorted(map(str, epochs))
            and all(models(order) for order in ranking["orders"].values()) and models(ranking.get("final"))
            and all(_optional(is_count)(ranking.get(key)) for key in ("settled_since", "last_epoch"))
            and by_label(ranking.get("falling"), is_number)):
        return f"fid_curve is {shown(curves)}, not the compare's FID curves and their ranking"
    return None


def _model_problem(r: Any, config: CompareConfig) -> str | None:
    """What is wrong with one model's entry of ``results.json``, if anything."""
    if not isinstance(r, dict) or not (isinstance(r.get("model"), str) and r["model"].isprintable()):
        return f"a model entry is {shown(r)}"
    label = r["model"]
    problem = evaluation_problem(r)
    if problem is not None:
        return f"{label}: {problem}"
    if not is_count(r.get("parameters"), 0) or not isinstance(r.get("seconds"), dict) \
            or not isinstance(r.get("training"), (dict, type(None))):
        return f"{label}: parameters, seconds or training is not genzoo's"
    run, reused = r.get("run"), r.get("reused_run")
    if not isinstance(run, str) or not isinstance(reused, bool):
        return f"{label}: run is {shown(run)}"
    if not reused and (label not in config.models or Path(run).parts[-2:] != ("runs", label)):
        return f"{label}: run {shown(run)} is not one of the compare's own runs (OUT/runs/MODEL)"
    if reused and not any(_same_folder(run, typed) for typed in config.from_runs):
        return f"{label}: run {shown(run)} is none of the compare's --from-runs folders"
    return None


def _same_folder(stored: str, typed: str) -> bool:
    """Whether ``stored`` (resolved when the compare ran) is the ``--from-runs`` folder ``typed`` as given.

    A relative ``typed`` was resolved from the folder the compare started in, which may
    not be this one: then it must end ``stored``.
    """
    if Path(typed).resolve() == Path(stored) or stored == typed:
        return True
    parts = Path(typed).parts
    return not Path(typed).is_absolute() and ".." not in parts and Path(stored).parts[-len(parts):] == parts


#: Where ``results.json`` holds models' options: values a model takes, which may be infinite or NaN (a plugin's
#: ``clip_norm=inf``, a NaN "not set" default), not measurements; every run file keeps them as given.
_MODEL_OPTIONS = re.compile(r"results\.config\.model_options|results\.models\[\d+\]\.run_config\.model_config")


def _bad_number(value: Any, where: str = "results") -> str | None:
    """The first number under ``value`` that a float cannot hold finite (its path), if any, models' options aside:
    a compare of a model with ``clip_norm=inf`` wrote a ``results.json`` that its own ``--resume`` refused
    (eighteenth hostile pass, plugins F5)."""
    if _MODEL_OPTIONS.fullmatch(where):
        return None
    if isinstance(value, dict):
        return next((bad for key, item in value.items() if (bad := _bad_number(item, f"{where}.{key}"))), None)
    if isinstance(value, list):
        return next((bad for i, item in enumerate(value) if (bad := _bad_number(item, f"{where}[{i}]"))), None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not is_number(value):
        return where
    return None


def _rule(console: Console, title: str) -> None:
    """A rule titled with plain text: titles name folders and labels, and ``[/b]`` in one was a MarkupError."""
    console.rule(Text(title, style="rule.text"))


def _pictures_missing(entry: Entry) -> bool:
    """Whether a finished run lacks a picture (the compare was stopped while they were drawn)."""

    assert entry.run_dir is not None
    return any(not (entry.run_dir / name).is_file() for name in picture_names(registry().model(entry.model)))


def _trained(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run that finished its epochs (so a continued compare keeps it)."""
    if not (run_dir / CONFIG).is_file():
        return False
    try:
        finished_records(run_dir)
    except GenzooError:
        return False
    return True


def _started(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(run_dir.iterdir())


def _check_resumable(run_dir: Path, out: Path) -> None:
    """Refuse, before anything trains, a run an earlier session started but never checkpointed.

    It has nothing to resume from, and genzoo deletes nothing a run wrote.
    """

    if _started(run_dir) and not (run_dir / FILENAME).exists():
        raise GenzooError(f"cannot continue {run_dir}: it has no checkpoint (it was stopped before its first); "
                          f"move it away and run genzoo compare --resume {out} again to train it from the start")
    if _started(run_dir):
        _refuse_others_lines(run_dir)


def _refuse_others_lines(run_dir: Path) -> None:
    """Refuse, before anything trains, metric lines of another run in a run this compare would resume: the plan
    warned that it left them out, as lost, and the resume then refused them (twenty-third hostile pass, files M2).
    A finished run keeps them left out with that warning, as ``genzoo eval`` does; a run that cannot be read is
    left to the steps that read it."""
    try:
        run = read_run(run_dir)
    except GenzooError:
        return
    try:
        metric_lines(run_dir, run.run_id, refuse_others=RESUME_OTHERS)
    except GenzooError:
        try:
            state = load_checkpoint(run_dir / FILENAME)
            finished = Position.from_checkpoint(state.get("position"), run.train_config.epochs, run_dir / FILENAME
                                                ).epoch == run.train_config.epochs
        except GenzooError:
            finished = False
        if not finished:
            raise


def _train(config: CompareConfig, entry: Entry, title: str, console: Console) -> None:
    """Train ``entry`` into its run folder, or resume it there if an earlier session started it."""

    run_dir = entry.run_dir
    assert run_dir is not None
    if _started(run_dir):  # for a finished run, this only draws the pictures it lacks
        _rule(console, f"{title}: resuming {run_dir}")
        if config.processes > 1:
            _launch(config, ["resume", str(run_dir), *_options(config.training, ("device", "data_root"))], run_dir)
            return
        resume_run(run_dir, console=console, device=config.training.device, data_root=config.training.data_root,
                   after_epoch=measure_epoch)
        return
    _rule(console, f"{title}: training {config.training.epochs} epochs")
    if config.processes > 1:
        train = config.train_config(entry.model)
        budget = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("model", "eval_batch_size")]
        _launch(config, ["train", entry.model, "--out", str(run_dir), *_options(train, budget),
                         *_options(config.options_for(entry.model))], run_dir)
        return
    start_run(config.train_config(entry.model), config.options_for(entry.model), out=run_dir, console=console,
              after_epoch=measure_epoch)


def _launch(config: CompareConfig, args: list[str], run_dir: Path) -> None:
    """``genzoo ARGS --nproc N`` through torch's launcher, exactly as ``genzoo train --nproc N`` launches.

    This process stays single: it evaluates and writes the compare's files after. A stop
    or a failed rank names the command that continues the compare (``run_dir`` is
    ``OUT/runs/LABEL``), not the run's own.
    """
    resume = f"genzoo compare --resume {run_dir.parent.parent}"
    distributed.launch(config.processes, [*args, "--nproc", str(config.processes)], lambda: resume, resume)


def _options(values: Any, names: Any = None) -> list[str]:
    """Command-line options of ``genzoo train`` or ``resume`` that give ``values`` (a config, or a dict of them).

    Each field ``name`` is the option ``--name`` (underscores as dashes), as the budget's
    options and a model's own are made (:mod:`genzoo.options`); a flag is ``--name`` or
    ``--no-name``; a field that is ``None`` is left out (its default).
    """
    given = values if isinstance(values, dict) else {name: getattr(values, name) for name in names}
    args: list[str] = []
    for name, value in given.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            args += [flag, str(value)]
    return args


def _save_progress(out: Path, command: str | None, config: CompareConfig, seconds: dict[str, float]) -> None:
    _held(out)  # the progress of a compare moved away is not saved over a compare started in its place
    atomic_write_json(out / COMPARE_FILE, {"command": command, "config": _config_dict(config),
                                           "training_seconds": seconds})


def _config_dict(config: CompareConfig) -> dict[str, Any]:
    """``compare.json``'s ``config``: the budget's fields beside the compare's own, as the command line gives them."""
    training = {k: v for k, v in config.training.to_dict().items() if k != "model"}
    own = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
           if f.name not in ("training", "evaluation", "processes")}
    return {**own, **training, "evaluation": config.evaluation.to_dict()}


def read_saved_compare(out: Path) -> tuple[CompareConfig, str | None, dict[str, float]]:
    """The settings, command and training seconds saved in ``out/compare.json``, checked field by field."""
    path = out / COMPARE_FILE
    try:
        saved = read_json(path)  # a FIFO or a device is refused, not opened
    except (FileNotFoundError, NotADirectoryError):
        raise GenzooError(f"{path} not found: {out} holds no genzoo compare to continue") from None
    try:
        return _parse_saved(saved)
    except (GenzooError, TypeError, ValueError) as exc:
        raise GenzooError(f"{path} is not a usable genzoo compare file: {exc}") from None


def _optional(check: Any) -> Any:
    return lambda v: v is None or check(v)


def _string(v: Any) -> bool:
    return isinstance(v, str)


def _names(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


#: What each saved field of the compare's own may hold (the budget's are checked as a run's ``train_config``).
_COMPARE_FIELDS: dict[str, tuple[Any, str]] = {
    "models": (lambda v: _names(v) and len(set(v)) == len(v), "a list of distinct names"),
    "from_runs": (_names, "a list of folders"),
    "model_options": (lambda v: isinstance(v, dict) and all(isinstance(o, dict) for o in v.values()),
                      "an object of objects"),
    "latent": (_optional(is_count), "a positive integer or null"),
    "out": (_optional(_string), "a string or null"), "evaluation": (lambda v: isinstance(v, dict), "an object"),
    "data_sha256": (_optional(lambda v: isinstance(v, dict) and set(v) == {"train", "test"}
                              and all(is_sha256(d) for d in v.values())),
                    "the sha256 of its train and test data, or null"),
}
#: The budget's fields in ``compare.json``: ``TrainConfig``'s but its model.
_TRAINING_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "model")
_EVALUATION_FIELDS: dict[str, tuple[Any, str]] = {
    **{name: (lambda v: is_count(v, minimum=0), "an integer of at least 0")
       for name in ("fid_samples", "iwae_k", "seed", "batch_size", "sampling_images")},
    "features": (lambda v: v in ("auto", "mnist", "inception", "all"), "auto, mnist, inception or all"),
    "samplers": (_optional(lambda v: isinstance(v, list) and all(_string(name) for name in v)),
                 "a list of sampler names or null"),
    "inception_weights": (_optional(_string), "a string or null"), "cache": (_optional(_string), "a string or null"),
    "download": (lambda v: isinstance(v, bool), "true or false"),
    "protocol": (_optional(lambda v: v in PROTOCOLS), "a protocol name (" + ", ".join(PROTOCOLS) + ") or null"),
}


def _check_fields(values: dict[str, Any], kinds: dict[str, tuple[Any, str]], where: str) -> None:
    unknown = sorted(set(values) - set(kinds))
    if unknown:
        raise ValueError(f"unknown {where} field(s) {', '.join(map(repr, unknown))}")
    for name, value in values.items():
        ok, wanted = kinds[name]
        if not ok(value):
            raise ValueError(f"{where} field {name} must be {wanted}, got {value!r}")


def _parse_saved(saved: Any) -> tuple[CompareConfig, str | None, dict[str, float]]:
    """``compare.json``'s content as a checked config; ``ValueError`` or ``GenzooError`` says what is wrong."""

    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ValueError("no config object")
    values = dict(saved["config"])
    budget = {key: values.pop(key) for key in _TRAINING_FIELDS if key in values}
    _check_fields(values, _COMPARE_FIELDS, "config")
    evaluation = values.get("evaluation", {})
    _check_fields(evaluation, _EVALUATION_FIELDS, "evaluation")
    # The budget's own checks (types, positive epochs, seed range, ...), as a run's config.json meets them.
    training = parse_train_config({**budget, "model": EACH_MODEL}, EACH_MODEL, ValueError)
    config = CompareConfig(**{**values, "training": training, "evaluation": EvalConfig(**evaluation)})
    _check_model_options(config)
    seconds = saved.get("training_seconds") or {}
    # A label that is no model of the compare: its models list was changed, and is named (twenty-fifth pass, files M4)
    strays = sorted(label for label in seconds if label not in config.models) if isinstance(seconds, dict) else []
    if strays:
        raise ValueError(f"training_seconds names {', '.join(map(shown, strays))}, not among its models "
                         f"({', '.join(config.models)}): the models list or the seconds were changed")
    if not isinstance(seconds, dict) or not all(is_number(v) and v >= 0 for v in seconds.values()):
        raise ValueError(f"training_seconds must map the compare's models to seconds (finite, not negative), "
                         f"got {shown(seconds)}")
    command = saved.get("command")
    # It goes to the terminal and report.md as it is: no escape sequences or line breaks.
    if command is not None and not (isinstance(command, str) and command.isprintable()):
        raise ValueError(f"command must be a line of printable text or null, got {shown(command)}")
    return config, command, dict(seconds)


def _check_model_options(config: CompareConfig) -> None:
    """Each model's saved options held to the compare's models and to that model's config, as ``--set`` is.

    An edited ``compare.json`` gave options to ``dcgan``, which the compare does not train, and
    report.md listed them; ``"latent": "3"`` was refused without naming the file (twenty-sixth
    hostile pass, files M3).
    """
    strays = sorted(model for model in config.model_options if model not in config.models)
    if strays:
        raise ValueError(f"model_options names {', '.join(map(shown, strays))}, not among its models "
                         f"({', '.join(config.models)}): the models list or the options were changed")
    known = registry().names("model")
    for model, given in config.model_options.items():
        if model in known:  # one no plugin registers now is named by the plan, as a model of the compare
            model_config(model, given, f"model_options.{model}.{{}}".format)


def _warn_on_budget_mismatch(entries: list[Entry], console: Console) -> None:
    """Reused runs may differ in budget: say so, since the table puts them side by side."""
    keys = ("epochs", "seed", "batch_size", "train_limit")
    budgets = {}
    for e in entries:
        assert e.run_dir is not None
        train = read_config(e.run_dir).get("train_config", {})
        budgets[e.label] = tuple(train.get(k) for k in keys)
    if len(set(budgets.values())) > 1:
        detail = "; ".join(f"{label}: " + ", ".join(f"{k} {v}" for k, v in zip(keys, b))
                           for label, b in budgets.items())
        console.print(Text(f"warning: the models were trained on different budgets ({detail})", style="yellow"))


def _classifier_info() -> dict[str, Any]:
    _, meta = mnist_classifier.load_classifier()
    return {"test_accuracy": meta.get("test_accuracy"), "test_images": meta.get("test_images"),
            "recipe": meta.get("recipe"), "weights": str(mnist_classifier.WEIGHTS)}


def render_report(summary: dict[str, Any]) -> str:
    """``report.md``: the table, what it was measured under, and the wall time of each phase."""
    results = summary["models"]
    cfg = summary["config"]
    env = summary["environment"]
    clf = summary["mnist_classifier"]
    if all(r.get("reused_run") for r in results):
        trained = "no model was trained here: each is a reused run, with its own budget (below)"
    else:
        precision = cfg.get("fp32_precision", ADDED_LATER["fp32_precision"])  # (checked as the compare's)
        trained = (f"epochs {cfg['epochs']}, batch {cfg['batch_size']}, latent {cfg['latent']}, seed {cfg['seed']}, "
                   f"train images {cfg['train_limit'] or 'all'}, --fp32-precision {precision} (training only)")
    lines = [
        "# genzoo compare",
        "",
        f"Command: {_code(summary['command'] or 'genzoo compare (API)')}",
        "",
        markdown_table(results),
        "",
        *[f"- {line}" for line in notes(results)],
        f"- mnist features: genzoo's MNIST classifier, test accuracy {clf['test_accuracy']:.4f} "
        f"on {clf['test_images']:,} images",
        "- FID depends on the sample count (fewer samples bias it upward): compare FIDs only within a column.",
        "- Reconstruction decodes the encoder's mean; -ELBO uses one posterior sample per test image; "
        "NLL is the IWAE bound with K importance samples (BCE on grey-level pixels, so not comparable "
        "to binarised-MNIST likelihoods).",
        "",
        "## Budget",
        "",
        f"{trained}, test images {cfg['test_limit'] or 'all'}; "
        f"device {env['device']}, {env['torch_threads']} torch threads, torch {env['torch_version']}, "
        f"{env['platform']}",
        "",
    ]
    for r in results:
        if r.get("reused_run"):
            train = (r.get("run_config") or {}).get("train_config") or {}
            lines.append(f"- {r['model']}: reused run {printable(r['run'])} (epochs {train.get('epochs')}, "
                         f"seed {train.get('seed')}, train images {train.get('train_limit') or 'all'})")
    for model, settings in (cfg.get("model_options") or {}).items():  # --set: over the budget's latent too
        if settings:
            given = ", ".join(f"{name}={value}" for name, value in settings.items())
            lines.append(f"- {printable(model)}: --set {printable(given)}")
    lines += [
        "",
        "## Wall time per phase",
        "",
        phase_table(results, summary["training_seconds"]),
        "",
        *_reference_lines(summary),
        "",
        f"Total: {summary['total_seconds']:.0f} s.",
        "",
        "![samples and reconstructions](compare.png)",
        "",
        *_latent_lines(summary.get("latent")),
        *_ranking_lines(summary.get("fid_curve")),
    ]
    return "\n".join(lines)


def _ranking_lines(curves: dict[str, Any] | None) -> list[str]:
    """Whether the table's ranking is the budget's or the models': the FID after each epoch, and where it settled."""
    if curves is None:  # a results.json from before FID curves
        return []
    lines = ["## Where the ranking settles", ""]
    ranking = curves["ranking"]
    picture = ["", f"![FID after each epoch]({CURVE_FIGURE})"] if curves["drawn"] else []
    unlike = curves.get("unlike") or {}
    not_ranked = ["Not ranked with the others, as their curves were measured otherwise: " + "; ".join(
        f"{label} ({how})" for label, how in unlike.items()) + "."] if unlike else []
    if curves.get("seconds"):
        not_ranked.append("Measuring the curves took " + ", ".join(
            f"{label} {seconds:.0f} s" for label, seconds in curves["seconds"].items())
            + " (during training; not counted in its wall time above).")
    if len(ranking["final"]) < 2:
        having = ranking["final"]
        lines += [f"No ranking over epochs: {len(having)} model(s) have an FID after each epoch measured alike "
                  f"({', '.join(having) or 'none'}); the others were trained with `--fid-curve 0`, are reused "
                  "runs trained without it, cannot sample, or were measured otherwise.", *not_ranked, *picture, ""]
        return lines
    orders = ranking["orders"]
    shown_epochs = [e for i, e in enumerate(ranking["epochs"])
                    if i == 0 or orders[str(e)] != orders[str(ranking["epochs"][i - 1])]]
    changes = "; ".join(f"after epoch {e}: {' < '.join(orders[str(e)])}" for e in shown_epochs)
    lines.append(f"Ranking by the FID after each epoch (lower first; each model's default sampler, "
                 f"where it changed): {changes}.")
    last = ranking["last_epoch"]
    if ranking["settled_since"] == last and len(ranking["epochs"]) > 1:
        lines.append(f"**The ranking changed at the last epoch ({last}): this budget, not the models, decides "
                     "it; train longer (`--epochs`) to see where it settles.**")
    else:
        lines.append(f"It has held since epoch {ranking['settled_since']} of {last}.")
    late = shown_epochs[1:]  # the epochs it changed at
    late = [e for e in late if e > ranking["epochs"][len(ranking["epochs"]) // 2]]
    if len(late) >= 2:  # swapping back and forth: within the curve's noise, not settled
        swapped = sorted({label for e in late for a, b in zip(orders[str(e)], orders[str(_before(ranking, e))])
                          if a != b for label in (a, b)})
        lines.append(f"**It changed {len(late)} times in the second half of the epochs**: {', '.join(swapped)} "
                     "swap places within the noise of the curve's FIDs, so their order in the table is not settled "
                     "either.")
    if ranking["falling"]:
        falling = ", ".join(f"{label} (down {drop:.1%})" for label, drop in sorted(ranking["falling"].items()))
        lines.append(f"**Still improving at the end** (FID down more than {STILL_FALLING:.0%} over the last "
                     f"epoch): {falling}; their place may change with more epochs.")
    return lines + not_ranked + picture + [""]


def _before(ranking: dict[str, Any], epoch: int) -> int:
    """The epoch ranked just before ``epoch``."""
    epochs = ranking["epochs"]
    return int(epochs[epochs.index(epoch) - 1])


def _latent_lines(latent: dict[str, list[str]] | None) -> list[str]:
    """What ``latent.png`` shows and who is left out of it; nothing for a ``results.json`` from before it."""
    if latent is None:
        return []
    left_out = ", ".join(latent["cannot_encode"])
    if not latent["drawn"]:
        return [f"No {LATENT_FILE}: no model compared can encode ({left_out}), so none has codes to draw.", ""]
    why = f" {left_out} cannot encode, so it has no codes to draw." if left_out else ""
    return [f"Test codes in 2-D, coloured by label, as `genzoo latent` draws them (the codes themselves at "
            f"latent 2, their first two principal components otherwise): {', '.join(latent['drawn'])}.{why}", "",
            f"![test codes in 2-D]({LATENT_FILE})", ""]


def _reference_lines(summary: dict[str, Any]) -> list[str]:
    """Where each extractor's test-split statistics came from: computed here (and how long) or the cache."""
    labels = sorted({entry["features"] for r in summary["models"] for entry in r.get("fid", {}).values()})
    lines = []
    for label in labels:
        phase = next((p for p in summary["reference_seconds"] if p.endswith(label)), None)
        if phase is not None:
            lines.append(f"Test-split statistics for FID {label}: computed once for all models in "
                         f"{summary['reference_seconds'][phase]:.1f} s.")
        else:
            lines.append(f"Test-split statistics for FID {label}: read from the cache (computed by an earlier run).")
    return lines


def _code(text: str) -> str:
    """``text`` as Markdown's inline code: fenced by more backticks than it holds in a row (a quoted ``a`b``)."""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def command_line() -> str:
    """The command as typed, for the report: each argument quoted as a shell needs it (a model ``vae|big`` was
    shown bare, which a shell would read as a pipe; twenty-sixth hostile pass, plugins M6); an argument with
    unprintable characters is written escaped."""
    return " ".join(["genzoo", *(shlex.quote(arg) if arg.isprintable() else ascii(arg) for arg in sys.argv[1:])])
