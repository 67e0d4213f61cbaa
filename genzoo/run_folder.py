"""A run folder: making it, locking it, and writing and reading its ``config.json`` and ``metrics.jsonl``.

Run files can be torn by a crash, edited by hand or swapped by a stranger: every
reader of a run (``eval``, ``resume``, ``compare --from-runs``, ``load_model``)
goes through here, so a file of the wrong shape is one :class:`GenzooError` line
naming it, never a ``KeyError`` deep inside, and a FIFO is refused, not waited on.
The checkpoint (:mod:`genzoo.checkpoint`) and the pictures live in the folder too.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import stat
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Sequence

from genzoo.checkpoint import FILENAME as CHECKPOINT
from genzoo.checks import is_count, is_lower_hex, is_number, printable, shown
from genzoo.errors import GenzooError, warn
from genzoo.files import (
    MAX_JSON_BYTES,
    atomic_write,
    atomic_write_json,
    missing_folders,
    open_to_others,
    others_can_change,
    own_copy,
    parse_json,
    passed_on_to_others,
    plain_path,
    read_json,
    read_regular,
    remove_made,
)
from genzoo.process_settings import working_directory
from genzoo.train_config import ADDED_LATER, TrainConfig

#: The training settings a run's ``config.json`` must name; the others have defaults.
REQUIRED_TRAINING = ("model", "epochs", "batch_size", "seed")
_COUNTS = ("epochs", "batch_size", "eval_batch_size")
_OPTIONAL_COUNTS = ("train_limit", "test_limit", "checkpoint_every")
_TEXTS = ("model", "dataset", "device")


@dataclass(frozen=True)
class RunDescription:
    """A run's ``config.json``, checked: what ``eval``, ``resume`` and ``compare`` rely on.

    ``raw`` is the whole JSON object, which also records versions and the device the
    run started on; the other fields are the validated parts.
    """

    model: str
    model_config: dict[str, Any]
    train_config: TrainConfig
    sample_shape: tuple[int, ...]
    raw: dict[str, Any]
    #: sha256 of the ``train`` and ``test`` pixels it trained on; None for runs from before it was recorded.
    data_sha256: dict[str, str] | None = None
    #: The loggers it streams to (``genzoo train --log``), again on resume; none for runs from before.
    loggers: tuple[str, ...] = ()
    #: A random name the run is given when it starts (32 hex digits), which what it writes beside its checkpoint
    #: (the FID curve) records: a file copied from another run of the same settings and data is told apart.
    #: None for runs from before it was recorded.
    run_id: str | None = None
    #: For its ``model``, ``dataset``, model's default ``sampler`` and each loss its model config names (keyed
    #: ``loss.FIELD``, :meth:`genzoo.ModelConfig.loss_fields`): the plugin name, the distribution that provided it and
    #: its version, as ``{"model": {"name": ..., "distribution": ..., "version": ...}, ...}``; empty for runs from
    #: before, and no sampler or losses for runs from before those were recorded (:func:`plugin_kind` reads a key).
    plugins: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    #: The model's ``loss_names`` when it started, in order (the first is the objective); None for runs from before.
    loss_names: tuple[str, ...] | None = None

    @classmethod
    def from_json(cls, value: Any, path: Path) -> "RunDescription":
        """Check ``value`` (from ``path``) field by field; the first problem is the error."""
        def bad(what: str) -> GenzooError:
            return GenzooError(f"{path} is not a genzoo run configuration: {what}")

        if not isinstance(value, dict):
            raise bad(f"a JSON {type(value).__name__}, not an object")
        for key in ("model", "model_config", "train_config", "sample_shape"):
            if key not in value:
                raise bad(f"no {key}")
        model, model_config, training, shape = (value[k] for k in ("model", "model_config", "train_config",
                                                                   "sample_shape"))
        if not isinstance(model, str) or not model:
            raise bad(f"model is {shown(model)}, not a model name")
        if not isinstance(model_config, dict):
            raise bad(f"model_config is {shown(model_config)}, not an object")
        if not isinstance(shape, list) or not shape or not all(is_count(n) for n in shape):
            raise bad(f"sample_shape is {shown(shape)}, not a list of positive integers")
        data = value.get("data_sha256")
        if data is not None and not is_data_sha256(data):
            raise bad(f"data_sha256 is {shown(data)}, not the sha256 of its train and test data")
        loggers = value.get("loggers", [])
        if not isinstance(loggers, list) or not all(isinstance(name, str) and name for name in loggers):
            raise bad(f"loggers is {shown(loggers)}, not a list of logger names")
        run_id = value.get("run_id")
        if run_id is not None and not is_run_id(run_id):
            raise bad(f"run_id is {shown(run_id)}, not 32 lower-case hexadecimal digits")
        plugins = value.get("plugins", {})
        if not (isinstance(plugins, dict) and all(
                isinstance(entry, dict) and set(entry) == {"name", "distribution", "version"}
                and all(isinstance(v, str) for v in entry.values()) for entry in plugins.values())):
            raise bad(f"plugins is {shown(plugins)}, not the name, distribution and version of each plugin it was "
                      "built from")
        names = value.get("loss_names")
        if names is not None and not (isinstance(names, list) and names
                                      and all(isinstance(name, str) and name for name in names)):
            raise bad(f"loss_names is {shown(names)}, not the list of its model's loss names")
        train_config = parse_train_config(training, model, bad)
        if "plugins" in value:
            problem = _plugins_problem(plugins, model, train_config.dataset, model_config)
            if problem is not None:
                raise bad(f"plugins is {shown(plugins)}, not the distribution and version of {problem}")
        return cls(model, model_config, train_config, tuple(shape), value, data, tuple(loggers), run_id, plugins,
                   None if names is None else tuple(names))


def plugin_kind(key: str) -> str:
    """The registry's kind of the plugin a ``plugins`` entry records: ``loss`` for ``loss.FIELD``, else the key."""
    return key.split(".", 1)[0]


def _plugins_problem(plugins: dict[str, dict[str, str]], model: str, dataset: str,
                     model_config: dict[str, Any]) -> str | None:
    """What a run's ``plugins`` record should be of, where it is not held to the run's own names; None where it is.

    An entry of another plugin was the one checked (twenty-first pass, files M1), so the model's and dataset's
    entries must be there and name them, and a loss entry must name the loss its ``model_config`` field does. A
    sampler entry names the model's default sampler, which only the model class knows: it is checked as recorded.
    """
    named = {"model": model, "dataset": dataset}
    if not set(named) <= set(plugins) or any(plugins[kind]["name"] != name for kind, name in named.items()):
        return f"its model {model!r} and dataset {dataset!r}"
    losses = {key: key.partition(".")[2] for key in plugins if plugin_kind(key) == "loss"}
    if any(plugins[key]["name"] != model_config.get(field) for key, field in losses.items()) \
            or set(plugins) - set(named) - set(losses) - {"sampler"}:
        return "its model, dataset, default sampler and the losses its model_config names"
    return None


def is_run_id(value: Any) -> bool:
    """A run's ``run_id``, as :func:`new_run_id` makes it."""
    return is_lower_hex(value, 32)


def new_run_id() -> str:
    """A fresh ``run_id``: from the system's randomness, so no seeded stream of the run moves."""
    return uuid.uuid4().hex


def is_sha256(value: Any) -> bool:
    """A sha256 as genzoo records it (64 lower-case hexadecimal digits)."""
    return is_lower_hex(value, 64)


def is_data_sha256(value: Any) -> bool:
    """A run's ``data_sha256`` as genzoo records it: the sha256 of its ``train`` and of its ``test`` data."""
    return isinstance(value, dict) and set(value) == {"train", "test"} and all(map(is_sha256, value.values()))


def parse_train_config(values: Any, model: str, bad: Callable[[str], Exception]) -> TrainConfig:
    """``train_config`` (as JSON gave it) checked against ``TrainConfig``'s fields, types and ranges.

    The first problem is raised as ``bad(why)``.
    """
    if not isinstance(values, dict):
        raise bad(f"train_config is {shown(values)}, not an object")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise bad(f"unknown training setting(s) {', '.join(map(repr, unknown))}")
    missing = [key for key in REQUIRED_TRAINING if key not in values]
    if missing:
        raise bad(f"train_config has no {', '.join(missing)}")
    for key in _TEXTS:
        if key in values and not isinstance(values[key], str):
            raise bad(f"train_config {key} is {shown(values[key])}, not a string")
    for key in _COUNTS:
        if key in values and not is_count(values[key]):
            raise bad(f"train_config {key} is {shown(values[key])}, not a positive integer")
    for key in _OPTIONAL_COUNTS:
        if values.get(key) is not None and not is_count(values[key]):
            raise bad(f"train_config {key} is {shown(values[key])}, not a positive integer or null")
    if not is_count(values["seed"], minimum=0):
        raise bad(f"train_config seed is {shown(values['seed'])}, not a non-negative integer")
    if values.get("data_root") is not None and not isinstance(values["data_root"], str):
        raise bad(f"train_config data_root is {shown(values['data_root'])}, not a path or null")
    if values["model"] != model:
        raise bad(f"train_config is for model {shown(values['model'])}, but the run is of {shown(model)}")
    try:
        return TrainConfig(**{**ADDED_LATER, **values})
    except GenzooError as exc:
        raise bad(str(exc)) from None


def read_run(run_dir: Path) -> RunDescription:
    """The run in ``run_dir``, validated; one line naming ``config.json`` if it is wrong."""
    path = Path(run_dir) / CONFIG
    try:
        value = read_json(path)
    except (FileNotFoundError, NotADirectoryError):
        raise GenzooError(f"{run_dir} is not a genzoo run folder (no {CONFIG})") from None
    return RunDescription.from_json(value, path)


def check_record(value: Any) -> str | None:
    """Why ``value`` is not a metric line (None when it is one).

    A line is an object with ``epoch`` (from 1) and ``step`` (the global step at the
    epoch's end), ``run`` (the ``run_id`` of the run that wrote it; lines from before lack it),
    every other field a finite number, or null (a rate without time).
    """
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    if not is_count(value.get("epoch")):
        return f"epoch is {shown(value.get('epoch'))}, not a positive integer"
    if not is_count(value.get("step"), minimum=0):
        return f"step is {shown(value.get('step'))}, not a non-negative integer"
    if RUN in value and not is_run_id(value[RUN]):
        return f"run is {shown(value[RUN])}, not 32 lower-case hexadecimal digits"
    for key, field in value.items():
        if key not in ("epoch", "step", RUN) and field is not None and not is_number(field):
            return f"{shown(key)} is {shown(field)}, not a finite number"
    return None


def read_metrics(run_dir: Path, run_id: str | None = None, *, refuse_others: str | None = None
                 ) -> list[dict[str, Any]]:
    """This run's metric lines of ``run_dir``, checked, as they were before lines named their run (no ``run``).

    ``run_id`` is the run's (its ``config.json`` is read for it when not given; a run from
    before runs were named has none, and then every line is taken, as before). A line naming
    another run was written by that run: its ``metrics.jsonl`` copied in (twentieth hostile
    pass, F2). Such lines are left out with a warning, as lost (:func:`lost_metrics` says what
    that costs), as compare leaves out another run's FID curve; a caller that would write
    after them (resume) gives ``refuse_others``, what to do instead, and they are refused.
    """
    return [{key: value for key, value in record.items() if key != RUN}
            for record in metric_lines(run_dir, run_id, refuse_others=refuse_others)]


def metric_lines(run_dir: Path, run_id: str | None = None, *, refuse_others: str | None = None
                 ) -> list[dict[str, Any]]:
    """:func:`read_metrics`, each line as written (``run`` kept): what a copy or a rewrite of the file writes."""
    run_id = run_id if run_id is not None else _recorded_run_id(Path(run_dir))
    numbered = _numbered_lines(run_dir)
    others = [(number, record) for number, record in numbered if record.get(RUN, run_id) != run_id]
    if run_id is None or not others:  # a line naming no run is from before lines named their run
        return [record for _, record in numbered]
    number, record = others[0]
    problem = (f"{Path(run_dir) / METRICS} line {number} was written by run {shown(record[RUN])}, not by this "
               f"run ({run_id}): it is not this run's")
    if refuse_others is not None:
        raise GenzooError(f"{problem}; {refuse_others}")
    epochs = tuple(record["epoch"] for _, record in others)
    if (str(run_dir), epochs) not in _left_out:  # one warning per file, though eval reads it twice
        _left_out.add((str(run_dir), epochs))
        warn(f"{problem}; the lines of other runs (epochs {_listed(epochs)}) are left out, as lost")
    left_out = {number for number, _ in others}
    return [record for number, record in numbered if number not in left_out]


#: The run folders whose metric lines of other runs were left out with a warning in this process, and their epochs.
_left_out: set[tuple[str, tuple[int, ...]]] = set()


def _recorded_run_id(run_dir: Path) -> str | None:
    """The ``run_id`` of ``run_dir``'s ``config.json``; None for a folder without one, or a run from before."""
    if not os.path.lexists(run_dir / CONFIG):
        return None
    return read_run(run_dir).run_id


def _listed(epochs: Sequence[int]) -> str:
    """Sorted epochs as ``1-3, 5``."""
    spans: list[list[int]] = []
    for epoch in sorted(epochs):
        if spans and epoch == spans[-1][1] + 1:
            spans[-1][1] = epoch
        else:
            spans.append([epoch, epoch])
    return ", ".join(f"{a}-{b}" if b > a + 1 else f"{a}, {b}" if b > a else f"{a}" for a, b in spans)


def _numbered_lines(run_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    """Every metric line of ``run_dir`` with its line number, checked; none when there is no ``metrics.jsonl``.

    A last line without its newline is what a crash mid-append leaves: it is ignored
    (resume rewrites the file without it). Any other line that is not a metric
    record, and epochs out of order or listed twice, are corruption: an error naming
    the line, never silently skipped.
    """
    path = Path(run_dir) / METRICS
    try:
        data = read_regular(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    lines = data.split(b"\n")
    torn = lines.pop()  # b"" when the file ends with a newline, as every whole append does
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = parse_json(line)
            problem = check_record(value)
        except ValueError as exc:
            value, problem = None, str(exc)
        if problem is None and records and value["epoch"] <= records[-1][1]["epoch"]:
            problem = f"epoch {value['epoch']} comes after epoch {records[-1][1]['epoch']}"
        if problem is not None:
            raise GenzooError(f"{path} line {number} is corrupt ({problem}); a crash only ever tears the "
                              "last line, so this file was changed by something else")
        records.append((number, value))
    if torn.strip():
        try:
            value = parse_json(torn)
        except ValueError:
            value = None
        if check_record(value) is None and (not records or value["epoch"] > records[-1][1]["epoch"]):
            records.append((len(lines) + 1, value))  # whole, only its newline missing (written by hand)
    return records


def lost_metrics(run_dir: Path, records: list[dict[str, Any]], done: int) -> str | None:
    """What is lost when a checkpoint says ``done`` epochs are finished but lines are missing.

    The checkpoint is the record of training (it holds the weights); ``metrics.jsonl``
    is its log. Lines that are gone cannot be recomputed, so ``eval`` and ``resume``
    both carry on from the checkpoint and say so, rather than one calling the run
    unfinished and the other complete.
    """
    spans = _gaps(sorted({r["epoch"] for r in records if r["epoch"] <= done}), done)
    if not spans:
        return None
    epochs = "epochs" if any(mark in spans for mark in ",-") else "epoch"
    return (f"{Path(run_dir) / METRICS} has lost the lines of {epochs} {spans}; the checkpoint holds "
            f"epoch {done}, so genzoo goes on from it, without those epochs' training metrics")


def _gaps(listed: list[int], done: int) -> str:
    """The epochs 1 to ``done`` not in ``listed`` (sorted), as ``1-3, 5``: found between the listed ones, never
    by listing every epoch (``done`` is read from a file)."""
    spans = []
    for start, end in zip([0, *listed], [*listed, done + 1]):
        if end - start > 1:
            spans.append(f"{start + 1}-{end - 1}" if end - start > 2 else f"{start + 1}")
    return ", ".join(spans)


CONFIG = "config.json"
METRICS = "metrics.jsonl"
#: The field of a metric line (and of an FID-curve line) naming the run that wrote it: its ``run_id``.
RUN = "run"
#: What to do with another run's metric lines instead of resuming after them (:func:`metric_lines`).
RESUME_OTHERS = (f"put back this run's own {METRICS}, or move this one away to resume without the metric lines "
                 "so far")
#: The files of a run folder genzoo reads back (besides ``checkpoint.pt``), which a logger's code must leave alone.
KEPT_FROM_LOGGERS = (CONFIG, METRICS, "fid_curve.jsonl")


class RunFilesPutBack(GenzooError):
    """Plugin code wrote one of genzoo's own run files, which :func:`own_files_kept` put back."""


def _kept_bytes(path: Path) -> bytes | None:
    """``path``'s bytes, None when it is missing, ``b""`` when it is no regular file or cannot be read."""
    try:
        return read_regular(path)
    except FileNotFoundError:
        return None
    except (GenzooError, OSError):
        return b""


@contextmanager
def own_files_kept(run_dir: Path, who: str, what: str) -> Iterator[None]:
    """The run's own files of :data:`KEPT_FROM_LOGGERS` as they were before the block, put back if its code changed
    them, then :class:`RunFilesPutBack` naming ``who`` (doing ``what``).

    A logger that appended its own line to ``metrics.jsonl``, or wrote a ``config.json`` of its own, trained to the
    end with exit 0 and left a run that ``eval`` and ``resume`` refused for ever (twentieth hostile pass, plugins F8).
    These files are small (a line per epoch), so each is read before and after the call.
    """
    before = {name: _kept_bytes(run_dir / name) for name in KEPT_FROM_LOGGERS}
    checkpoint = _CheckpointKept(run_dir)
    try:
        yield
    finally:  # a call that raised after writing is put back too (and then fails as it would)
        changed = _put_back(run_dir, before) + checkpoint.put_back()
    if changed:
        raise RunFilesPutBack(f"{who} changed genzoo's own {', '.join(printable(str(run_dir / n)) for n in changed)} "
                              f"while {what}; {'it is' if len(changed) == 1 else 'they are'} put back (the Logger "
                              "contract: a logger writes its files only in a folder of its own, Logger.folder(NAME))")


class _CheckpointKept:
    """The run's ``checkpoint.pt`` kept, as a hidden copy in the run folder, for :func:`own_files_kept`: a logger
    that deleted it (an "upload, then free the disk" cleanup in ``close()``) or wrote a file of its own by that name
    left a run that had trained to the end, exit 0, with no weights: ``eval`` and ``resume`` refused it for ever
    (twenty-fourth hostile pass, plugins F3). A copy, not a link: a write in place changes every link to the file.
    It costs a copy of the checkpoint per logger call (a conv-vae's 270 MB: about a tenth of a second on this
    machine's disk, once an epoch per logger), and nothing for a run without loggers."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / CHECKPOINT
        self.before = _signature(self.path)
        self.copy: str | None = None
        if self.before is not None:
            fd, self.copy = tempfile.mkstemp(prefix=f".{CHECKPOINT}.", suffix=".tmp", dir=run_dir)
            os.close(fd)
            try:
                shutil.copyfile(self.path, self.copy)
            except OSError as exc:  # a full disk: genzoo's, not the logger's, and the next checkpoint would fail too
                os.unlink(self.copy)
                raise GenzooError(f"could not keep a copy of {printable(str(self.path))} while a logger runs: "
                                  f"{exc.strerror or exc}") from exc

    def put_back(self) -> list[str]:
        """``[checkpoint.pt]`` if the call changed it (put back as it was), else ``[]``; the copy removed."""
        changed = _signature(self.path) != self.before
        if changed:
            check_in_place(self.path.parent)
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path)
            if self.copy is None:
                self.path.unlink(missing_ok=True)
            else:
                os.replace(self.copy, self.path)
        elif self.copy is not None:
            os.unlink(self.copy)
        return [CHECKPOINT] if changed else []


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    """What tells a file from the same file changed or replaced (device, inode, size, modification time); None: no
    such file."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def _put_back(run_dir: Path, before: dict[str, bytes | None]) -> list[str]:
    """The names of ``before`` whose file in ``run_dir`` changed, each put back as it was.

    Only into the run folder itself: one moved away meanwhile is the move's line (:func:`check_in_place`),
    never files written into the folder put in its place.
    """
    changed = [name for name in before if _kept_bytes(run_dir / name) != before[name]]
    if changed:
        check_in_place(run_dir)
    for name in changed:
        path, kept = run_dir / name, before[name]
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        if kept is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, lambda f, data=kept: f.write(data))  # type: ignore[misc]
    return changed


def run_labels(runs: Sequence[tuple[str, Path]]) -> list[str]:
    """One label per (model, run folder), each told from the others: ``MODEL (FOLDER)`` with the folder's name,
    then with its parent's too where two share one (``vae (a/run)``, ``vae (b/run)``), then numbered (``#1``,
    ``#2``) where it is the same folder twice. ``compare`` keys a reused run's results by it, and ``genzoo latent``
    titles its panels with it (eighteenth hostile pass, M1: two panels titled ``(run)``)."""
    labels = [f"{model} ({printable(run.name)})" for model, run in runs]
    labels = [f"{model} ({printable(run.parent.name + '/' + run.name)})" if labels.count(label) > 1 else label
              for (model, run), label in zip(runs, labels)]
    seen: dict[str, int] = {}
    distinct = []
    for label in labels:
        if labels.count(label) > 1:
            seen[label] = seen.get(label, 0) + 1
            label = f"{label} #{seen[label]}"
        distinct.append(label)
    return distinct


def refuse_used_folder(path: Path, what: str = "run folder") -> None:
    """Refuse an ``--out`` that holds files, so nothing written before is ever overwritten.

    Commands that compute first and make their folder last call it before the work too. ``what`` names the
    folder in the lines that refuse it: ``export`` and ``latent`` make no run folder (eighteenth hostile pass, M3).
    """
    refuse_others_folder(path, what)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise GenzooError(f"{path} already exists and is not an empty folder; "
                          "choose another --out (genzoo never overwrites earlier results)")


def refuse_others_folder(path: Path, what: str = "run folder") -> None:
    """Refuse a run folder (made or not yet) that another user could change: in one they own, or one they can
    write (no sticky bit), they can delete or swap the run's files, and genzoo would resume or score theirs."""
    problem = others_can_change(path)
    broken = _broken_link(path) if problem is not None else None  # a link loop: said as mkdir would
    if broken:
        raise GenzooError(f"cannot create {what} {path}: {broken}")
    if problem is not None:
        raise GenzooError(f"{what} {path}: what genzoo writes there {problem}, so another user could delete "
                          "or replace the run's files; choose a folder only you can write (--out)")


def new_run_dir(model: str, out: str | os.PathLike[str] | None = None, base: Path = Path("runs"),
                what: str = "run folder") -> Path:
    """Create a fresh run folder; never reuse one that already holds files.

    With ``out`` the user names the folder (it may exist only if empty; its ``..`` taken first, :func:`plain_path`);
    otherwise it is ``runs/<model>-<timestamp>``, with a numeric suffix if that name is taken.
    ``what`` names the folder in the lines that refuse it (an export folder, a picture folder).
    """
    if out is not None:
        path = plain_path(out)
        refuse_used_folder(path, what)
        _make(path, exist_ok=True, what=what)
        return path
    refuse_others_folder(base, what)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in range(1000):
        path = base / (f"{model}-{stamp}" + (f"-{suffix}" if suffix else ""))
        try:
            _make(path, exist_ok=False, what=what)
            return path
        except FileExistsError:
            continue
    raise GenzooError(f"could not find a free {what} name under {base}")


def _make(path: Path, exist_ok: bool, what: str) -> None:
    """Make ``path`` and its missing parents; one that cannot be made leaves none of them behind (a name too long
    for a folder left the empty ``runs/`` or the parents of ``--out``: eighteenth hostile pass, M5)."""
    made = missing_folders(path)
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except OSError as exc:
        broken = _broken_link(path)  # mkdir says only "File exists" or "Too many levels ..."
        if broken:
            raise GenzooError(f"cannot create {what} {path}: {broken}") from None
        if isinstance(exc, FileExistsError):
            raise
        remove_made([folder for folder in made if os.path.isdir(folder)])
        raise GenzooError(f"cannot create {what} {path}: {exc.strerror or exc}") from exc
    _refuse_opened(path, made, what)
    if not os.access(path, os.W_OK):
        raise GenzooError(f"{what} {path} is not writable")


def _refuse_opened(path: Path, made: list[Path], what: str) -> None:
    """Remove the folders just made for ``path`` and refuse it if others can write one of them: a parent's
    default ACL (or a umask of 000, outside the command line) passes write on to what ``mkdir`` makes."""
    for folder in reversed(made):
        try:
            why = open_to_others(folder, os.lstat(folder)) or passed_on_to_others(folder)
        except OSError:
            continue
        if why is None:
            continue
        remove_made(made)
        raise GenzooError(f"{what} {path}: {folder}, just made, is one others can write ({why}; its parent's "
                          "default ACL or the umask passed it on), so another user could delete or replace the "
                          "run's files; choose a folder only you can write (--out)")


def _broken_link(path: Path) -> str | None:
    """Say which of ``path`` and its parents is a symbolic link that leads nowhere, if one is."""
    for part in reversed((path, *path.parents)):
        if not os.path.islink(part):  # a part too long to be a name is none (Path.is_symlink raised for it)
            continue
        try:
            os.stat(part)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return f"{part} is a symbolic link loop"
            return f"{part} is a symbolic link to {os.readlink(part)}, which does not exist"
    return None


def staged_run_dir(model: str, out: str | os.PathLike[str] | None, kind: str, write: Callable[[Path], None],
                   base: Path = Path("runs"), *, what: str) -> Path:
    """A new folder (made as :func:`new_run_dir` makes it, ``what`` naming it) filled by ``write`` all at once; its
    path.

    ``write`` fills a temporary folder beside it, renamed onto the empty folder when all is written, so a
    failure (a full disk, Ctrl-C, SIGTERM) leaves neither a half-written folder, which the same command
    would then refuse, nor a folder made here: the temporary and those folders are removed.
    """
    out = plain_path(out) if out is not None else None
    wanted = out if out is not None else base
    created = missing_folders(wanted)
    target = new_run_dir(model, out, base, what)  # checked and made here; stays empty until the rename
    if out is None:
        created.insert(0, target)
    place = Path(os.path.realpath(target))  # a link to an empty folder: the folder it names is filled
    # The temporary's name adds 11 bytes and the kind to the folder's: a name near the 255-byte limit gets a short one.
    prefix = f".{place.name}.{kind}-" if len(os.fsencode(place.name)) <= 200 else f".genzoo.{kind}-"
    staging: Path | None = None
    try:
        staging = Path(tempfile.mkdtemp(dir=place.parent, prefix=prefix))
        os.chmod(staging, stat.S_IMODE(place.stat().st_mode))  # a run folder's mode, not mkdtemp's 0700
        write(staging)
        os.replace(staging, place)  # onto the empty folder: whole, or not at all
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        remove_made(created)
        if staging is not None and isinstance(exc, GenzooError):  # "no space ... .OUT.latent-x1/a.png": name OUT
            raise GenzooError(str(exc).replace(str(staging), str(target))) from exc
        raise
    return target


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    atomic_write_json(run_dir / CONFIG, config)


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's ``config.json`` as written, after :func:`read_run` has checked every field."""
    return read_run(run_dir).raw


#: The most characters a value of a metric line takes as JSON: a float's shortest form at its longest,
#: ``-1.2345678901234567e-308``; an epoch, a step count (under 10**19) or null takes fewer. ``run`` takes
#: :data:`RUN_VALUE`.
LONGEST_METRIC_VALUE = 24
#: The characters of ``run``'s value as JSON: a ``run_id`` (32 hex digits) in quotes.
RUN_VALUE = 34


def metric_line_bytes(keys: Collection[str]) -> int:
    """The most bytes :func:`append_metrics` writes for a record of ``keys``: ``{"key": value, ...}`` and a newline."""
    return 1 + sum(len(json.dumps(key)) + len(': , ') + (RUN_VALUE if key == RUN else LONGEST_METRIC_VALUE)
                   for key in keys)


def append_metrics(run_dir: Path, record: dict[str, Any], name: str = METRICS) -> None:
    """Append one JSON line to ``name`` (``metrics.jsonl``), written whole and fsynced; a failed write is cut back off.

    A short write (disk full) leaves the file as it was, byte for byte; only a crash
    in the middle of the ``write`` can tear the last line, which readers ignore.

    ``O_NOFOLLOW``: a ``metrics.jsonl`` that is a symbolic link (say, in a run folder
    from someone else) is refused rather than followed to a file outside the run.
    ``O_NONBLOCK`` and the check after it: one that is a FIFO is refused rather than waited
    on for good (opening one for writing blocks until someone reads it). A line that would
    take the file past ``MAX_JSON_BYTES``, which every reader refuses as damage, is not
    written: the run stays readable at its last checkpoint (a growth ``check_metrics_fit``
    did not foresee before training; fifteenth hostile pass, F11). A file with other names
    (a hard-linked snapshot of the run) first gets one of its own (:func:`own_copy`): the
    line goes into this run's file alone.
    """
    path = Path(run_dir) / name
    own_copy(path)
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    not_regular = f"cannot append to {path}: it is not a regular file (a FIFO or a device?)"
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO no one reads
            raise GenzooError(not_regular) from None
        raise GenzooError(f"cannot append to {path}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise GenzooError(not_regular)
        size = info.st_size
        if size + len(line) > MAX_JSON_BYTES:
            raise GenzooError(f"cannot append to {path}: its line of {len(line):,} bytes would take the file past "
                              f"{MAX_JSON_BYTES:,} bytes, more than genzoo reads back, so nothing was written and "
                              "the run stays as its last checkpoint left it; train fewer epochs, or report fewer "
                              "statistics")
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(28, "short write (disk full?)")
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # a half line now would sit mid-file after the next append
            raise
    except OSError as exc:
        raise GenzooError(f"could not append to {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _metrics_text(records: list[dict[str, Any]]) -> bytes:
    """``metrics.jsonl``'s bytes for ``records``: one sorted JSON object per line, as :func:`append_metrics` writes."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("utf-8")


def write_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Write ``records`` as the whole ``metrics.jsonl`` of ``run_dir``, atomically."""
    text = _metrics_text(records)
    atomic_write(Path(run_dir) / METRICS, lambda f: f.write(text))


def keep_metrics_through(run_dir: Path, epoch: int, run_id: str | None = None) -> None:
    """On resume: keep the records of epochs up to ``epoch``, drop later or torn ones.

    A record written after the checkpoint the run resumes from is dropped: that epoch
    is trained again and its line written again, so no epoch is ever listed twice.
    The file is rewritten (atomically) only when that changes it, each line as written;
    a line of another run than ``run_id`` (:func:`metric_lines`) is refused, never dropped.
    """
    path = Path(run_dir) / METRICS
    records = [r for r in metric_lines(run_dir, run_id, refuse_others=RESUME_OTHERS) if r["epoch"] <= epoch]
    try:
        if read_regular(path) == _metrics_text(records):
            return
    except FileNotFoundError:
        if not records:
            return
    write_metrics(run_dir, records)


#: The run folders this process holds the lock of (device, inode): a second ``flock`` of one by this process
#: would find it taken, as if by another.
_held: set[tuple[int, int]] = set()
#: The folder each lock of this process was taken on, by the path it was taken through: (device, inode, fd, the
#: working directory that path was relative to).
_taken: dict[str, tuple[int, int, int, str | None]] = {}


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` while a process trains in it.

    Two processes resuming the same run would interleave their metrics and overwrite
    each other's checkpoints; the second one is refused instead. The lock is
    ``flock`` on the folder itself (no lock file to leave behind) and dies with its
    process, so a run killed with SIGKILL can be resumed at once.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking, as before
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GenzooError(f"{run_dir} is in use by another genzoo process") from None
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        _held.add(key)
        _taken[str(run_dir)] = (*key, fd, working_directory())
        try:
            yield
        finally:
            _held.discard(key)
            _taken.pop(str(run_dir), None)
    finally:
        os.close(fd)


def check_in_place(run_dir: Path, again: str = "resume", what: str = "run folder") -> None:
    """Refuse to write into ``run_dir`` by its path once the folder locked there was moved or replaced.

    The lock is on the folder, the writes go by path: a run folder moved away while training
    (``mv x x-old && mkdir x``) had its later epochs written into the new ``x``, which holds no
    ``config.json`` (eighteenth hostile pass, files M5). Nothing is checked for a folder this
    process did not lock. ``again`` is the command that carries on in the folder where it went,
    ``what`` the folder's name in the line (a compare's own folder is held alike: twentieth hostile
    pass, files F3). A working directory moved under a relative ``run_dir`` is put back first
    (:func:`_back_in`).
    """
    taken = _taken.get(str(run_dir))
    if taken is None:
        return
    device, inode, fd, cwd = taken
    if not os.path.isabs(run_dir):
        back_in(cwd)
    try:
        info = os.stat(run_dir)
        here = (info.st_dev, info.st_ino) == (device, inode)
    except OSError:
        here = False
    if here:
        return
    try:  # where the folder went, where the system says (Linux's /proc)
        moved: str | None = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        moved = None
    if moved is None or moved.endswith(" (deleted)"):
        where = "where it went is not known" if moved is None else "it was deleted"
        then = ""
    elif again != "resume" or os.path.lexists(os.path.join(moved, "checkpoint.pt")):
        where, then = f"it is now {printable(moved)}", f"; carry on there with: genzoo {again} {printable(moved)}"
    else:
        where, then = f"it is now {printable(moved)}", ", and it holds no checkpoint yet"
    raise GenzooError(f"{what} {printable(str(run_dir))} was moved or replaced while genzoo was writing into it "
                      f"({where}); nothing more was written{then}")


def back_in(cwd: str | None) -> None:
    """Put back the working directory ``cwd`` that a run folder's relative path was locked from, with a warning, when
    code genzoo does not guard moved it (a model's ``evaluate``, a library's thread): the run's later files went
    to a look-alike folder there, or the run stopped as if its folder had moved (nineteenth hostile pass, F2;
    guarded plugin calls put it back themselves, naming the plugin: :mod:`genzoo.process_settings`). Also before a
    new run or compare folder is made, from the directory its command started in: a model's ``state_dict`` or
    ``train`` override, or a loss, that moved it in the checks before had the whole run made in the other folder,
    exit 0 (twenty-fourth hostile pass, plugins F1)."""
    now = working_directory()
    if cwd is None or now == cwd:
        return
    try:
        os.chdir(cwd)
    except OSError:  # gone: the check refuses the write, saying where the run folder went
        return
    warn(f"the working directory was changed from {printable(cwd)} to {printable(now or 'a deleted folder')} by "
         "code that genzoo does not guard (a model's evaluate, a library's thread); it is put back, so the run's "
         "files stay in its folder")


def in_use(run_dir: Path) -> bool:
    """Whether another process holds ``run_dir``'s lock (:func:`locked`) now: a run being trained or evaluated.

    Its unfinished run is not one to resume (that resume is refused as in use) but one to wait for
    (seventeenth hostile pass, M9). Taken and let go at once; False where there is no locking or no folder.
    """
    try:
        import fcntl
    except ImportError:
        return False
    try:
        fd = os.open(run_dir, os.O_RDONLY)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) in _held:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:  # a file system without flock (ENOLCK, EOPNOTSUPP): no lock tells, the usual advice stands
            return False
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
