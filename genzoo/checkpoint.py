"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

``weights_only`` means a checkpoint can hold tensors and plain containers but can
never make ``torch.load`` run code, so a checkpoint from a stranger is safe to open.
An exported run holds ``model.safetensors`` instead (``genzoo export``): tensors and
JSON text, read with no unpickler at all, through the same :func:`load_checkpoint`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import io
import json
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from genzoo.checks import all_finite, data_problem, differences, is_count, is_lower_hex, is_number, same_value, shown
from genzoo.errors import GenzooError, blamed, describe, first_line, memory_line, out_of_memory
from genzoo.files import atomic_write, open_regular, parse_json, read_regular
from genzoo.train_config import ADDED_LATER

FORMAT = "genzoo-checkpoint"
VERSION = 1
FILENAME = "checkpoint.pt"
#: An exported run's weights (:func:`save_weights`), read where a run's checkpoint is.
WEIGHTS_FILENAME = "model.safetensors"
#: The checkpoint fields a weights file keeps beside the weights, each as JSON text in its header.
WEIGHTS_FIELDS = ("model", "model_config", "train_config", "sample_shape", "position", "data_sha256", "run_id")
#: The fields checkpoints and weights files from before them lack: read as None (not recorded, not checked).
ADDED_FIELDS = ("data_sha256", "run_id")
#: The largest weights file genzoo reads or hashes (checkpoints are read whole): the built-in models are a few MB.
MAX_WEIGHTS_BYTES = 2**31
#: The header key of a weights file's digest (:func:`tensors_sha256`). Files from before it
#: was written hold ``sha256``, a digest of the tensor bytes alone, and are refused.
TENSORS_SHA256 = "tensors_sha256"
#: The key of a checkpoint's digest of everything else it holds (:func:`contents_sha256`). Checkpoints from before
#: it was written have none: they load, with no check that their bytes are the ones saved.
CONTENTS_SHA256 = "contents_sha256"


def checkpoint_file(run_dir: Path) -> Path:
    """The file that holds a run folder's model: ``checkpoint.pt``, or an export's ``model.safetensors``."""
    run_dir = Path(run_dir)
    if not (run_dir / FILENAME).exists() and (run_dir / WEIGHTS_FILENAME).exists():
        return run_dir / WEIGHTS_FILENAME
    return run_dir / FILENAME


#: The key safetensors keeps for its header's metadata: its writer writes a tensor of that name beside the header's own
#: entry, and its reader refuses the file it wrote (a duplicate field; twentieth hostile pass on plugins, F4).
RESERVED_NAME = "__metadata__"


def safetensors_name_problem(name: object) -> str | None:
    """Why safetensors cannot keep a tensor named ``name`` (its reserved key, no string, text UTF-8 cannot
    encode: a lone surrogate), or None where it can; any other name (empty, a path, a newline) it keeps.
    The reason is said of the tensor (``its name is ...``), which the caller names."""
    if not isinstance(name, str):
        return f"its name is a {type(name).__name__}, not a string"
    if name == RESERVED_NAME:
        return "its name is the key safetensors reserves for its header's metadata"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is text UTF-8 cannot encode"
    return None


def save_weights(path: Path, state: dict[str, Any]) -> None:
    """A checkpoint's model weights and identity (:data:`WEIGHTS_FIELDS`) as safetensors, atomically.

    No optimiser or RNG state: an export is for using the model, not for resuming it. A name safetensors
    cannot keep (:func:`safetensors_name_problem`), a sparse tensor, or a dtype safetensors cannot write
    (complex32, bits) or read back (packed float4, which it writes as ``F4``), is one line, not its traceback.
    """
    from safetensors.torch import load, save

    for name, value in state["model_state"].items():
        problem = safetensors_name_problem(name)
        if problem is not None:
            raise GenzooError(f"safetensors cannot hold the model's tensor {shown(name)} ({problem}); this run of "
                              f"{shown(state.get('model'))} cannot be exported")
        if not isinstance(value, torch.Tensor):
            raise GenzooError(f"safetensors holds only tensors, and the model's {shown(name)} is a "
                              f"{type(value).__name__} (from its get_extra_state); this run cannot be exported")
        if value.layout != torch.strided:
            raise GenzooError(f"safetensors cannot hold the model's {shown(name)} (a {value.layout} tensor); "
                              "this run cannot be exported")
    # Cloned: safetensors refuses tensors that share memory, and state dicts may hold views.
    tensors = {name: value.detach().cpu().contiguous().clone() for name, value in state["model_state"].items()}
    metadata = {"format": FORMAT, "version": str(VERSION), **{k: json.dumps(state.get(k)) for k in WEIGHTS_FIELDS}}
    header: dict[str, Any] = {}
    try:  # safetensors' table of dtypes has no entry for the one it names
        data = save(tensors, metadata=metadata)
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + size])
        load(data)
    except KeyError as exc:
        names = ", ".join(shown(name) for name, value in tensors.items()
                          if exc.args[0] in (value.dtype, header.get(name, {}).get("dtype")))
        if not names:
            raise
        raise GenzooError(f"safetensors cannot hold dtype {str(exc.args[0]).removeprefix('torch.')} (the model's "
                          f"{names}); this run cannot be exported") from exc
    metadata[TENSORS_SHA256] = tensors_sha256(header, data[8 + size:])
    data = save(tensors, metadata=metadata)
    atomic_write(Path(path), lambda f: f.write(data))


def tensors_sha256(header: dict[str, Any], body: bytes) -> str:
    """The sha256 of each tensor's name, dtype, shape and bytes, in name order: what a weights file vouches for.

    ``header`` is the file's parsed (and by safetensors validated) header, ``body`` the
    bytes after it. A digest of the bytes alone let an edited header swap the byte
    ranges of two tensors of one shape (``mu_head`` and ``logvar_head``), which loaded
    a different model without a word; this one does not depend on where the bytes lie.
    """
    h = hashlib.sha256()
    for name in sorted(key for key in header if key != "__metadata__"):
        entry = header[name]
        begin, end = entry["data_offsets"]
        h.update(json.dumps([name, entry["dtype"], entry["shape"], end - begin]).encode("utf-8") + b"\n")
        h.update(body[begin:end])
    return h.hexdigest()


def read_genzoo_safetensors(path: Path, max_bytes: int, fmt: str,
                            check: Callable[[dict[str, Any]], None] | None = None,
                            ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The header metadata and tensors of a safetensors file genzoo wrote in format ``fmt``, every check passed.

    The header (8 bytes of length, then JSON) is parsed here, so every way it can be
    damaged is a :class:`GenzooError` saying why (the caller names the file); ``check``
    refuses the metadata before the tensors are read; the tensors are parsed by
    safetensors, which runs no code, then checked against ``tensors_sha256`` in the
    header, which binds each tensor's name, dtype and shape to its bytes.
    """
    from safetensors.torch import load

    data = read_regular(path, max_bytes)
    size = int.from_bytes(data[:8], "little")
    if len(data) < 8 or size > len(data) - 8:
        raise GenzooError("truncated: its header is cut off")
    try:
        header = parse_json(data[8:8 + size])
    except ValueError as exc:
        raise GenzooError(f"its header is {exc}") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != fmt:
        raise GenzooError(f"no {fmt} metadata in its header")
    if check is not None:
        check(metadata)
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors reports a torn or forged file in many ways
        raise GenzooError(first_line(f"{type(exc).__name__}: {exc}")) from exc
    # Only now: safetensors has checked that the header's tensor table fits the bytes.
    if metadata.get(TENSORS_SHA256) != tensors_sha256(header, data[8 + size:]):
        raise GenzooError("its tensors do not match the sha256 in its header: the file was damaged or changed")
    return metadata, tensors


class _NotWeights(GenzooError):
    """What :func:`_load_weights` words as "PATH is not a genzoo weights file (why)"."""


def _load_weights(path: Path) -> dict[str, Any]:
    """A ``model.safetensors`` as the checkpoint dict it came from, less optimisers and RNG states."""

    def check(metadata: dict[str, Any]) -> None:
        if metadata.get("version") != str(VERSION):
            raise _NotWeights(f"{path} has checkpoint format version {shown(metadata.get('version'))}; "
                              f"this genzoo reads version {VERSION}")
        if TENSORS_SHA256 not in metadata and "sha256" in metadata:
            raise _NotWeights(f"{path} was exported by an older genzoo, whose digest did not cover the tensors' "
                              "names and shapes, so it cannot be checked; export the run again (genzoo export RUN)")

    try:
        metadata, tensors = read_genzoo_safetensors(path, MAX_WEIGHTS_BYTES, FORMAT, check)
    except _NotWeights as exc:
        raise GenzooError(str(exc)) from None
    except GenzooError as exc:
        raise GenzooError(f"{path} is not a genzoo weights file ({exc})") from exc.__cause__
    state: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    for key in WEIGHTS_FIELDS:
        if key in ADDED_FIELDS and key not in metadata:
            continue
        try:
            state[key] = parse_json(str(metadata.get(key, "")).encode("utf-8"))
        except ValueError as exc:
            raise GenzooError(f"{path} is not a genzoo weights file (its {key} is {exc})") from None
    state["model_state"] = tensors
    return state


#: The variables that make torch.load force or forbid weights-only loading, whatever its caller asks.
_FORCING = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")


def load_weights_only(f: BinaryIO, path: Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(f, weights_only=True)``: every way it refuses ``path`` is one line saying it is not ``what``.

    The one place genzoo calls ``torch.load``: a pickle that asks for anything beyond
    tensors and plain containers (a function to call, a class to build) is refused
    before any of it runs, and the line names what it asked for.
    """
    forced = [name for name in _FORCING if os.environ.get(name, "0").lower() in ("1", "y", "yes", "true")]
    if len(forced) == 2:  # torch then refuses every file, and the line below would blame this one
        raise GenzooError(f"{' and '.join(forced)} are both set, so torch refuses to load any file; unset them "
                          "(genzoo always loads weights only)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about foreign pickle protocols before refusing them
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found and "weights only load failed" in str(exc).lower():
            raise GenzooError(f"refusing to load {path}: it asks for {found.group(1)} while being loaded, "
                              "which could run code; genzoo loads weights only") from exc
        raise GenzooError(f"{path} is not {what} (torch's weights-only loader rejected it)") from exc
    except Exception as exc:  # torch reports a torn or foreign file in many ways
        if out_of_memory(exc):  # a good file the machine cannot hold: not one to delete (twenty-fourth pass, M2)
            raise GenzooError(f"{path}: {memory_line(exc)}") from exc
        raise GenzooError(f"{path} is truncated or not {what} ({type(exc).__name__})") from exc


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save ``state`` (tensors, numbers, strings and containers of them) atomically, sealed by its digest.

    The digest (:func:`contents_sha256`) is made afresh: a digest ``state`` brings along (a
    checkpoint read, changed and saved again) vouched for what it held then.
    """
    payload = {"format": FORMAT, "version": VERSION,
               **{key: value for key, value in state.items() if key != CONTENTS_SHA256}}
    payload[CONTENTS_SHA256] = contents_sha256(payload)
    atomic_write(Path(path), lambda f: torch.save(payload, f))


def contents_sha256(payload: dict[str, Any]) -> str:
    """The sha256 of what a checkpoint holds: its structure, plain values and each tensor's dtype, shape and bytes.

    torch's zip reader does not check its records' CRC-32, and a weights-only load takes any
    bytes as weights: a checkpoint with 4 KiB of a weight zeroed (bit rot, a bad sector, a
    damaged copy) was evaluated and resumed as the run's, other numbers, exit 0 (nineteenth
    hostile pass, F8), where an export and the caches refuse a flipped byte. The walk is an
    explicit stack, so a file nested deeper than Python's recursion limit is no traceback; a
    tensor is taken by its values, not where they lie, so one saved from a GPU and loaded on
    the CPU has the same digest.
    """
    h = hashlib.sha256()
    stack: list[Any] = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, torch.Tensor):
            _digest_tensor(h, value, stack)
        elif isinstance(value, dict):
            h.update(f"dict {len(value)}\n".encode())
            stack.extend(reversed([part for item in value.items() for part in item]))
        elif isinstance(value, (list, tuple)):
            h.update(f"{'list' if isinstance(value, list) else 'tuple'} {len(value)}\n".encode())
            stack.extend(reversed(value))
        else:  # what a weights-only load can build: None, bool, int, float, str, bytes, a dtype
            h.update(f"{type(value).__name__} {value!r}\n".encode("utf-8", "backslashreplace"))
    return h.hexdigest()


def _digest_tensor(h: Any, value: torch.Tensor, stack: list[Any]) -> None:
    """Feed ``value`` to the digest ``h``: a plain tensor's bytes; a sparse one's indices and values (pushed on
    ``stack``); of any other (``meta``, which holds no data) only its description."""
    h.update(f"tensor {value.dtype} {tuple(value.shape)} {value.layout} {value.device.type == 'meta'}\n".encode())
    if value.layout == torch.sparse_coo:
        stack.extend([value._values(), value._indices()])
    elif value.layout == torch.strided and value.device.type != "meta":
        data = value.detach().int_repr() if value.is_quantized else value.detach().resolve_conj().resolve_neg()
        h.update(data.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def check_contents(state: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose contents no longer match the digest it was saved with; take one without a digest.

    The digest (:func:`contents_sha256`) is dropped from ``state``: no reader needs it, and a
    checkpoint changed and saved again gets a fresh one. A checkpoint from before digests is
    taken as it is: damage to its bytes is not found, as before (saving it again seals it).
    """
    if CONTENTS_SHA256 not in state:
        return
    saved = state.pop(CONTENTS_SHA256)
    if not isinstance(saved, str) or saved != contents_sha256(state):
        raise GenzooError(f"{path} is damaged: what it holds does not match the sha256 it was saved with (a bad "
                          "disk, a damaged copy or an edit); restore it from a copy, or train the run again")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a genzoo checkpoint, refusing anything that is not one.

    A pickle that asks for anything beyond tensors and plain containers (a function
    to call, a class to build) is refused by ``weights_only`` before any of it runs.
    """
    path = Path(path)
    if path.is_dir() and path.name != FILENAME:  # a run folder; a folder named checkpoint.pt is damage
        path = checkpoint_file(path)
    try:
        if path.name == WEIGHTS_FILENAME:
            return _load_weights(path)
        # From the open file, never read whole: a sparse 200 GB file fails at its first bytes.
        with open_regular(path) as f:  # a FIFO or a device is refused
            state = load_weights_only(f, path, "a checkpoint", map_location)
    except (FileNotFoundError, NotADirectoryError):
        if (path.parent / WEIGHTS_FILENAME).exists():
            raise GenzooError(f"no checkpoint at {path}: {path.parent} is an export, which holds the trained "
                              f"weights ({WEIGHTS_FILENAME}) to use but no training state to resume") from None
        raise GenzooError(f"no checkpoint at {path}") from None
    # The header's fields by type first: a weights-only load reads a tensor anywhere, and a tensor's != is a
    # tensor, whose truth is a traceback (two elements, meta) or the wrong answer (tensor(1) was taken as 1).
    if not isinstance(state, dict) or type(state.get("format")) is not str or state["format"] != FORMAT:
        raise GenzooError(f"{path} is not a genzoo checkpoint")
    version = state.get("version")
    if type(version) is not int or version != VERSION:
        raise GenzooError(f"{path} has checkpoint format version {shown(version)}; this genzoo reads version {VERSION}")
    check_contents(state, path)
    return state


def check_finite_weights(state: dict[str, Any], path: Path, model: torch.nn.Module) -> None:
    """Refuse a checkpoint whose ``model_state`` holds a tensor unlike ``model``'s, or a NaN or infinite one.

    ``model`` is freshly built for the checkpoint's run: each saved tensor must have its
    tensor's dtype and layout (plain, strided, unless the model's own is sparse), real data (not ``meta``), since
    ``load_state_dict`` would cast 1e300 in float64 to inf in float32, 2**62 in int64 to
    a huge float, drop a complex part, or fail deep inside torch. Only then is it checked
    finite, in the dtype it is loaded as. Training never saves a non-finite weight (it
    stops first), so such a file is damaged or planted: evaluating it would report
    numbers of NaN samples, resuming it would train on nothing and call it "the last good
    checkpoint". Missing, extra or misshapen tensors are left to ``load_state_dict``.
    """
    weights = state.get("model_state")
    if not isinstance(weights, dict):
        raise GenzooError(f"{path} holds no model weights")
    expected = model.state_dict()
    for name, value in weights.items():
        if not isinstance(value, torch.Tensor) or name not in expected:
            continue
        problem = _tensor_problem(value, expected[name].dtype, expected[name].layout)
        if problem is not None:
            raise GenzooError(f"{path} holds {shown(name)} as {problem}; it is damaged or not from this run")
        if not all_finite(value):
            raise GenzooError(f"{path} holds non-finite weights ({shown(name)} has NaN or infinite values); "
                              "it is damaged or not a trained model")


def _tensor_problem(value: torch.Tensor, dtype: torch.dtype | None,
                    layout: torch.layout = torch.strided) -> str | None:
    """What keeps a loaded tensor from standing for one of ``dtype`` (None: any real dtype) and ``layout``, or None.

    Checked before any arithmetic on it: a sparse or ``meta`` tensor fails in torch's
    dispatcher with a page of traceback where a plain one is expected (a model's own sparse
    buffer is saved sparse; torch's loader checks its indices).
    """
    problem = data_problem(value, layout)
    if problem is not None:
        return problem
    if dtype is not None and value.dtype != dtype:
        return f"a tensor of dtype {value.dtype}, not {dtype}"
    if dtype is None and (value.is_complex() or value.dtype == torch.bool or value.is_quantized):
        return f"a tensor of dtype {value.dtype}, not a real number"
    return None


def hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """A copy of each parameter group's settings (all but its parameters): the optimiser as configured."""
    return [copy.deepcopy({key: value for key, value in group.items() if key != "params"})
            for group in optimizer.param_groups]


def changed_hyperparameters(configured: list[dict[str, Any]], optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """For each parameter group, the configured value of every setting the model has changed since.

    A checkpoint records it (a learning-rate schedule's ``lr``), so that resume takes what
    the model changed while training and still refuses any other setting unlike the
    configured one, and a run configured otherwise (see :func:`check_optimizer_state`).
    """
    return [{key: value for key, value in settings.items() if key in group and not _same_setting(group[key], value)}
            for settings, group in zip(configured, optimizer.param_groups)]


class UnfitOptimizerState(GenzooError):
    """:func:`check_optimizer_state`'s refusal; ``why`` is what does not fit, for a caller that words it."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def check_optimizer_state(name: str, saved: Any, optimizer: torch.optim.Optimizer, path: Path,
                          steps: int | None = None, stepped: set[int] | None = None,
                          steps_from: str | None = None, changed: Any = None) -> None:
    """Refuse a saved optimiser state that does not fit ``optimizer``, freshly configured for this run.

    ``load_state_dict`` takes the saved hyper-parameters over the configured ones (an
    edited ``lr`` would train at that rate while ``config.json`` says another), drops
    state of parameters no group lists, and leaves moments of another shape to fail
    inside the first step. So every hyper-parameter must equal the configured one,
    except those ``changed`` (what :func:`changed_hyperparameters` recorded, None: none)
    says the model changed while training: their recorded configured value must equal
    this run's, and the saved one be of its kind (a finite number for a number); and each a
    plain value (:func:`_plain_problem`), which only the run's own first step can get wrong. Every
    state entry must belong to a listed parameter, and each field be what a step of the
    same optimiser gives a scratch parameter (:func:`_trial_states`): a tensor shaped like
    the parameter, of its dtype (Adam's moments), a scalar (``step``, NAdam's
    ``mu_product``, ASGD's ``eta``), or other plain values (L-BFGS's history, a plugin
    optimiser's mode name): what a weights-only checkpoint holds as it is.

    The state must also fit how far the run has come: ``steps`` is how many times
    this optimiser has stepped (None: only the model knows), ``stepped`` the
    positions, in group order, of the parameters a step gives state (None: not
    known). Dropped or rewound moments would make the resumed run differ from an
    uninterrupted one, so: no state before the first step; after it, state for
    exactly ``stepped`` (or at least one parameter) unless this kind of optimiser
    keeps none; and every per-parameter ``step`` count equal to ``steps``, or, when
    that is unknown, a whole number of at least 1. ``steps_from`` names the model's method
    that said ``steps``: a count that disagrees may be its mistake, not the checkpoint's.
    """
    def bad(why: str, counted: bool = False, ordered: bool = False) -> GenzooError:
        cause = ("it is damaged or not from this run" if not counted or steps_from is None else
                 f"either it is damaged or not from this run, or {steps_from} does not count the steps "
                 "the model's training_step takes")
        if ordered:  # Adam(list(set(self.parameters()))): blamed on the file alone (twenty-sixth pass, plugins F14)
            cause += (", or the model's configure_optimizers lists its parameters in another order than when it was "
                      "saved (an order taken from a set changes from one process to the next)")
        return UnfitOptimizerState(f"{path} holds an optimiser state that does not fit this run (optimiser "
                                   f"{name!r}: {why}); {cause}", why)

    if not isinstance(saved, dict) or not isinstance(saved.get("param_groups"), list) \
            or not isinstance(saved.get("state"), dict):
        raise bad("not a state with param_groups and state")
    groups, state = saved["param_groups"], saved["state"]
    if len(groups) != len(optimizer.param_groups):
        raise bad(f"{len(groups)} parameter groups, this run configures {len(optimizer.param_groups)}")
    changes = [{}] * len(groups) if changed is None else changed
    if not isinstance(changes, list) or len(changes) != len(groups) or not all(
            isinstance(c, dict) and set(c) <= set(g) - {"params"} for c, g in zip(changes, optimizer.param_groups)):
        raise bad(f"its record of the settings the model changed is {shown(changed)}, not one mapping of this "
                  "run's settings per parameter group")
    params: dict[int, torch.Tensor] = {}
    group_of: dict[int, int] = {}
    ids_in_order: list[int] = []
    for i, (group, fresh) in enumerate(zip(groups, optimizer.param_groups)):
        ids = group.get("params") if isinstance(group, dict) else None
        if not isinstance(ids, list) or len(ids) != len(fresh["params"]) or not all(is_count(n, 0) for n in ids):
            raise bad(f"group {i} does not list this run's {len(fresh['params'])} parameters")
        for key, value in fresh.items():
            if key == "params":
                continue
            if key not in group or key not in changes[i] and not _same_setting(group[key], value):
                raise bad(f"group {i} has {key} {shown(group[key]) if key in group else '(none)'}, "
                          f"this run configures {shown(value)}")
            if key in changes[i] and not _same_setting(changes[i][key], value):
                raise bad(f"group {i} was configured with {key} {shown(changes[i][key])}, "
                          f"this run configures {shown(value)}")
            if key in changes[i] and not _of_kind(group[key], value):
                raise bad(f"group {i} has {key} {shown(group[key])}, which its model changed from {shown(value)} "
                          f"while training, but not to {_kind(value)}")
            problem = _plain_problem(group[key])  # as configured (numpy's float64): no checkpoint could be loaded
            if problem is not None:
                raise bad(f"group {i}'s {key} {problem}")
        params.update(zip(ids, fresh["params"]))
        group_of.update(dict.fromkeys(ids, i))
        ids_in_order += ids
    trials = _trial_states(optimizer)
    for key, entry in state.items():
        if key not in params:
            raise bad(f"state for parameter {shown(key)}, which no group lists")
        if not isinstance(entry, dict):
            raise bad(f"state of parameter {key} is {shown(entry)}, not a mapping")
        stepped_state = trials[group_of[key]][1]
        for field, value in entry.items():
            problem = _field_problem(value, params[key], stepped_state.get(field, 0 if field == "step" else None))
            if problem is not None:
                raise bad(f"{shown(field)} of parameter {key} {problem}", ordered="shape" in problem)
    built = {i: trials[group_of[key]][0] for i, key in enumerate(ids_in_order) if trials[group_of[key]][0]}
    _check_progress(state, ids_in_order, optimizer, steps, stepped, bad, any(t[1] for t in trials), built, steps_from)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(saved)``, the strings of its state kept as saved.

    torch's loader rebuilds every iterable in the state from its items (to move the tensors
    in it to their parameter's device): a str comes back as ``'<generator object ...>'``, so a
    plugin optimiser's mode name was silently lost on resume. ``saved`` has passed
    :func:`check_optimizer_state`: each of its parameter ids is listed once.
    """
    optimizer.load_state_dict(saved)
    ids = [key for group in saved["param_groups"] for key in group["params"]]
    params = [param for group in optimizer.param_groups for param in group["params"]]
    for key, param in zip(ids, params):
        entry = optimizer.state.get(param)
        if key in saved["state"] and isinstance(entry, dict):
            for field, value in saved["state"][key].items():
                entry[field] = _own_memory(_strings_kept(entry.get(field), value), param)


def _own_memory(value: Any, param: torch.Tensor) -> Any:
    """``value`` with each tensor in it copied into memory of its own, laid out as the optimiser lays out its state.

    torch's loader keeps a saved tensor of the right dtype and device as the file built it, and a fused or
    foreach step writes its state through the data pointer as if laid out as the parameter: an expanded
    tensor (``torch.zeros(1).expand(400)``, 4 bytes of storage) in a checkpoint that passed every check of its
    values had 1.6 kB written into those 4 bytes, a heap overflow (SIGSEGV or glibc's abort); a view with
    other strides, or two fields sharing storage, was read as other numbers (twentieth hostile pass, F5). A
    field of the parameter's shape is laid out as the parameter (as ``zeros_like(param)`` makes it); any other
    tensor contiguous. The values are the file's, so a resume stays bit for bit.
    """
    if isinstance(value, torch.Tensor) and value.layout == torch.strided:
        with torch.no_grad():
            if value.shape == param.shape and param.layout == torch.strided:
                own = torch.empty_like(param, dtype=value.dtype, device=value.device).copy_(value)
            else:
                own = value.clone(memory_format=torch.contiguous_format)
        return own.requires_grad_(value.requires_grad)
    if isinstance(value, dict):
        return {key: _own_memory(item, param) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_own_memory(item, param) for item in value)
    return value


def _strings_kept(loaded: Any, saved: Any) -> Any:
    """``loaded`` with each str of ``saved`` put back where torch's loader rebuilt it from its characters."""
    if isinstance(saved, str):
        return saved
    if isinstance(saved, dict) and isinstance(loaded, dict):
        return {key: _strings_kept(loaded.get(key), value) for key, value in saved.items()}
    if isinstance(saved, (list, tuple)) and isinstance(loaded, (list, tuple)) and len(saved) == len(loaded):
        return type(loaded)(map(_strings_kept, loaded, saved))
    return loaded


def _check_progress(state: dict[Any, Any], ids: list[int], optimizer: torch.optim.Optimizer, steps: int | None,
                    stepped: set[int] | None, bad: Callable[..., GenzooError], keeps_state: bool,
                    built: dict[int, dict[str, Any]], steps_from: str | None = None) -> None:
    """:func:`check_optimizer_state`'s comparison of the state with how often the optimiser stepped.

    ``ids`` are the saved parameter ids in group order, the order ``stepped`` counts in;
    ``keeps_state`` whether this kind of optimiser, so configured, keeps state once it
    steps (Adam does, SGD without momentum does not); ``built`` the state it gives the
    parameter at each position when it is built, before any step (Adagrad's sums and
    counts, for every parameter), which is legitimate too.
    """
    holding = {i for i, key in enumerate(ids) if key in state}
    initial = set(built)
    if steps == 0:
        if holding - initial:
            raise bad(f"state for {len(holding - initial)} parameters before its first step", True)
        return
    # The count a parameter no step is known to update may keep: its count when built (Adagrad's 0).
    untouched = {ids[i]: float(built[i]["step"]) for i in initial - (stepped or set()) if "step" in built[i]}
    stepped = None if stepped is None else stepped | initial
    trains = any(p.requires_grad for group in optimizer.param_groups for p in group["params"])
    if steps is not None and stepped is None and not holding and trains and keeps_state:
        raise bad(f"no state after {steps} steps", True)
    if steps is not None and stepped is not None and holding != stepped and (holding or keeps_state):
        missing, extra = sorted(ids[i] for i in stepped - holding), sorted(ids[i] for i in holding - stepped)
        raise bad(f"after {steps} steps, " + (f"no state for parameters {missing}" if missing else
                                              f"state for parameters {extra}, which no step updates"))
    for key, entry in state.items():
        count = entry.get("step")
        if count is None or untouched.get(key) == float(count):
            continue
        count = float(count)
        if count != steps if steps is not None else count < 1 or not count.is_integer():
            expected = ("a count is a whole number >= 1" if steps is None else f"it has stepped {steps} times"
                        if steps_from is None else f"{steps_from} says it has stepped {steps} times")
            raise bad(f"step count {count:g} of parameter {key}, but {expected}", steps is not None)


#: The shape of the scratch parameter of a trial step: a field of its state so shaped is shaped like its parameter.
_SCRATCH = (2, 3)
#: Settings of how a step is computed, not of what it keeps: a trial step leaves them at torch's defaults
#: (a fused kernel or a CUDA-graph capturable step need not run on the CPU, and keep the same state).
_IMPLEMENTATION = ("fused", "foreach", "capturable")


def _trial_states(optimizer: torch.optim.Optimizer) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The state this kind of optimiser, so configured, gives a scratch parameter of each group when it is
    built and after one step.

    It says which fields are shaped like their parameter and which are scalars (torch's
    NAdam keeps a scalar ``mu_product``, ASGD ``eta`` and ``mu``), and whether the
    optimiser keeps any (SGD without momentum keeps none) or keeps some from the start
    (Adagrad). Both empty for a group it cannot be rebuilt and stepped with: nothing is
    known of what it keeps.
    """
    accepted = inspect.signature(type(optimizer)).parameters
    defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted and k not in _IMPLEMENTATION}
    trials: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for group in optimizer.param_groups:
        scratch = torch.zeros(_SCRATCH, requires_grad=True)
        scratch.grad = torch.ones(_SCRATCH)
        settings = {k: v for k, v in group.items() if k != "params" and k not in _IMPLEMENTATION}
        try:
            trial = type(optimizer)([{**settings, "params": [scratch]}], **defaults)
            built = copy.deepcopy(dict(trial.state.get(scratch, {})))
            trial.step(lambda: 0.0)  # a closure, which L-BFGS needs and the others call
        except Exception:  # any optimiser class may be configured: what it keeps is not known
            trials.append(({}, {}))
            continue
        trials.append((built, dict(trial.state.get(scratch, {}))))
    return trials


def _field_problem(value: Any, param: torch.Tensor, trial: Any) -> str | None:
    """What keeps ``value``, a field of ``param``'s saved optimiser state, from being what ``trial`` (the field
    after a trial step; None: not known) says it holds, or None: a tensor shaped like its parameter, of its
    dtype; a scalar (a number, or a 0-dimensional tensor of any real dtype); or else plain values
    (:func:`_plain_problem`: L-BFGS's flat directions, lists of them, plain numbers, a plugin optimiser's mode
    name). None (SGD's unset momentum) is always taken."""
    if value is None:
        return None
    if isinstance(trial, torch.Tensor) and tuple(trial.shape) == _SCRATCH:
        return _tensor_field_problem(value, param.dtype, tuple(param.shape))
    if _scalar(trial):
        return _scalar_problem(value)
    return _plain_problem(value)


#: How deep lists, tuples and dicts may nest in a field of optimiser state (L-BFGS's history: one level).
PLAIN_DEPTH = 4


#: The plain types a weights-only checkpoint holds besides tensors: these exactly, for torch pickles an instance of a
#: subclass (a ``class Mode(str, Enum)`` member, numpy's float64, a namedtuple, a defaultdict) with its class,
#: which ``torch.load(weights_only=True)`` refuses to build.
_PLAIN_TYPES = (bool, int, float, str, list, tuple, dict)


def extra_state_problem(model: torch.nn.Module) -> str | None:
    """What in ``model``'s state_dict a weights-only checkpoint cannot hold, or None: its values that are no
    tensors (``get_extra_state``'s) are saved as a checkpoint saves them and read back by genzoo's own loader.

    A value that loader refuses (numpy's int64, say) trained and checkpointed, and then every command refused
    the run's checkpoints (seventeenth hostile pass, F2). The round trip is the loader's own judgement: an
    infinite running best, a bool mask or deep nesting load, and pass.
    """
    extra = {key: value for key, value in model.state_dict().items() if not isinstance(value, torch.Tensor)}
    if not extra:
        return None
    buffer = io.BytesIO()
    try:
        torch.save(extra, buffer)
        buffer.seek(0)
        load_weights_only(buffer, Path("checkpoint.pt"), "a checkpoint")
    except GenzooError as exc:
        found = re.search(r"it asks for ([\w.]+)", str(exc))
        why = f"asks the loader for {found.group(1)}" if found else "is refused by torch's weights-only loader"
        return f"{', '.join(map(shown, extra))} (from its get_extra_state), which {why}"
    except Exception as exc:  # torch.save could not write it (a lambda, an open file): no checkpoint could be written
        return f"{', '.join(map(shown, extra))} (from its get_extra_state), which torch cannot save ({describe(exc)})"
    return None


def unsaveable_state_line(model: torch.nn.Module, when: str, consequence: str) -> str | None:
    """The one line refusing ``model`` when its state_dict holds what no weights-only checkpoint can
    (:func:`extra_state_problem`), said ``when`` (", after the run's first step,", or "") with its
    ``consequence``; None when it holds none."""
    name = type(model).__name__
    with blamed(f"{name}.state_dict"):
        problem = extra_state_problem(model)
    if problem is None:
        return None
    return (f"{name}'s state_dict holds{when} {problem}, so {consequence}; keep such state in tensors, numbers, "
            "strings, None, or lists, tuples and dicts of them")


def _plain_number(value: Any) -> bool:
    """A finite number of exactly ``int`` or ``float``: :func:`genzoo.checks.is_number` takes subclasses too."""
    return type(value) in (int, float) and is_number(value)


def _plain_problem(value: Any, depth: int = PLAIN_DEPTH) -> str | None:
    """What keeps ``value`` from being a plain value, or None: None, a bool, a str, a finite number, a finite
    tensor of a real dtype, or a list, tuple or dict (keyed by str or int) of them, nested at most ``depth``
    deep, each of exactly its type (:data:`_PLAIN_TYPES`). Each is what a weights-only checkpoint holds as it
    is, and loads without running any code."""
    if value is None or type(value) in (bool, str) or _plain_number(value):
        return None
    if type(value) in (list, tuple, dict):
        if depth == 0:
            return f"nests lists, tuples or dicts more than {PLAIN_DEPTH} deep"
        key = next((k for k in value if type(k) not in (str, int, bool)), None) if type(value) is dict else None
        if key is not None:
            return f"is a dict keyed by {shown(key)}, a {type(key).__name__}, not by str or int"
        items = value.values() if type(value) is dict else value
        inner = next((p for p in (_plain_problem(item, depth - 1) for item in items) if p is not None), None)
        return None if inner is None else f"is {shown(value)}, one of whose items {inner}"
    if type(value) in (int, float):  # exactly a number, but not a finite one
        return f"is {shown(value)}, a number that is not finite"
    base = next((t for t in _PLAIN_TYPES if isinstance(value, t)), None)
    if base is not None:
        return (f"is {shown(value)}, a {type(value).__name__}: a subclass of {base.__name__}, which a checkpoint "
                f"holds only as a {base.__name__} itself (torch's weights-only load refuses most such classes)")
    if not isinstance(value, torch.Tensor):
        return (f"is {shown(value)}, a {type(value).__name__}: neither a tensor nor a plain value (None, bool, str, "
                "number, or a list, tuple or dict of them)")
    return _tensor_field_problem(value, None, None)


def _tensor_field_problem(value: Any, dtype: torch.dtype | None, shape: tuple[int, ...] | None) -> str | None:
    """:func:`_field_problem` for a field that must be a finite tensor of ``dtype`` and ``shape`` (None: any)."""
    if not isinstance(value, torch.Tensor):
        return f"is {shown(value)}, not a tensor"
    problem = _tensor_problem(value, dtype)
    if problem is not None:
        return f"is {problem}"
    if shape is not None and tuple(value.shape) != shape:
        return f"has shape {tuple(value.shape)}, not {shape}"
    return None if all_finite(value) else "has NaN or infinite values"


def _scalar(value: Any) -> bool:
    """A number or a 0-dimensional tensor: a count, a factor, a learning rate."""
    return is_number(value) or isinstance(value, torch.Tensor) and value.dim() == 0


def _scalar_problem(value: Any) -> str | None:
    """What keeps ``value`` from being a finite number (exactly an int or float) or 0-dimensional tensor of a real
    dtype, or None."""
    if _plain_number(value):
        return None
    return _plain_problem(value) if is_number(value) else _tensor_field_problem(value, None, ())


def _of_kind(saved: Any, wanted: Any) -> bool:
    """Whether ``saved`` can stand where the optimiser was configured with ``wanted``: :func:`_kind`."""
    if _scalar(wanted):
        return _scalar_problem(saved) is None
    if isinstance(wanted, torch.Tensor):
        return _tensor_field_problem(saved, wanted.dtype, tuple(wanted.shape)) is None
    if isinstance(wanted, (list, tuple)):
        return type(saved) is type(wanted) and len(saved) == len(wanted) and all(map(_of_kind, saved, wanted))
    return type(saved) is type(wanted)


def _kind(wanted: Any) -> str:
    """What a setting configured as ``wanted`` may be changed to, in words."""
    if _scalar(wanted):
        return "a finite number"
    if isinstance(wanted, torch.Tensor):
        return f"a finite {wanted.dtype} tensor of shape {tuple(wanted.shape)}"
    if isinstance(wanted, (list, tuple)):
        return f"a {type(wanted).__name__} of {', '.join(map(_kind, wanted))}"
    return f"a {type(wanted).__name__}"


def _same_setting(saved: Any, wanted: Any) -> bool:
    if isinstance(saved, torch.Tensor) or isinstance(wanted, torch.Tensor):
        return (isinstance(saved, torch.Tensor) and isinstance(wanted, torch.Tensor) and data_problem(saved) is None
                and saved.shape == wanted.shape and bool(torch.equal(saved.cpu(), wanted.cpu())))
    return type(saved) is type(wanted) and same_value(saved, wanted)


#: Training settings that say where a run trains, not what it trains: free to differ.
LOCAL_SETTINGS = ("device", "data_root")


def check_matches(
    state: dict[str, Any],
    model: str,
    config: dict[str, Any],
    path: Path,
    train_config: dict[str, Any] | None = None,
    sample_shape: list[int] | None = None,
    data_sha256: dict[str, str] | None = None,
    run_id: str | None = None,
) -> None:
    """Fail with what differs when a checkpoint is for another model or config.

    With ``train_config`` (a resume or an evaluation), the training settings must
    match too: a checkpoint's position means nothing under another batch size or
    data subset, and a checkpoint that records none cannot be checked at all.
    ``data_sha256`` is the run's (its ``config.json``'s): see :func:`check_same_data`;
    ``run_id`` too: see :func:`check_same_run`.
    """
    if not same_value(state.get("model"), model):
        raise GenzooError(
            f"{path} holds a {shown(state.get('model'))} model, not {model!r}"
        )
    saved = state.get("model_config", {})
    diffs = differences(saved if isinstance(saved, dict) else {}, config)
    if diffs:
        raise GenzooError(
            f"{path} was saved with another {model} config (checkpoint vs requested): "
            + ", ".join(diffs)
        )
    if sample_shape is not None and not same_value(state.get("sample_shape"), list(sample_shape)):
        raise GenzooError(f"{path} holds images of shape {shown(state.get('sample_shape'))}, "
                          f"not {list(sample_shape)!r} as its run")
    saved_training = state.get("train_config")
    if train_config is not None and not isinstance(saved_training, dict):
        raise GenzooError(f"{path} records no training settings, so it cannot be checked against its run")
    if train_config is not None and isinstance(saved_training, dict):
        diffs = differences({**ADDED_LATER, **saved_training}, train_config, ignore=LOCAL_SETTINGS)
        if diffs:
            raise GenzooError(
                f"{path} was saved with other training settings (checkpoint vs run "
                "config): " + ", ".join(diffs)
            )
    check_same_data(state.get("data_sha256"), data_sha256, path)
    check_same_run(state.get("run_id"), run_id, path)


def check_same_run(saved: Any, recorded: str | None, path: Path) -> None:
    """Refuse a checkpoint saved by another run than ``recorded``, its run's ``run_id`` (from ``config.json``).

    Settings and data do not tell two runs of one setting apart, and their weights differ (any two
    on a GPU, or one trained with ``--nproc 2``): another run's checkpoint copied under this
    run's ``config.json`` was evaluated beside this run's FID curve and metric lines, which
    are of other weights (twentieth hostile pass, F1). A checkpoint from before checkpoints
    recorded the run, or a run from before runs were named, has nothing to check: taken as before.
    """
    if saved is None or recorded is None:
        return
    if not is_lower_hex(saved, 32):
        raise GenzooError(f"{path} records run_id {shown(saved)}, not 32 lower-case hexadecimal digits; it is "
                          "damaged or not from this run")
    if saved != recorded:
        raise GenzooError(f"{path} was saved by run {saved}, not by this run ({recorded}, the run_id of its "
                          "config.json): it is another run's checkpoint; put back this run's own, or use it in the "
                          "run folder it came from")


def check_same_data(saved: Any, recorded: dict[str, str] | None, path: Path) -> None:
    """Refuse a checkpoint saved by a run on other data than ``recorded``, its run's ``data_sha256``.

    The settings alone do not tie a checkpoint to its run: one from a run with the same
    settings on other data (another ``--data-root``) was resumed, evaluated and sampled as
    this run's (eighteenth hostile pass, F2). A checkpoint from before checkpoints recorded
    the digests, or a run from before runs did, has nothing to check: it is taken as it is.
    """
    if saved is None or recorded is None:
        return
    if not (isinstance(saved, dict) and set(saved) == set(recorded)):
        raise GenzooError(f"{path} records data_sha256 {shown(saved)}, not the sha256 of its run's train and test "
                          "data; it is damaged or not from this run")
    differ = [f"{split} sha256 {_short(saved[split])} vs {_short(recorded[split])}"
              for split in sorted(recorded) if not same_value(saved[split], recorded[split])]
    if differ:
        raise GenzooError(f"{path} was saved by a run on other data than this run's (checkpoint vs run config: "
                          f"{', '.join(differ)}); it is not this run's checkpoint")


def _short(digest: Any) -> str:
    """A sha256 as a message shows it: its first 12 hex digits (a value that is no digest, as :func:`shown`)."""
    return digest[:12] if isinstance(digest, str) and digest.isalnum() else shown(digest)


#: The most steps or images a position may count: past 2**53 a count is no longer exact as a float (the rates
#: genzoo computes from it, the optimisers' step counts); at a million steps a second a run would need 285 years.
MAX_COUNT = 2**53


@dataclasses.dataclass
class Position:
    """Where training stands: completed epochs and steps into the current one."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    images: int = 0
    seconds: float = 0.0

    @classmethod
    def from_checkpoint(cls, value: Any, epochs: int, path: Path) -> "Position":
        """A checkpoint's ``position``, checked field by field for a run of ``epochs`` epochs.

        A position that cannot occur (a negative epoch, sums without images, an epoch
        past the plan) would make a resume drop metric lines or divide by zero, so it
        is refused before anything uses it. These checks need only the run's plan;
        :meth:`Trainer.restore` adds those that need the data.
        """
        def bad(why: str) -> GenzooError:
            return GenzooError(f"{path} holds an impossible training position ({why}); "
                               "it is damaged or not from this run")

        if not isinstance(value, dict):
            raise bad(f"{type(value).__name__}, not a mapping")
        names = [f.name for f in dataclasses.fields(cls)]
        if set(value) != set(names):
            raise bad("fields " + ", ".join(sorted(map(repr, value))) + ", expected " + ", ".join(sorted(names)))
        for name in ("epoch", "step", "global_step", "images"):
            if not is_count(value[name], minimum=0):
                raise bad(f"{name} {shown(value[name])}, not a non-negative integer")
            if value[name] > MAX_COUNT:
                raise bad(f"{name} {value[name]:,}, past {MAX_COUNT:,}, which no run reaches")
        sums, seconds = value["sums"], value["seconds"]
        if not is_number(seconds) or seconds < 0:
            raise bad(f"seconds {shown(seconds)}, not a finite number >= 0")
        if not isinstance(sums, dict) or not all(isinstance(k, str) and is_number(v) for k, v in sums.items()):
            raise bad(f"sums {shown(sums)}, not finite numbers by name")
        position = cls(**{**value, "sums": {k: float(v) for k, v in sums.items()}, "seconds": float(seconds)})
        if position.epoch > epochs:
            raise bad(f"epoch {position.epoch} of a {epochs}-epoch run")
        if position.epoch == epochs and position.step:
            raise bad(f"step {position.step} after the last epoch")
        if (position.step == 0) != (position.images == 0) or (position.step == 0 and position.sums):
            raise bad(f"step {position.step} with {position.images} images and sums of {sorted(position.sums)}")
        if position.images < position.step or position.global_step < position.epoch + position.step:
            raise bad(f"{position.images} images in {position.step} steps, global step {position.global_step} "
                      f"after {position.epoch} epochs")
        return position
