"""The global random streams: seeded for a run, kept in its checkpoints, forked for evaluation and pictures.

A model may draw from torch's global stream, numpy's or Python's (mixup written the usual
way takes its weight from ``np.random.beta``), so genzoo seeds all three from the run's seed
(:func:`seed_streams`) and the trainer keeps numpy's and Python's states in every checkpoint
beside torch's (:func:`host_states`): a run repeats under its seed and a resumed run draws
what the uninterrupted one drew (eighteenth hostile pass, F3). Inside :func:`seeded` each
stream draws the same numbers on every call, and on leaving it every stream is back where it
was, so evaluating never changes what is trained; inside :func:`forked` plugin code (a logger)
may draw from or seed them, and on leaving it they are back where they were.
"""

from __future__ import annotations

import math
import random
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from genzoo.checks import data_problem, is_count, shown
from genzoo.errors import GenzooError

#: The largest seed genzoo takes. torch accepts seeds in [-2**63, 2**64) and the trainer
#: seeds each epoch's evaluation with ``seed + epoch``; torch-fidelity hands the FID seed
#: to numpy's ``RandomState``, which accepts only [0, 2**32): the narrowest range wins,
#: so one seed works for train, eval and compare alike.
MAX_SEED = 2**32 - 1

#: The words of numpy's global generator's key (MT19937), and of Python's key with its index after them.
NUMPY_WORDS, PYTHON_WORDS = 624, 625
#: The fields a checkpoint keeps of numpy's and of Python's global stream (:func:`host_states`).
NUMPY_FIELDS, PYTHON_FIELDS = {"key", "pos", "has_gauss", "gauss"}, {"version", "state", "gauss_next"}


def check_seed(seed: object) -> None:
    """Refuse a seed that some use of it would reject later (after a run folder exists)."""
    if not (isinstance(seed, int) and is_count(seed, minimum=0) and seed <= MAX_SEED):
        raise GenzooError(f"seed must be an integer from 0 to {MAX_SEED}, got {shown(seed)}")


def seed_host_streams(seed: int) -> None:
    """Seed numpy's and Python's global streams with ``seed``; numpy takes seeds below 2**32 alone, so a larger
    one (an epoch's ``seed + epoch``, a rank's seed) is folded into that range."""
    np.random.seed(seed % 2**32)
    random.seed(seed)


def seed_streams(seed: int, gpus: bool = True) -> None:
    """Seed every global stream a model may draw from with ``seed``: torch's (every GPU's too, unless ``gpus`` is
    False: a check on the CPU leaves them alone), numpy's and Python's."""
    if gpus:
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)
    seed_host_streams(seed)


@contextmanager
def forked(devices: Sequence[torch.device | int] | None = None) -> Iterator[None]:
    """Put torch's CPU stream (and the GPU streams of ``devices``, by default every GPU's, as ``Trainer.save``
    keeps them), numpy's and Python's back as they were on leaving.

    Also for plugin code called between the steps of a run (a logger picking which samples to upload, or
    seeding a stream for picks of its own): its draws must not move the run's streams, or a run killed after
    a checkpoint and resumed would differ from the one never interrupted (eighteenth hostile pass, F1).
    """
    if devices is None:
        devices = [torch.device("cuda", i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
            else []
    numpy_state, python_state = np.random.get_state(legacy=False), random.getstate()
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


@contextmanager
def seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Fork every global stream (``device``'s too, when it is a GPU) and seed it with ``seed``."""
    with forked([device] if device.type == "cuda" else []):
        seed_streams(seed)
        yield


def host_states() -> dict[str, Any]:
    """numpy's and Python's global stream states as a checkpoint keeps them: tensors and plain numbers, which a
    weights-only load reads (numpy's own state holds an array, which it refuses)."""
    numpy_state = np.random.get_state(legacy=False)
    version, words, gauss_next = random.getstate()
    return {"numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                      "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                      "gauss": float(numpy_state["gauss"])},
            "python": {"version": version, "state": torch.tensor(words, dtype=torch.int64),
                       "gauss_next": gauss_next}}


def set_host_states(states: dict[str, Any]) -> None:
    """Put numpy's and Python's global streams where ``states`` (checked by :func:`host_state_problem`) says."""
    np.random.set_state(_numpy_state(states["numpy"]))
    random.setstate(_python_state(states["python"]))


def host_state_problem(states: dict[str, Any]) -> str | None:
    """Why ``states`` (a checkpoint's ``numpy`` and ``python``) cannot be numpy's and Python's global stream
    states, or None: each field's type and range (numpy and Python take some wrong ones without a word), then
    each state tried on a scratch generator."""
    numpy_state, python_state = states.get("numpy"), states.get("python")
    if not isinstance(numpy_state, dict) or set(numpy_state) != NUMPY_FIELDS:
        return f"numpy's is {shown(numpy_state)}, not a dict of {sorted(NUMPY_FIELDS)}"
    if not isinstance(python_state, dict) or set(python_state) != PYTHON_FIELDS:
        return f"Python's is {shown(python_state)}, not a dict of {sorted(PYTHON_FIELDS)}"
    pos, has_gauss, gauss_next = numpy_state["pos"], numpy_state["has_gauss"], python_state["gauss_next"]
    problem = _words_problem(numpy_state["key"], NUMPY_WORDS)
    if problem is not None:
        return f"numpy's key is {problem}"
    if not (type(pos) is int and 0 <= pos <= NUMPY_WORDS):
        return f"numpy's pos is {shown(pos)}, not a count to {NUMPY_WORDS}"
    if not (type(has_gauss) is int and has_gauss in (0, 1)) or not _finite_float(numpy_state["gauss"]):
        return (f"numpy's has_gauss and gauss are {shown(has_gauss)} and {shown(numpy_state['gauss'])}, not 0 or 1 "
                "and a finite float")
    if type(python_state["version"]) is not int:
        return f"Python's version is {shown(python_state['version'])}, not an int"
    problem = _words_problem(python_state["state"], PYTHON_WORDS)
    if problem is not None:
        return f"Python's state is {problem}"
    if not (gauss_next is None or _finite_float(gauss_next)):
        return f"Python's gauss_next is {shown(gauss_next)}, not a finite float or None"
    try:
        np.random.RandomState().set_state(_numpy_state(numpy_state))
    except (ValueError, TypeError) as exc:
        return f"numpy's: {exc}"
    try:
        random.Random().setstate(_python_state(python_state))
    except (ValueError, TypeError) as exc:
        return f"Python's: {exc}"
    return None


def _words_problem(value: Any, length: int) -> str | None:
    """What keeps ``value`` from being a tensor of ``length`` int64 words, each a 32-bit one, that MT19937 can draw
    from (its 19937 bits, the top bit of the first word and the next 623 words, not all zero), or None.

    Whether it holds data is asked first (:func:`genzoo.checks.data_problem`): a meta or sparse tensor of the
    right dtype and shape passes a weights-only load, and the comparisons below were then torch's traceback
    (nineteenth hostile pass, F1).
    """
    words = f"{length} int64 words below 2**32"
    problem = data_problem(value) if isinstance(value, torch.Tensor) else None
    if problem is not None:
        return f"{problem}, not {words}"
    if not (isinstance(value, torch.Tensor) and value.dtype == torch.int64 and tuple(value.shape) == (length,)
            and bool(((value >= 0) & (value < 2**32)).all())):
        return f"not {words}"
    if value[0] < 2**31 and not bool(value[1:NUMPY_WORDS].any()):
        return "the all-zero state of MT19937, which draws zeros for ever"
    return None


def _finite_float(value: Any) -> bool:
    """Exactly a finite ``float``: a cached Gaussian that is NaN or infinite would be the stream's next draw."""
    return type(value) is float and math.isfinite(value)


def _numpy_state(value: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's numpy state as ``np.random.set_state`` takes it."""
    return {"bit_generator": "MT19937", "state": {"key": value["key"].numpy().astype(np.uint32), "pos": value["pos"]},
            "has_gauss": value["has_gauss"], "gauss": value["gauss"]}


def _python_state(value: dict[str, Any]) -> tuple[Any, ...]:
    """A checkpoint's Python state as ``random.setstate`` takes it."""
    return value["version"], tuple(value["state"].tolist()), value["gauss_next"]
