"""The ``genzoo`` command line: train models and list what the plugins provide."""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any

from genzoo import process_tree
from genzoo.errors import PLUGIN_FAULTS, can_show, describe, memory_line, out_of_memory, says_aborted, warn


@contextmanager
def _abort_on_stop_signals() -> Iterator[None]:
    """While genzoo's imports run (seconds, for torch), Ctrl-C or SIGTERM ends at once with ``Aborted.``.

    Nothing is written yet, so nothing needs saving; without this Ctrl-C printed a
    KeyboardInterrupt traceback from deep inside torch, and SIGTERM ended without a word.
    The handlers before are put back after (``main`` installs its own).
    """
    def abort(signum: int, frame: Any) -> None:
        if says_aborted():
            os.write(2, b"Aborted.\n")
        os._exit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A signal the caller ignores (SIGINT for a shell's background job) stays ignored.
    previous = {signum: signal.signal(signum, abort)
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU)
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


with _abort_on_stop_signals():
    import click
    from click.core import ParameterSource
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from genzoo import distributed
    from genzoo.building import model_config
    from genzoo.checks import listed, printable
    from genzoo.compile_cache import COMPILE_CACHE_ENV
    from genzoo.distributed import Stopped
    from genzoo.errors import GenzooError, escaped, first_line, one_line
    from genzoo.evaluation.limits import DEFAULT_PAIRS, MAX_PAIRS
    from genzoo.options import (
        HELP_OPTIONS,
        NoneOrCount,
        budget_options,
        config_options,
        data_root_option,
        device_option,
        download_option,
        eval_config,
        eval_options,
        listed_names,
        nproc_option,
        option_name,
        seed_option,
        train_options,
    )
    from genzoo.plugin_registry import KINDS, Registry, registry
    from genzoo.process_settings import WrappedStream
    from genzoo.trainer import STOP_SIGNALS, Interrupted, StopAtOnce, handled

stdout = Console()


class StopSignal(BaseException):
    """A stop signal (Ctrl-C, SIGTERM) that unwound a command, carried past click to ``main``, which says what
    it stopped (``Aborted.`` or its own line): click would write a blank line first, which no other way to stop
    genzoo writes."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__()
        self.interrupt = interrupt


class Commands(click.Group):
    """genzoo's commands; a stop signal unwinding one becomes :class:`StopSignal`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise StopSignal(exc) from exc


@click.group(cls=Commands, context_settings={"help_option_names": list(HELP_OPTIONS)})
@click.version_option(package_name="genzoo")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """genzoo: train, evaluate and compare generative models that plugins provide."""


class ModelCommand(click.Command):
    """``genzoo train``: its options grow with the chosen MODEL's config dataclass.

    The model is found among the arguments before they are parsed, and each field its
    config adds (``beta`` for beta-vae) becomes an option (``--beta``) listed under the
    model's name in ``--help``; the values reach the callback as ``model_options``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared_params = list(self.params)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        self.params = list(self.shared_params)
        reg = registry()
        model = self._model_name(args, reg)
        fields: list[str] = []
        if model is not None:
            extra = config_options(model, reg.model(model).Config)
            self.params += extra
            fields = [str(p.name) for p in extra]
            ctx.meta["genzoo.model"] = model
        rest = super().parse_args(ctx, args)
        given = {f: ctx.params.pop(f, None) for f in fields}
        ctx.params["model_options"] = {f: value for f, value in given.items() if value is not None}
        return rest

    def _model_name(self, args: list[str], reg: Registry) -> str | None:
        """The first positional argument that names a registered model (or the first at all).

        Values of the shared options are skipped, so ``--out vae`` is not a model; an
        unknown name fails here with the registry's suggestions, before click would
        report the model's own options as unknown.
        """
        takes_value = {opt for p in self.shared_params if isinstance(p, click.Option) and not p.is_flag
                       for opt in p.opts}
        positional: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                positional += args[i + 1:]
                break
            if arg.startswith("-"):
                i += 2 if arg in takes_value else 1
                continue
            positional.append(arg)
            i += 1
        if not positional:
            return None
        names = reg.names("model")
        for arg in positional:
            if arg in names:
                return arg
        reg.entry("model", positional[0])  # raises: unknown model, with suggestions
        return None

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        own = [p for p in self.params if p not in self.shared_params]
        shared = [p for p in self.get_params(ctx) if isinstance(p, click.Option) and p not in own]
        with formatter.section("Options"):
            formatter.write_dl([r for r in (p.get_help_record(ctx) for p in shared) if r])
        model = ctx.meta.get("genzoo.model")
        if model is None:
            formatter.write_paragraph()
            formatter.write_text("A model's own options (from its config) are listed by: genzoo train MODEL --help")
        elif own:
            with formatter.section(f"Options of {model}"):
                formatter.write_dl([r for r in (p.get_help_record(ctx) for p in own) if r])


@cli.command(cls=ModelCommand, params=train_options())
def train(model: str, latent: int | None, lr: float | None, loss: str | None, out: str | None,
          download: bool, loggers: tuple[str, ...], nproc: int, model_options: dict[str, Any],
          **options: Any) -> None:
    """Train MODEL and write a run folder with metrics, checkpoint and pictures."""
    from genzoo.train_config import TrainConfig
    from genzoo.training import start_run

    shared = {k: v for k, v in (("latent", latent), ("lr", lr), ("loss", loss)) if v is not None}
    model_config(model, {**shared, **model_options}, option_name)  # a bad value named as typed, before any work
    names = listed_names("--log", "logger", loggers)
    config = TrainConfig(model=model, **options)  # and the budget, before any process is launched
    if _launching(nproc):
        from genzoo.checkpoint import FILENAME
        from genzoo.training import run_folder_for_launch

        with run_folder_for_launch(config, {**shared, **model_options}, out, download, names, nproc) as run_dir:
            _launch(nproc, [] if out is not None else ["--out", str(run_dir)],
                    lambda: f"genzoo resume {run_dir}" if (run_dir / FILENAME).is_file() else None)
        return
    result = start_run(config, {**shared, **model_options}, out=out, download=download, loggers=names,
                       after_epoch=_fid_curve)
    report_run(result.run_dir, result.records)


def _fid_curve(run_dir: Path, model: Any, name: str, train: Any, test: Any, config: Any,
               record: dict[str, Any]) -> None:
    """After each epoch (``training.AfterEpoch``): the FID curve's measurement, when ``config.fid_curve`` asks.

    Imported only then: the FID code imports torch-fidelity, torchvision and torch's
    compiler, seconds a run without a curve need not pay (tests/test_fast_start.py).
    """
    if config.fid_curve:
        from genzoo.evaluation.fid_curve import measure_epoch

        measure_epoch(run_dir, model, name, train, test, config, record)


@cli.command(params=[
    click.Argument(["run_dir"], type=click.Path(file_okay=False)),
    data_root_option("Data folder, if it moved since the run started."),
    device_option(None, "auto, cpu or cuda [default: the run's own]."),
    download_option(),
    nproc_option("Resume on N processes of this machine, launched through torch.distributed.run."),
])
def resume(run_dir: str, data_root: str | None, device: str | None, download: bool, nproc: int) -> None:
    """Continue the run in RUN_DIR from its last checkpoint, to the epochs it asked for."""
    from genzoo.run_folder import read_metrics
    from genzoo.training import read_resumable, resume_run

    if _launching(nproc):
        read_resumable(Path(run_dir))  # a run that cannot be resumed: one line, before any rank starts
        _launch(nproc, [], lambda: f"genzoo resume {run_dir}")
        return

    result = resume_run(run_dir, download=download, device=device, data_root=data_root, after_epoch=_fid_curve)
    if not result.records and distributed.is_main():  # rank 0's words alone
        click.echo("the run was already complete; nothing to train")
    report_run(result.run_dir, read_metrics(result.run_dir))


def _launching(processes: int) -> bool:
    """Whether this command is to launch ``processes`` processes (not when torch's launcher started it)."""
    return distributed.check_processes(processes)


def _launch(processes: int, extra: list[str], resume: Callable[[], str | None]) -> None:
    """Run this command on ``processes`` processes through torch's launcher, with ``extra`` arguments.

    Each process runs the same command line (``--nproc`` included: under the launcher
    it launches nothing). ``resume`` says how to continue after a failed rank.
    """
    context = click.get_current_context()
    args = list(context.obj["argv"] if context.obj else sys.argv[1:])
    at = args.index(str(context.info_name)) + 1 if context.info_name in args else len(args)
    distributed.launch(processes, [*args[:at], *extra, *args[at:]], resume)


def report_run(run_dir: Any, records: list[dict[str, Any]]) -> None:
    from genzoo.distributed import is_main

    if not is_main():  # one report, rank 0's, from a distributed run
        return
    click.echo(f"run folder: {printable(str(run_dir))}")
    if records:
        last = records[-1]
        tests = ", ".join(f"{printable(k[5:])} {v:.4f}" for k, v in sorted(last.items()) if k.startswith("test_"))
        click.echo(f"final test metrics (epoch {last['epoch']}, per image): {tests}")


def _given(name: str) -> Any:
    """The value of option ``name`` if it was typed on the command line, else ``None``."""
    return click.get_current_context().params[name] if _typed(name) else None


def _typed(name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not left at its default)."""
    return click.get_current_context().get_parameter_source(name) is ParameterSource.COMMANDLINE


def _refuse_settings_beside_resume(models: tuple[str, ...]) -> None:
    """``compare --resume`` takes its settings from the compare it continues; others would be silently ignored."""
    ctx = click.get_current_context()
    given = ["MODELS"] if models else []
    given += [p.opts[0] for p in ctx.command.params if isinstance(p, click.Option)
              and p.name not in ("resume", "device", "data_root", "nproc")
              and ctx.get_parameter_source(str(p.name)) is ParameterSource.COMMANDLINE]
    if given:
        raise GenzooError(f"--resume continues a compare with the settings saved in it; leave out "
                          f"{', '.join(given)} (only --device, --data-root and --nproc may change, as for genzoo "
                          "resume)")


@cli.command("eval", params=[
    click.Argument(["run_dir"], type=click.Path(file_okay=False)),
    *eval_options(),
    click.Option(["--test-limit"], type=click.IntRange(min=1), help="Evaluate on the first N test images only."),
    data_root_option("Data folder, if it moved since the run."),
    device_option(),
])
def eval_command(run_dir: str, test_limit: int | None, data_root: str | None, device: str, **options: Any) -> None:
    """Evaluate the finished run in RUN_DIR on the test split; write RUN_DIR/eval.json."""
    from genzoo.evaluation import evaluate_run
    from genzoo.evaluation.report import rich_table, table_console

    def report(result: dict[str, Any]) -> None:  # before eval.json is written: a failing write loses no number
        table_console().print(rich_table([result], title=f"genzoo eval {printable(run_dir)}"))

    result = evaluate_run(run_dir, eval_config(**options, given=_typed), test_limit=test_limit, device=device,
                          data_root=data_root, report=report)
    click.echo(f"wrote {printable(str(result['run']) + '/eval.json')}")


class FileToWrite(click.Path):
    """A file a command writes (``sample --out``, ``graph --out``): a name that ends in a slash names a folder,
    which the system refuses as a file, and genzoo wrote the file without the slash (twenty-second hostile pass,
    files M1)."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.endswith("/"):
            self.fail(f"{escaped(repr(value))} ends with '/', which names a folder: give the name of a file", param,
                      ctx)
        return super().convert(value, param, ctx)


@cli.command(params=[
    click.Argument(["run_dir"], type=click.Path(file_okay=False)),
    click.Option(["-n", "n"], type=click.IntRange(1, 10_000), default=64, show_default=True, help="How many samples."),
    seed_option(1234, "Random seed; the default draws the samples of the run's samples.png."),  # figures.PICTURE_SEED
    click.Option(["--out"], type=FileToWrite(),
                 help="A new .png (grid), .npz or .safetensors file [default: RUN_DIR/samples-seedS-nN.png]."),
    click.Option(["--sampler"], metavar="NAME", help="A registered sampler (see genzoo plugins) [default: the "
                 "model's own default sampler, as samples.png]."),
    data_root_option("Data folder, if it moved since the run (a sampler that fits to the training codes reads it)."),
])
def sample(run_dir: str, n: int, seed: int, out: str | None, sampler: str | None, data_root: str | None) -> None:
    """Draw samples from the finished run in RUN_DIR: a picture, or a tensor file for other tools."""
    from genzoo.sharing import sample_run

    click.echo(f"wrote {printable(str(sample_run(run_dir, n, seed, out, sampler, data_root)))}")


@cli.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--format", "format_", type=click.Choice(["safetensors"]), required=True,
              help="The weights' file format.")
@click.option("--out", type=click.Path(file_okay=False), help="A new folder [default: RUN_DIR-export].")
def export_command(run_dir: str, format_: str, out: str | None) -> None:
    """Export the finished run in RUN_DIR: its weights and config, loadable with no pickle."""
    from genzoo.sharing import export_run

    click.echo(f"wrote {printable(str(export_run(run_dir, format_, out)))}")


@cli.command(params=[
    click.Argument(["models"], nargs=-1),
    click.Option(["--latent"], type=click.IntRange(min=1), default=40, show_default=True,
                 help="Latent size of every model."),
    *budget_options(fid_curve=1000),
    click.Option(["--set", "settings"], multiple=True, metavar="MODEL.FIELD=VALUE",
                 help="A trained model's own option, as train's --field takes it (repeatable)."),
    click.Option(["--from-runs"], multiple=True, type=click.Path(file_okay=False),
                 help="Reuse this finished run instead of training its model (repeatable)."),
    click.Option(["--out"], type=click.Path(), help="Output folder [default: runs/compare-<timestamp>]."),
    click.Option(["--resume"], type=click.Path(file_okay=False), metavar="OUT",
                 help="Continue the compare stopped in OUT, with its saved settings."),
    nproc_option("Train each model on N processes of this machine, as train --nproc does (docs/distributed.md)."),
    *eval_options(),
])
def compare(models: tuple[str, ...], settings: tuple[str, ...], from_runs: tuple[str, ...], fid_samples: int,
            features: str, iwae_k: int | None, inception_weights: str | None, samplers: tuple[str, ...],
            protocol: str | None, resume: str | None, nproc: int, **options: Any) -> None:
    """Train MODELS on one budget (or reuse runs), evaluate all on one test split, report."""
    from genzoo.compare import EACH_MODEL, CompareConfig, command_line, resume_compare
    from genzoo.compare import compare as run_compare
    from genzoo.options import parse_setting
    from genzoo.train_config import TrainConfig

    if resume is not None:
        _refuse_settings_beside_resume(models)
        resume_compare(resume, device=_given("device"), data_root=_given("data_root"), processes=nproc)
        return

    model_options: dict[str, dict[str, Any]] = {}
    for text in settings:
        model, name, value = parse_setting(text, list(models))
        if name in model_options.get(model, {}):  # a second value would replace the first without a word
            raise GenzooError(f"--set {text!r}: {model}'s {name} is already set by an earlier --set; give each "
                              "option once")
        model_options.setdefault(model, {})[name] = value
    for model, given in model_options.items():
        model_config(model, given, ("--set " + model + ".{}").format)
    evaluation = eval_config(fid_samples, features, iwae_k, inception_weights, samplers, protocol, _typed,
                             options["seed"])
    config = CompareConfig(models=list(models), from_runs=list(from_runs), evaluation=evaluation,
                           model_options=model_options, latent=options.pop("latent"), out=options.pop("out"),
                           training=TrainConfig(model=EACH_MODEL, **options), processes=nproc)
    run_compare(config, command=command_line())


@cli.command(params=[
    click.Argument(["runs"], nargs=-1, required=True, metavar="RUN [RUN2]"),
    click.Option(["--out"], type=click.Path(), help="Folder for the pictures and latent.json "
                 "[default: runs/latent-<timestamp>]."),
    click.Option(["--pairs"], type=NoneOrCount(MAX_PAIRS), default=DEFAULT_PAIRS, show_default=True,
                 help="Random pairs of test codes whose decoded midpoints are measured (0: pictures only)."),
    seed_option(help="Seed of the pairs drawn and measured."),
    click.Option(["--test-limit"], type=click.IntRange(min=1), help="Use the first N test images only."),
    data_root_option("Data folder, if it moved since the runs."),
    device_option(),
])
def latent(runs: tuple[str, ...], out: str | None, pairs: int, seed: int, test_limit: int | None,
           data_root: str | None, device: str) -> None:
    """Draw and measure the latent space of finished RUN (two: side by side).

    Writes latent.png (test codes in 2-D by digit), interpolation.png, traversal.png and
    latent.json (interpolation FID and classifier confidence of decoded midpoints).
    """
    from genzoo.evaluation.latent_space import draw_latent_space

    folder, result = draw_latent_space(list(runs), out, pairs=pairs, seed=seed, test_limit=test_limit,
                                       data_root=data_root, device=device)
    for entry in result["runs"]:
        metrics = entry["metrics"]
        line = f"{entry['label']}, latent {entry['latent']}, {entry['interpolation']} interpolation"  # as titled
        if metrics is not None:
            line += (f": midpoint FID (mnist) {metrics['midpoint_fid']['fid']:.2f}, reconstruction FID "
                     f"{metrics['reconstruction_fid']['fid']:.2f}; classifier confidence on midpoints "
                     f"{metrics['midpoint_confidence']:.3f}, "
                     f"reconstructions {metrics['reconstruction_confidence']:.3f}, "
                     f"test images {metrics['test_confidence']:.3f} ({metrics['pairs']} pairs, seed {seed})")
        click.echo(line)
    click.echo(f"wrote {printable(str(folder))}: {', '.join(result['pictures'])}, latent.json")


@cli.command()
@click.argument("source", metavar="MODEL|RUN")
@click.option("--out", type=FileToWrite(), metavar="FILE",
              help="Writes FILE.svg and FILE.png [default: graph-MODEL or graph-RUN].")
@click.option("--dataset", default=None, metavar="NAME",
              help="The images a MODEL is built for [default: train's default dataset]; a RUN knows its own.")
def graph(source: str, out: str | None, dataset: str | None) -> None:
    """Draw the autograd graph of one training step's loss (torchviz).

    Of a registered MODEL (default options) or of a finished RUN folder's model. Needs
    the extra genzoo[graph] and the Graphviz program dot.
    """
    from genzoo.autograd_graph import draw_graph

    paths = draw_graph(source, out, dataset)
    click.echo(f"wrote {' and '.join(printable(str(p)) for p in paths)}")


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json: bool) -> None:
    """List every registered model, loss, dataset, logger and sampler and the distribution providing it."""
    reg = registry()
    rows = [
        {"kind": kind, "name": e.name, "plugin": e.plugin, "distribution": e.distribution,
         "version": e.version, "details": _details(kind, e.name, e.obj)}
        for kind in KINDS
        for e in (reg.entry(kind, n) for n in reg.names(kind))
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    columns = ("kind", "name", "distribution", "version", "plugin", "details")
    table = Table(title="genzoo plugins")
    for column in columns:
        table.add_column(column)
    # Plain text: a plugin's docstring ``Draws [/x] noise.`` is no markup to fail on; one line, escaped: a description
    # holding an escape sequence turned the rest of the table red (twenty-fifth hostile pass, plugins M8).
    for row in rows:
        table.add_row(*(Text(one_line(row[column])) for column in columns))
    stdout.print(table)


cli.add_command(plugins_command, name="list")


#: ``genzoo data download``'s name for the Inception weights that ``--features inception`` needs.
INCEPTION = "inception"


@cli.group("data")
def data_group() -> None:
    """Download, check and locate datasets and FID weights (mirror: $GENZOO_MIRROR)."""


@data_group.command("download", params=[data_root_option()])
@click.argument("names", nargs=-1, required=True)
def data_download(names: tuple[str, ...], data_root: str | None) -> None:
    """Download the datasets NAMES (or 'inception', the FID weights), each checksum verified."""
    from genzoo.data import resolve_data_root
    from genzoo.evaluation.weights import inception_weights

    reg = registry()
    for name in names:  # every name checked before anything is downloaded
        if name != INCEPTION:
            reg.dataset(name)
    for name in names:
        if name == INCEPTION:
            click.echo(f"{INCEPTION}: {inception_weights()}")
            continue
        for check in dataset_files(name, resolve_data_root(data_root), fetch=True):
            click.echo(f"{name}: {check.path}: {check.detail}")


@data_group.command("check", params=[data_root_option()])
def data_check(data_root: str | None) -> None:
    """Say which datasets and FID weights are present, where, and whether checksums match.

    Exits 1 when a file present fails its checksum.
    """
    from genzoo.data import resolve_data_root
    from genzoo.evaluation.weights import INCEPTION_SHA256_PREFIX, file_sha256, inception_target, not_a_file

    root = resolve_data_root(data_root)
    failed, broken = False, []
    click.echo(f"data folder: {root}")
    for name in registry().names("dataset"):
        try:
            checks = dataset_files(name, root)
        except (GenzooError, OSError) as exc:  # a faulty plugin (or disk) must not hide the other datasets
            broken.append(name)
            click.echo(f"{'error':8} {name}: {one_line(str(exc) if can_show(exc) else describe(exc))}")
            continue
        for check in checks:
            mark = {True: "ok", False: "MISMATCH", None: "-"}[check.ok]
            failed = failed or check.ok is False
            click.echo(f"{mark:8} {name}: {check.path}: {check.detail}")
    target = inception_target()
    if target.is_file():
        matched = file_sha256(target).startswith(INCEPTION_SHA256_PREFIX)
        detail = (f"sha256 {'matches' if matched else 'differs from'} torch-fidelity's published "
                  f"{INCEPTION_SHA256_PREFIX}...")
        click.echo(f"{'ok' if matched else 'other':8} {INCEPTION}: {target}: {detail}")
    else:  # said as eval refuses it: a FIFO there is no missing file
        standing = not_a_file(target)
        click.echo(f"{'-':8} {INCEPTION}: {target}: "
                   + ("missing" if standing is None else f"not a regular file ({standing})"))
    problems = []
    if failed:
        problems.append("a file failed its checksum (MISMATCH above); delete it and run genzoo data download")
    if broken:
        problems.append(f"dataset {', '.join(broken)} could not be checked (error above); mend or remove its plugin")
    if problems:
        raise GenzooError("; ".join(problems))


def dataset_files(name: str, root: Path, fetch: bool = False) -> list[Any]:
    """Dataset ``name``'s files under ``root`` as its ``check()`` reports them, downloaded first with ``fetch``.

    The plugin's code raising, or a check that is no ``FileCheck`` with ``ok`` True, False
    or None, is one line naming the plugin (a disk's ``OSError`` is its own line).
    """
    from genzoo.checks import shown
    from genzoo.data import FileCheck
    from genzoo.errors import PluginFault, blamed

    entry = registry().entry("dataset", name)
    who = entry.origin
    with blamed(who, "being built", passes=(OSError,)):
        dataset = entry.obj(root, download=fetch)
    if fetch:
        with blamed(who, "downloading", passes=(OSError,)):
            dataset.fetch()
    with blamed(who, "checking its files", passes=(OSError,)):
        checks = list(dataset.check())
    for check in checks:
        if not isinstance(check, FileCheck) or not any(check.ok is ok for ok in (True, False, None)):
            raise PluginFault(f"{who}: its check() gave {shown(check)}, not a genzoo.FileCheck "
                              "whose ok is True, False or None")
    return checks


@data_group.command("where", params=[data_root_option()])
def data_where(data_root: str | None) -> None:
    """The folders genzoo would read data from, in precedence order, and where downloads come from."""
    from genzoo.data import MIRROR_ENV, data_roots, mirror_url, resolve_data_root
    from genzoo.evaluation.weights import inception_target, inception_url

    used = resolve_data_root(data_root)
    for source, path in data_roots(data_root):
        state = "(none)" if path is None else f"{path}{'  <- used' if path == used else ''}"
        click.echo(f"{source:14} {state}")
    click.echo(f"{'FID weights':14} {inception_target()}  ($TORCH_HOME/hub/checkpoints)")
    mirror = mirror_url()
    source = f"{mirror}  (${MIRROR_ENV})" if mirror else f"upstream (set ${MIRROR_ENV})"
    click.echo(f"{'mirror':14} {source}")
    click.echo(f"{'weights from':14} {inception_url()}")


def _details(kind: str, name: str, obj: Any) -> str:
    if kind == "model":
        can = [capability for capability, ok in obj.capabilities().items() if ok]
        own = [option.opts[0] for option in config_options(name, obj.Config)]
        return "can: " + ", ".join(can) + (f"; options: {', '.join(own)}" if own else "")
    if kind == "loss":
        return f"{obj.kind}: {obj.description}"
    if kind == "logger":
        return str(obj.description)
    if kind == "sampler":  # its docstring's first line and its options (genzoo eval --sampler NAME)
        fields = [field.name for field in dataclasses.fields(obj.Config)]
        summary = first_line(obj.__doc__ or "") or obj.__name__
        return summary + (f"; options: {', '.join(fields)}" if fields else "")
    return f"shape {tuple(obj.sample_shape)}: {obj.description}"


class OutputError(Exception):
    """Standard output could not be written (``> /dev/full``, a closed pipe): only the printing failed."""

    def __init__(self, error: OSError) -> None:
        super().__init__("standard output is closed" if error.errno == errno.EBADF else error.strerror or str(error))
        self.errno = error.errno


class ClosedStdout(io.TextIOBase):
    """What ``sys.stdout`` is when genzoo started with it closed (``genzoo plugins >&-``): every write fails."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")


class SparedStderr(WrappedStream):
    """``sys.stderr`` whose write errors drop the text, so that the work goes on.

    Standard error that cannot be written (``2>/dev/full``, a log on a full disk) ended ``train`` at its first
    progress line, exit 1, with no word anywhere and the epochs after it untrained (twenty-fifth hostile pass, files
    F1). Its lines are progress, warnings and errors, which cannot be said elsewhere: the command goes on and exits
    with its own code, and :attr:`failed` says that the lines were lost.
    """

    failed = False

    def write(self, text: str) -> int:
        try:
            written: int = self.stream.write(text)
            return written
        except (OSError, ValueError):
            self.failed = True
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            self.failed = True


class TaggedStdout(WrappedStream):
    """``sys.stdout`` whose write errors become :class:`OutputError`.

    Every command prints last, after its work is done, so ``main`` can tell a failed
    print from a failed run only if the error says where it came from. A stream closed
    in the process (by plugin code no guard put back) fails as one closed by the shell
    does (``>&-``), not as Python's ``ValueError``: that was a traceback after a finished
    run (twentieth hostile pass, plugins F2).
    """

    def write(self, text: str) -> int:
        try:
            written: int = self.stream.write(text)
            return written
        except OSError as exc:
            raise OutputError(exc) from exc
        except ValueError as exc:
            raise self._closed_error(exc) from exc

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            raise OutputError(exc) from exc
        except ValueError as exc:
            raise self._closed_error(exc) from exc

    def _closed_error(self, exc: ValueError) -> Exception:
        """The error a write that raised ``exc`` ends in: :class:`OutputError` if the stream is closed, else ``exc``."""
        if getattr(self.stream, "closed", False) is True:
            return OutputError(OSError(errno.EBADF, "standard output is closed"))
        return exc


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected failure becomes one line on stderr and a non-zero exit.

    SIGTERM, SIGHUP (a closed terminal) and SIGXCPU (a soft CPU-time limit) are handled as Ctrl-C
    is (training checkpoints and says how to resume); the exit code is the shell's 128 + the
    signal's number: 130, 143, 129 and 152.
    """
    from genzoo.files import close_umask

    close_umask()  # a run folder and its files are never made writable by others
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in _group_options(args)
    watch = ExitWatch() if argv is None else None  # before any plugin code, so that its last exit hook runs last
    if watch is not None and not debug:  # what Python can only print, from code no call of genzoo's returns to
        threading.excepthook, sys.unraisablehook = _thread_failed, _unraisable
    # Unset, as for a shell: torch would make either the current folder (TORCH_HOME= read and downloaded the FID
    # weights in ./hub/checkpoints: twenty-fifth hostile pass, files M5).
    for name in (COMPILE_CACHE_ENV, "TORCH_HOME"):
        if os.environ.get(name) == "":
            del os.environ[name]
    in_main_thread = threading.current_thread() is threading.main_thread()
    stop_at_once = StopAtOnce()
    # SIGINT too where Python's own handler has it (not where the caller ignores it: a shell's background job):
    # the same KeyboardInterrupt, but a copy of it during the unwinding is ignored (twentieth look's review).
    previous = {signum: signal.signal(signum, stop_at_once) for signum in STOP_SIGNALS
                if in_main_thread and handled(signum)
                and (signum != signal.SIGINT or signal.getsignal(signum) is signal.default_int_handler)}
    for stream in (sys.stdout, sys.stderr):  # a path a terminal cannot show is escaped, not a crash
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    real_stdout, sys.stdout = sys.stdout, TaggedStdout(sys.stdout if sys.stdout is not None else ClosedStdout())
    real_stderr, sys.stderr = sys.stderr, (spared := SparedStderr(sys.stderr if sys.stderr is not None
                                                                  else ClosedStdout()))
    try:
        code, finished = _outcome(args, debug)
    except KeyboardInterrupt as exc:
        # A stop signal as the command's end was being handled: the launcher of a --nproc run stopping the other
        # ranks as one failed landed in this rank's report of the lost peer, a traceback (CI of 8107498).
        code, finished = _aborted(exc), False
    finally:
        sys.stdout = real_stdout
        # Python flushes sys.stderr as it exits, and exits 120 when that fails: lost lines are left lost.
        sys.stderr = real_stderr if not spared.failed else open(os.devnull, "w")  # noqa: SIM115 - for the exit
        _put_back(previous)
    if finished:
        try:
            distributed.leave()
        except (Exception, KeyboardInterrupt):  # the command's outcome stands; the process exits either way
            pass
    code = code if isinstance(code, int) else 0
    distributed.say_outcome(code)
    if watch is not None:  # this process's own command line, not a caller's
        # Its outcome is said: a stop signal now (a group's Ctrl-C as a --nproc launch ends) has nothing left to
        # stop but what plugin code left running, and Python's default handler would end the exit in a
        # KeyboardInterrupt traceback. A signal the caller ignores (a shell's background job) stays ignored. A
        # --nproc rank ignores them all (distributed.end) and joins no thread: its hooks and children are watched.
        rank = distributed.joined()
        stops = [stop for stop in STOP_SIGNALS
                 if in_main_thread and not rank and signal.getsignal(stop) is not signal.SIG_IGN]
        watch.start(code, stops, joins_threads=not rank)
    distributed.end(code)


def _group_options(args: list[str]) -> list[str]:
    """The options given to ``genzoo`` itself, before the command's name (none of them takes a value): a model's own
    ``--debug``, or ``--out --debug``, after it turned tracebacks on (twenty-sixth hostile pass, plugins F11)."""
    leading = []
    for arg in args:
        if not arg.startswith("-") or arg == "--":
            break
        leading.append(arg)
    return leading


def _outcome(args: list[str], debug: bool) -> tuple[Any, bool]:
    """Run the command; its exit code, or what it returned, and whether every rank of a distributed run got as
    far as this one (then it leaves the group)."""
    finished = False
    try:
        try:
            code = cli.main(args=args, prog_name="genzoo", standalone_mode=False, obj={"argv": args})
        except ImportError as exc:
            stop = _stop_behind(exc)
            if stop is None:
                raise
            raise stop from None
        sys.stdout.flush()  # an output error surfaces here, not at exit
        finished = True
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # ``genzoo`` alone: its help, as click shows it, not an Error
        exc.show()  # line of 900 characters with ``\n`` in it (twenty-sixth hostile pass, files M2)
        code = exc.exit_code
    except click.ClickException as exc:
        click.echo(f"Error: {click_line(exc)}", err=True)
        code = exc.exit_code
    except StopSignal as exc:
        code = _aborted(exc.interrupt)
    except click.Abort as exc:
        # click turns Ctrl-C (and SIGTERM, see StopAtOnce) into Abort, while it parses the command line.
        code = _aborted(exc.__cause__ if isinstance(exc.__cause__, KeyboardInterrupt) else None)
    except Interrupted as exc:
        _interrupted(exc)
        # The other ranks of a launch end with exit 0, as rank 0's line alone says: one exiting 128+signal first had
        # the launcher stop rank 0, maybe in its checkpoint, and add a line calling it a failure (twenty-fourth, y3).
        code = 128 + exc.signum if distributed.is_main() else 0
        finished = True  # every rank stopped at the same step, after the same checkpoint
    except Stopped as exc:  # the ranks said what they saved, or were cut short before they could say anything
        code = 128 + exc.signum
        if not exc.said:
            click.echo("Aborted.", err=True)
    except OutputError as exc:
        # Exit 1 although the work is done: a caller reading the output must not take a
        # truncated one for a whole one. A closed pipe (``| head``) is a reader that left: no message.
        if exc.errno != errno.EPIPE:
            click.echo(f"Error: could not write to standard output: {exc}; only the printing failed "
                       "(the command's work is done and its files are written)", err=True)
        code = distributed.OUTPUT_FAILED if distributed.joined() else 1  # a rank: its launcher says no more
    except distributed.PrintingFailed:  # a rank's printing failed, and it said so
        code = 1
    except distributed.StoppedByAnother:  # that rank says why and fails the launch; the launcher names it
        code = 0
    except GenzooError as exc:
        if distributed.peer_lost(exc):  # another rank is gone, its collective failed here: the launcher names it
            code = 0
        elif debug:
            raise
        else:
            click.echo(f"Error: {one_line(str(exc) if can_show(exc) else describe(exc))}", err=True)
            code = 1
    except (RuntimeError, MemoryError) as exc:
        if distributed.peer_lost(exc):  # a collective of genzoo's own, outside any plugin call
            code = 0
        elif out_of_memory(exc) and not debug:  # in genzoo's own code (a copy of the weights, a checkpoint's read):
            click.echo(f"Error: {memory_line(exc)}", err=True)  # a traceback (twenty-fourth hostile pass, files F2)
            code = 1
        else:
            raise
    except OSError as exc:  # a full disk or a folder we may not write: no traceback either
        if debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"Error: {escaped(f'{exc.strerror or exc}{where}')}", err=True)
        code = 1
    except KeyboardInterrupt as exc:
        code = _aborted(exc)
    return code, finished


def _stop_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The stop signal's exception that ``exc`` was raised from, if any: a C extension's initialisation (matplotlib's
    ``ft2font``, imported when a command first draws) turns what its Python callbacks raise into ``ImportError:
    initialization failed``, and a SIGTERM at that instant was a traceback and exit 1 (twenty-sixth hostile pass,
    files F2)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _put_back(previous: dict[signal.Signals, Any]) -> None:
    """Give the stop signals back their handlers from before the command (a --nproc rank: ignore them).

    ``signal.signal`` runs a pending signal's handler before it changes one, so a stop that came as the command
    ended is raised here: its outcome is decided and said, and the stop is dropped. A --nproc rank ignores them
    from here, not only from distributed.end: a Ctrl-C in between was a KeyboardInterrupt traceback (twenty-fifth
    look).
    """
    pairs = ({signum: signal.SIG_IGN for signum in previous} if distributed.joined() else previous)
    for signum, handler in pairs.items():
        while True:
            try:
                signal.signal(signum, handler)
                break
            except KeyboardInterrupt:
                continue
    distributed.ignore_stops()


#: Seconds, in all, the ``genzoo`` process gives to what plugin code left running as it exits (threads, a pool's
#: workers, ``multiprocessing`` children, ``atexit`` hooks: Python waits for each of them, for ever).
THREAD_WAIT_S = 5.0


class ExitWatch:
    """Bounds the exit of a ``genzoo`` process whose command is done and said, to :data:`THREAD_WAIT_S`.

    Python's own exit runs as it always did (``concurrent.futures`` wakes its idle pool workers, inductor's and
    genzoo's, ``multiprocessing`` joins and so reaps its children, the ``atexit`` hooks run, files are flushed), so
    a normal exit is not slowed; a daemon thread ends the process with the command's code if that exit is not over
    :data:`THREAD_WAIT_S` later, in one line naming what was left, and a stop signal ends the wait at once. The
    twentieth pass's fix waited only for plain threads: a logger's pool upload that never ended, a non-daemon
    child, a blocking ``atexit`` flush each kept the finished command from exiting, and Ctrl-C then printed a
    traceback from the interpreter's exit (twenty-first hostile pass, plugins F9).

    Made before any plugin code runs: its last ``atexit`` hook then runs after every other, and ignores the stop
    signals from there on. The interpreter's teardown puts a Python handler of a signal back to the system's
    default, so a Ctrl-C in its last instants killed the finished process (exit -2, no word) where an ignored one
    stays ignored (review of plugins F9's fix).
    """

    def __init__(self) -> None:
        import atexit

        self.code = 0
        self.stops: list[signal.Signals] = []
        self.joins_threads = True  # False for a --nproc rank, which skips the joins (distributed.end)
        self.in_hooks = False  # whether the atexit hooks run: every thread was joined before them
        self.watching = False  # whether the deadline runs: only then is there a wait for children
        self.ending = threading.Lock()  # the deadline and a stop signal at once: one line, one exit
        atexit.register(self._hooks_end)  # the hooks run last registered first: this one last

    def start(self, code: int, stops: list[signal.Signals], joins_threads: bool = True) -> None:
        """Watch the exit of a command that ends with ``code`` from now on; ``stops``: the stop signals that end
        the wait at once."""
        import atexit

        self.code, self.stops, self.joins_threads = code, stops, joins_threads
        atexit.register(self._hooks_begin)  # the hooks run last registered first: this one first
        for stop in stops:
            signal.signal(stop, self._stopped)
        threading.Thread(target=self._watch, name="genzoo-exit-watch", daemon=True).start()
        self.watching = True

    def _hooks_begin(self) -> None:
        self.in_hooks = True

    def _hooks_end(self) -> None:
        """Every other exit hook has run: wait (within the watch's time) for the children started outside
        ``multiprocessing`` that hold genzoo's output open, whose reader would wait for them after genzoo exits
        (twenty-second hostile pass, plugins F2); then nothing plugin code started is left to stop."""
        import time

        while self.watching and process_tree.output_holders():
            time.sleep(0.05)
        for stop in self.stops:
            signal.signal(stop, signal.SIG_IGN)

    def _watch(self) -> None:
        import time

        time.sleep(THREAD_WAIT_S)  # a daemon thread: the interpreter ends it if the exit is over by then
        main = threading.main_thread().ident
        self._end(sys._current_frames().get(main) if main is not None else None,
                  f"{THREAD_WAIT_S:g} s after the command")

    def _stopped(self, signum: int, frame: FrameType | None) -> None:
        """A stop signal while the exit runs: nothing to stop if nothing plugin code started is left."""
        if self.left(frame, process_tree.multiprocessing_children(), process_tree.output_holders()):
            self._end(frame, "when genzoo was stopped")

    def left(self, frame: FrameType | None, children: list[Any], holders: list[process_tree.Child]) -> list[str]:
        """What keeps the exit from ending, as the warning names it; ``frame``: where the main thread is;
        ``children`` and ``holders``: the ``multiprocessing`` children and the output's holders running now."""
        threads = [repr(thread.name) for thread in threading.enumerate()
                   if self.joins_threads and thread is not threading.main_thread() and not thread.daemon]
        # A daemon child (a DataLoader's worker) never holds the exit: multiprocessing terminates those.
        named = [f"{child.name!r}, pid {child.pid}" for child in children if not child.daemon]
        named += [f"{child.name!r}, pid {child.pid}, holding genzoo's output open" for child in holders]
        left = [f"{_count(len(threads), 'thread')} started by plugin code ({listed(threads)})"] if threads else []
        if named:
            left.append(f"{_count(len(named), 'child process', 'child processes')} started by plugin code "
                        f"({listed(named, '; ')})")
        elif self.in_hooks:  # multiprocessing's own hook joins the children: a hook blocks only if none is left
            hook = _outermost(frame)
            left.append(f"an exit hook registered by plugin code{f' ({hook})' if hook else ''}")
        return left

    def _end(self, frame: FrameType | None, when: str) -> None:
        """Exit now with the command's code, saying what was left ``when``. Its child processes are killed: each
        holds genzoo's output open (a pipe's reader would wait for it), and a forked one keeps genzoo's handler
        of SIGTERM; a child started otherwise is killed if it holds that output (one that let go of it, a
        service started to outlive genzoo, is left alone)."""
        if not self.ending.acquire(blocking=False):
            return
        children, holders = process_tree.multiprocessing_children(), process_tree.output_holders()
        where = _outermost(frame)  # nothing named is left: the exit itself is held up (a finalizer that blocks)
        left = self.left(frame, children, holders) or [f"the interpreter's exit{f' (in {where})' if where else ''}"]
        ended = ", and ends its child processes" if holders or any(not child.daemon for child in children) else ""
        warn(f"{' and '.join(left)} still running {when}; genzoo exits without waiting for them{ended}")
        for child in children:
            child.kill()
        for holder in holders:
            with suppress(OSError):  # ended meanwhile
                os.kill(holder.pid, signal.SIGKILL)
        distributed.flush_streams()
        os._exit(self.code)


def _thread_failed(args: Any) -> None:
    """A thread's uncaught exception (a logger's upload thread), which Python prints as a traceback: one warning
    line, the command going on without that thread (twenty-second hostile pass, plugins F1)."""
    if args.exc_type is SystemExit:  # ends the thread without a word, as Python's own hook has it
        return
    name = args.thread.name if args.thread is not None else "?"
    warn(f"thread {name!r} raised {_what(args.exc_type, args.exc_value)}; the command goes on without it")


def _unraisable(unraisable: Any) -> None:
    """An exception Python can only report (an ``atexit`` hook's, a ``__del__``'s), as a traceback: one warning
    line naming where, in Python's own words (twenty-second hostile pass, plugins F1)."""
    try:
        where = _named_object(unraisable.object)
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS:  # a hostile object's attributes: the line still says what was raised
        where = "an object"
    said = unraisable.err_msg or "Exception ignored in"
    warn(f"{said[:1].lower()}{said[1:]} {where}: {_what(unraisable.exc_type, unraisable.exc_value)}; it is ignored")


def _named_object(obj: Any) -> str:
    """A function as module.name, anything else by its type's name (never its repr: a plugin's may raise)."""
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"
    return f"a {type(obj).__name__}"


def _what(kind: type[BaseException], value: BaseException | None) -> str:
    """``Type: message`` of an exception Python hands to a hook (its value may be missing)."""
    return describe(value) if value is not None else kind.__name__


def _count(n: int, noun: str, plural: str = "") -> str:
    """``1 thread``, ``2 threads``: the warning counts what it names."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _outermost(frame: FrameType | None) -> str | None:
    """The function at the bottom of a stack (in the exit, the ``atexit`` hook that runs), as module.name; in a
    ``--nproc`` rank, whose hooks :func:`distributed.end` runs, the one it called."""
    if frame is None:
        return None
    while frame.f_back is not None and frame.f_back.f_code is not distributed.end.__code__:
        frame = frame.f_back
    name = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)  # co_qualname: Python 3.11 on
    return f"{frame.f_globals.get('__name__', '?')}.{name}"


def click_line(exc: click.ClickException) -> str:
    """click's message as one line: the lists it lays out one item a line, each after a tab (``Missing option
    '--format'. Choose from:\\n\\tsafetensors``), laid out on the line, and a value typed with a control
    character escaped (:func:`escaped`): the list's newline and tab were written out as ``\\n\\t``
    (nineteenth hostile pass, files M2)."""
    return escaped(exc.format_message().replace("\n\t", " "))


def _interrupted(exc: Interrupted) -> None:
    """The ``Interrupted:`` line, rank 0's alone; a rank of a compare gives the compare's command to continue."""
    if not distributed.is_main():
        return
    resume = os.environ.get(distributed.RESUME_ENV)
    click.echo(f"Interrupted: {escaped(str(Interrupted(exc.checkpoint, exc.signum, resume) if resume else exc))}",
               err=True)


def _aborted(interrupt: KeyboardInterrupt | None) -> int:
    """``Aborted.``; after a signal, exit with the shell's 128 + its number (Ctrl-C 130, SIGTERM 143)."""
    if says_aborted():
        click.echo("Aborted.", err=True)
    if interrupt is None:
        return 1
    return 128 + getattr(interrupt, "signum", signal.SIGINT)
