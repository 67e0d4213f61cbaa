"""The one validating reader of a run folder's ``config.json`` and ``metrics.jsonl``.

Run files can be torn by a crash, edited by hand or swapped by a stranger: every
reader of a run (``eval``, ``resume``, ``compare --from-runs``, ``load_model``)
goes through here, so a file of the wrong shape is one :class:`GenzooError` line
naming it, never a ``KeyError`` deep inside, and a FIFO is refused, not waited on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator

from genzoo.errors import GenzooError, one_line
from genzoo.runs import CONFIG, METRICS

if TYPE_CHECKING:  # genzoo.trainer imports this module
    from genzoo.trainer import TrainConfig

#: The training settings a run's ``config.json`` must name; the others have defaults.
REQUIRED_TRAINING = ("model", "epochs", "batch_size", "seed")
_COUNTS = ("epochs", "batch_size", "eval_batch_size")
_OPTIONAL_COUNTS = ("train_limit", "test_limit", "checkpoint_every")
_TEXTS = ("model", "dataset", "device")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


#: The largest JSON run file genzoo reads into memory (``config.json``, ``metrics.jsonl``,
#: ``eval.json``, ``compare.json``): real ones are kilobytes (a metric line is ~400 bytes, so
#: this is over 100,000 epochs); a bigger one is damaged or planted, and reading a sparse
#: 200 GB file whole would end in ``MemoryError``.
MAX_JSON_BYTES = 64 * 2**20


@contextmanager
def open_regular(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading, refusing anything that is not a regular file.

    Opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open file (no race
    between a check and the open): a FIFO would otherwise block the reader forever,
    and ``/dev/zero`` never end. ``FileNotFoundError`` is left to the caller, who
    knows what a missing file means. Readers of big files (checkpoints, weights)
    read from the open file rather than all of it into memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise
    except OSError as exc:
        raise GenzooError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise GenzooError(f"{path} is not a regular file ({_kind(mode)}); genzoo reads only regular files "
                              "in a run folder")
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except OSError as exc:
        os.close(fd)
        raise GenzooError(f"cannot read {path}: {exc.strerror or exc}") from None
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_regular(path: Path, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of ``path`` (a regular file, see :func:`open_regular`) of at most ``limit`` bytes."""
    with open_regular(path) as f:
        try:
            data = f.read(limit + 1)  # never more: the size fstat gives may grow while reading
        except OSError as exc:
            raise GenzooError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise GenzooError(f"{path} is over {limit:,} bytes, more than genzoo reads from such a file; "
                          "it is damaged or not a genzoo file")
    return data


def parse_json(data: bytes) -> Any:
    """``data`` as UTF-8 JSON; ``ValueError`` saying why not, for every way it can fail.

    Besides bad syntax, Python's parser refuses integers of over 4300 digits with a
    plain ``ValueError`` and nesting deeper than the stack with ``RecursionError``.
    """
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("not usable JSON: nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"not usable JSON: {one_line(str(exc))}") from None


def read_json(path: Path) -> Any:
    """A JSON file's value (a regular file, UTF-8), or one line saying why not."""
    try:
        return parse_json(read_regular(path))
    except ValueError as exc:
        raise GenzooError(f"{path} is {exc}") from None


def shown(value: Any) -> str:
    """``repr(value)``, cut short: a message quotes a bad value, not a whole file of it."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_count(value: Any, minimum: int = 1) -> bool:
    """An ``int`` (not a ``bool``, which JSON's ``true`` becomes) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def is_number(value: Any) -> bool:
    """A finite ``int`` or ``float`` (not a ``bool``) that a ``float`` can hold."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int past 1e308
        return False


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
        if data is not None and not (isinstance(data, dict) and set(data) == {"train", "test"}
                                     and all(_is_sha256(v) for v in data.values())):
            raise bad(f"data_sha256 is {shown(data)}, not the sha256 of its train and test data")
        return cls(model, model_config, _training(training, model, bad), tuple(shape), value, data)


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _training(values: Any, model: str, bad: Any) -> TrainConfig:
    """``train_config`` checked against ``TrainConfig``'s fields, types and ranges."""
    from genzoo.trainer import TrainConfig

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
        return TrainConfig(**values)
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
    epoch's end), every other field a finite number, or null (a rate without time).
    """
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    if not is_count(value.get("epoch")):
        return f"epoch is {shown(value.get('epoch'))}, not a positive integer"
    if not is_count(value.get("step"), minimum=0):
        return f"step is {shown(value.get('step'))}, not a non-negative integer"
    for key, field in value.items():
        if key not in ("epoch", "step") and field is not None and not is_number(field):
            return f"{shown(key)} is {shown(field)}, not a finite number"
    return None


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every metric line of ``run_dir``, checked; none when there is no ``metrics.jsonl``.

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
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = parse_json(line)
            problem = check_record(value)
        except ValueError as exc:
            value, problem = None, str(exc)
        if problem is None and records and value["epoch"] <= records[-1]["epoch"]:
            problem = f"epoch {value['epoch']} comes after epoch {records[-1]['epoch']}"
        if problem is not None:
            raise GenzooError(f"{path} line {number} is corrupt ({problem}); a crash only ever tears the "
                              "last line, so this file was changed by something else")
        records.append(value)
    if torn.strip():
        try:
            value = parse_json(torn)
        except ValueError:
            value = None
        if check_record(value) is None and (not records or value["epoch"] > records[-1]["epoch"]):
            records.append(value)  # whole, only its newline missing (written by hand)
    return records


def lost_metrics(run_dir: Path, records: list[dict[str, Any]], done: int) -> str | None:
    """What is lost when a checkpoint says ``done`` epochs are finished but lines are missing.

    The checkpoint is the record of training (it holds the weights); ``metrics.jsonl``
    is its log. Lines that are gone cannot be recomputed, so ``eval`` and ``resume``
    both carry on from the checkpoint and say so, rather than one calling the run
    unfinished and the other complete.
    """
    listed = {r["epoch"] for r in records}
    lost = [e for e in range(1, done + 1) if e not in listed]
    if not lost:
        return None
    return (f"{Path(run_dir) / METRICS} has lost the lines of epochs {_spans(lost)}; the checkpoint holds "
            f"epoch {done}, so genzoo goes on from it, without those epochs' training metrics")


def _spans(epochs: list[int]) -> str:
    """``[1, 2, 3, 5]`` as ``1-3, 5``."""
    spans: list[list[int]] = []
    for e in epochs:
        if spans and spans[-1][1] == e - 1:
            spans[-1][1] = e
        else:
            spans.append([e, e])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in spans)


