"""Build what training and evaluation both need: the device, the data splits, a model, a finished run's model."""

from __future__ import annotations

import copy
import hashlib
import inspect
import itertools
import numbers
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from genzoo import distributed
from genzoo.checkpoint import Position, check_finite_weights, check_matches, checkpoint_file, load_checkpoint
from genzoo.checks import is_count, listed, printable, shown
from genzoo.data import Split, TensorSplit, resolve_data_root
from genzoo.errors import (
    PLUGIN_FAULTS,
    GenzooError,
    PluginFault,
    RefusedOptions,
    blamed,
    describe,
    first_line,
    memory_line,
    out_of_memory,
    warn,
)
from genzoo.model import Model, ModelConfig, refuse_changed_config
from genzoo.plugin_registry import BUILTIN_DISTRIBUTION, registry
from genzoo.run_folder import CONFIG, METRICS, RunDescription, in_use, plugin_kind, read_metrics, read_run
from genzoo.sampler import CopiedSplit, Sampler, defaults_kept, model_call
from genzoo.sampler_cache import fit_cached
from genzoo.seeding import forked, seed_streams
from genzoo.train_config import TrainConfig


def select_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU; asking for CUDA without one, or for a GPU it lacks, is an error.

    The form is checked on every machine: torch refuses ``cuda:x`` with a traceback and wraps ``cuda:200`` round
    to ``cuda:-56`` (fifteenth hostile pass, F7), and a machine without a GPU would hide both behind "no GPU".
    """
    if not isinstance(name, str):  # from Python code (``load_model(run, device=7)``)
        raise GenzooError(f"device must be a string (auto, cpu, cuda or cuda:N), got {name!r:.60}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    cuda = re.fullmatch(r"cuda(?::(0|[1-9][0-9]{0,8}))?", name)
    if cuda is None:
        raise GenzooError(f"unknown device {name!r}; use auto, cpu or cuda (cuda:N for the GPU of index N)")
    if not torch.cuda.is_available():
        raise GenzooError(f"--device {name} was requested but no CUDA GPU is available")
    if cuda[1] is not None and int(cuda[1]) >= (count := torch.cuda.device_count()):
        gpus = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise GenzooError(f"--device {name}: this machine has {count} CUDA GPU{'s' * (count != 1)} ({gpus}); "
                          "give one of those, or cuda")
    return torch.device(name)


def check_batch_size(config: TrainConfig, train_size: int, model: Model, processes: int | None = None) -> None:
    """Refuse a batch larger than the training split, or a split ``model`` cannot train on to the end.

    Checked before a run folder exists and before a resume trains (see
    :meth:`Model.check_training_split`); on ``processes`` (default: this run's world
    size), so that a process about to launch them can check for its ranks.
    """
    if config.batch_size > train_size:
        raise GenzooError(
            f"batch size {config.batch_size} is larger than the training split "
            f"({train_size} images)"
        )
    cls = type(model)
    if not is_count(cls.min_batch_size):  # compared with a batch's size below: None was a TypeError traceback
        raise GenzooError(f"{cls.__name__}.min_batch_size must be a positive integer, got {shown(cls.min_batch_size)}")
    if not isinstance(inspect.getattr_static(cls, "check_training_split"), (classmethod, staticmethod)):
        raise GenzooError(f"{cls.__name__}.check_training_split must be a @classmethod, as Model's is: it is "
                          "called on the class (config, images, batch_size), before a model trains")
    with blamed(f"{cls.__name__}.check_training_split"), \
            model_call(f"{cls.__name__}.check_training_split", "checking the training split"):
        answer = cls.check_training_split(model.config, train_size, config.batch_size)
    # An objection returned instead of raised was ignored, and the run trained (eighteenth hostile pass, M13).
    if answer is not None:
        raise PluginFault(f"{cls.__name__}.check_training_split returned {shown(answer)}, not None: it must raise "
                          "GenzooError with its objection (and return None when the split will do)")
    processes = processes or distributed.world()[1]
    smallest = train_size % config.batch_size or config.batch_size
    if processes > 1 and smallest // processes < max(1, type(model).min_batch_size):
        raise GenzooError(
            f"{processes} processes share each batch of {config.batch_size} images, but {train_size} training images "
            f"leave a batch of {smallest}, too few for {type(model).__name__} to give each process "
            f"{max(1, type(model).min_batch_size)}; choose another --batch-size or --train-limit"
        )


def check_state_complete(model: Model, train: Split) -> None:
    """Refuse, in one line before any run folder, a model that computes with state its state_dict does not hold.

    A layer kept in a plain list (not an ``nn.ModuleList``), say, is neither trained nor saved:
    every later load builds it afresh, so eval, resume, sample and export would use other
    weights, silently; a non-persistent buffer (or plain attribute) that training changes is
    lost the same way. Two fresh copies of the model, built with different random weights and
    both given this one's state_dict, must compute alike on a few training images: ``loss`` in
    training mode with gradients, as the trainer calls it, then ``evaluate``, ``sample``,
    ``reconstruct`` and ``encode`` (as the model can) in eval mode, each under one seed (torch's, numpy's and
    Python's streams alike: a model drawing from numpy computes alike too), on the CPU.
    The first has then run a training forward pass (that ``loss``): its config must be as it was
    built (every load builds the model from that config), and a third copy given its state_dict, as
    a checkpoint's load would be, must agree with it on :data:`AFTER_TRAINING`. Then fresh copies
    given its state_dict must compute each method of :data:`EVAL_METHODS` as the first, which has run
    them all, does, each method the first a copy runs (:func:`refuse_unkept_state`): state ``evaluate``
    sets and ``sample`` reads was in both copies compared before, as the run's ``samples.png`` (drawn
    after each epoch's test pass) is and ``genzoo sample RUN`` is not (eighteenth hostile pass, F14).
    No optimiser steps (a model's own ``training_step`` may count or hook its steps: the trainer
    checks the first step, :func:`refuse_unkept_state` too). The model itself and the global random
    streams are left untouched; a method the copies cannot run there is left to the other checks.
    """
    name = type(model).__name__
    x = next(iter(train.batches(min(len(train), 2))), None)
    if not isinstance(x, torch.Tensor) or not len(x):
        return  # a split that breaks its protocol is the trainer's to refuse
    x = x.detach().cpu()
    state = _state_of(model)
    with forked([]):  # only the CPU's: torch.manual_seed would reseed the GPUs too
        first, second = (_twin(model, state, seed) for seed in (1, 2))
        built = copy.deepcopy(first.config)
        computed = _computed(first, x)
        refuse_changed_config(first, built, "as it computed (a training forward pass, then each of its methods "
                                            "once)")
        _refuse_unlike(first, x, computed, _computed(second, x), f"two {name}s given the same state_dict")
        after: dict[str, Any] = {}
        if computed["loss"] is not None:  # else no training forward pass ran (a model's own training_step alone)
            loaded = _twin(model, _state_of(first), 3)
            guess = _named(_differing(_unkept(first), _unkept(loaded)),
                           " (a non-persistent buffer or plain attribute that training changes?)")
            after = _computed(first, x, AFTER_TRAINING)
            _refuse_unlike(first, x, after, _computed(loaded, x, AFTER_TRAINING),
                           f"a {name} that has run a training forward pass and a fresh {name} given its state_dict",
                           guess)
        refuse_unkept_state(first, x, f"a {name} that has run each of its methods and a fresh {name} given its "
                                      "state_dict (running each first, as after a load)",
                            " (a non-persistent buffer or plain attribute that one of its methods sets?)",
                            EVAL_METHODS, {key: value for key, value in after.items() if key in EVAL_METHODS})
        if type(model).after_training is Model.after_training or not _ran_after_training(first, train):
            return
        refuse_changed_config(first, built, "in after_training")
        loaded = _twin(model, _state_of(first), 4)
        _refuse_unlike(first, x, _computed(first, x), _computed(loaded, x),
                       f"a {name} that has run after_training and a fresh {name} given its state_dict",
                       " (a non-persistent buffer or plain attribute that after_training sets?)")


#: What a model's method that changed torch's defaults was doing (:func:`genzoo.sampler.model_call`'s line).
_CHECK_RAN = "genzoo's state check ran it"
#: Its run of ``after_training``, which only the check before the run folder makes.
_CHECK_RAN_BEFORE = "the state check ran it before training"

#: How many training images the state check gives a model's ``after_training`` (the run gives it the whole split).
AFTER_TRAINING_IMAGES = 64


def _ran_after_training(model: Model, train: Split) -> bool:
    """Whether ``model.after_training`` ran, on the CPU, on a copy of the first :data:`AFTER_TRAINING_IMAGES` of
    ``train``, as the trainer calls it after the last epoch (in training mode, gradients on); one that cannot run
    on them is left to the run itself. One that changed torch's defaults, even as it failed, is refused (they are
    put back): grad mode left off failed the run's first step, blaming ``loss`` (eighteenth hostile pass, F9)."""
    model.train()
    seed_streams(0, gpus=False)
    with model_call(f"{type(model).__name__}.after_training", _CHECK_RAN_BEFORE):
        try:
            model.after_training(CopiedSplit(train.take(min(len(train), AFTER_TRAINING_IMAGES)).to("cpu")))
        except KeyboardInterrupt:
            raise
        except PLUGIN_FAULTS:
            return False
    return True


def _state_of(model: Model) -> dict[str, Any]:
    """``model.state_dict()`` on the CPU: tensors detached (loading copies them), other values (``get_extra_state``'s)
    deep-copied."""
    try:
        return {key: value.detach().cpu() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
                for key, value in model.state_dict().items()}
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS as exc:  # a get_extra_state that raises, or returns what cannot be copied
        raise GenzooError(f"{type(model).__name__}.state_dict() failed: {first_line(describe(exc))}") from exc


def _twin(model: Model, state: dict[str, Any], seed: int, device: torch.device | None = None) -> Model:
    """A fresh copy of ``model``, built from a copy of its config with random weights of ``seed`` (on ``device``,
    else the CPU), given ``state``."""
    name = type(model).__name__
    seed_streams(seed, gpus=False)
    try:
        twin = type(model).build(copy.deepcopy(model.config), model.sample_shape)
        if device is not None:
            twin.to(device)
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS as exc:  # every load builds the model again from its (saved) config
        if out_of_memory(exc):  # not the config's fault (twenty-fourth hostile pass, files M1)
            raise GenzooError(f"a second {name}, which genzoo builds to check that a load gives the same model: "
                              f"{memory_line(exc)}") from exc
        raise GenzooError(f"a second {name} cannot be built from the config the first was built with "
                          f"({first_line(describe(exc))}), so no run of it could be loaded; {name}.__init__ must "
                          "leave the config it is given as it is (parse options into attributes of its own)") from exc
    try:
        twin.load_state_dict(state)
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS as exc:
        raise GenzooError(f"{name}'s own state_dict does not load into a freshly built {name}: "
                          f"{first_line(describe(exc))}") from exc
    return twin


def loaded_copy(model: Model) -> Model:
    """A fresh build of ``model`` given its state_dict, on its device, as a resume's load makes one (the random
    streams put back): what a deep copy keeps and no load does, the attributes set on its parameters, is gone."""
    device = model.device
    with forked(_gpus(device)):
        return _twin(model, _state_of(model), 5, device)


#: What the state check compares between a copy that has run a training forward pass and one given its state_dict:
#: a resumed step's numbers, eval's, and what ``genzoo sample`` draws again of the run's ``samples.png``.
AFTER_TRAINING = ("loss", "evaluate", "sample")

#: The methods a model computes in eval mode, any of which a load (``genzoo sample``, eval, a sampler's fit) may
#: call first.
EVAL_METHODS = ("evaluate", "sample", "reconstruct", "encode")


def refuse_unkept_state(used: Model, x: torch.Tensor, who: str, guess: str,
                        methods: tuple[str, ...] = (*EVAL_METHODS, "loss"),
                        computed: dict[str, Any] | None = None) -> None:
    """Refuse ``used``'s class, in one line, if fresh copies given its state_dict compute ``methods`` on ``x``
    otherwise than ``used`` does (which may have run anything: a training step, each of its methods).

    Each method is the first a fresh copy runs, as after a load: ``genzoo sample RUN`` calls ``sample`` on a
    model no ``evaluate`` ran on, eval calls ``reconstruct`` first, a resume ``loss`` or ``training_step``; a
    copy that ran ``evaluate`` before ``sample``, as the state check's copies did, shares what ``evaluate`` left
    in a plain attribute. ``used`` computes the eval-mode methods first and ``loss`` last, so that the copies'
    persistent state is ``used``'s as each method ran (a batch norm's running statistics move in ``loss``);
    ``computed`` holds results ``used`` already gave in its present state. The copies are one build and deep
    copies of it made before it runs (a model that cannot be deep-copied is built again). Where a non-persistent
    buffer or a plain tensor or number attribute differs between ``used`` and a fresh copy, the line names it;
    else it says ``guess``. Run on ``x``'s device and under seeds of its own, torch's random streams put back.
    """
    device, computed = x.device, computed or {}
    offered = [method for method in methods if method in ("loss", "evaluate") or getattr(type(used), f"can_{method}")]
    state, kept = _state_of(used), _unkept(used)
    differ: list[str] = []
    fresh: dict[str, Any] = {}
    with forked(_gpus(device)):
        results = {**computed, **_computed(used, x, tuple(method for method in offered if method not in computed))}
        for method, copy_ in zip(offered, _fresh_copies(used, state, device, len(offered))):
            if not fresh:  # the first copy, before it runs anything
                differ = _differing(kept, _unkept(copy_))
            fresh.update(_computed(copy_, x, (method,)))
        _refuse_unlike(used, x, {key: results[key] for key in offered}, fresh, who, _named(differ, guess))


def _named(differ: list[str], guess: str) -> str:
    """What the state check's line says is kept outside the state_dict: what :func:`_differing` found, else
    ``guess``."""
    if not differ:
        return guess
    return f" (they differ in {listed(differ, '; ')})"


def _fresh_copies(model: Model, state: dict[str, Any], device: torch.device, count: int) -> Iterator[Model]:
    """``count`` fresh copies of ``model`` given ``state`` on ``device``: one build, deep-copied before it is
    handed out last."""
    fresh = _twin(model, state, 5, device)
    for _ in range(count - 1):
        try:  # made inside, handed out outside: a stop signal while a copy is used closes the generator at its
            # yield, and a yield inside this try would catch its GeneratorExit (PLUGIN_FAULTS is every BaseException)
            made = copy.deepcopy(fresh)
        except KeyboardInterrupt:
            raise
        except PLUGIN_FAULTS:  # a model holding what cannot be deep-copied (a lock, an open file)
            made = _twin(model, state, 5, device)
        yield made
    yield fresh


def _unkept(model: Model) -> dict[str, tuple[str, Any]]:
    """What of ``model``'s state no state_dict holds, where it can be named: each non-persistent buffer and each
    plain attribute holding a tensor or a number, of every module, by its dotted name (copies of the tensors);
    and each such attribute of the losses it was handed (``losses.FIELD.NAME``), which are no modules: a loss
    plugin keeping state was blamed on the model alone (nineteenth hostile pass, M5)."""
    found: dict[str, tuple[str, Any]] = {}
    for prefix, module in model.named_modules():
        dotted = f"{prefix}." if prefix else ""
        for name in getattr(module, "_non_persistent_buffers_set", ()):
            buffer = module._buffers.get(name)
            if isinstance(buffer, torch.Tensor):
                found[dotted + name] = ("a non-persistent buffer", buffer.detach().clone())
        found.update(_plain_attributes(module, dotted, "a plain attribute"))
    for field, loss in model.losses.items():
        who = f"a plain attribute of its loss {shown(getattr(loss, 'name', type(loss).__name__))}"
        found.update(_plain_attributes(loss, f"losses.{field}.", who))
    return found


def _plain_attributes(holder: object, dotted: str, kind: str) -> dict[str, tuple[str, Any]]:
    """``holder``'s attributes holding a tensor or a number, by ``dotted`` name (copies of the tensors); those
    starting with ``_`` and ``training`` (a module's mode) left out."""
    found: dict[str, tuple[str, Any]] = {}
    for name, value in getattr(holder, "__dict__", {}).items():
        if name.startswith("_") or name == "training":
            continue
        if isinstance(value, torch.Tensor):
            found[dotted + name] = (kind, value.detach().clone())
        elif type(value) in (int, float, bool):
            found[dotted + name] = (kind, value)
    return found


def _differing(used: dict[str, tuple[str, Any]], fresh: dict[str, tuple[str, Any]]) -> list[str]:
    """Each of :func:`_unkept`'s entries unlike between a model and a fresh copy, as ``z_mean, a plain
    attribute``."""
    return [f"{printable(name)}, {kind}" for name, (kind, value) in used.items()
            if name not in fresh or not _alike_value(value, fresh[name][1])]


def _alike_value(a: Any, b: Any) -> bool:
    """Whether two values of :func:`_unkept` agree: tensors as :func:`_alike` compares them (on the CPU), numbers
    equal."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return _alike(a.cpu(), b.cpu())
    return type(a) is type(b) and (a == b or a != a and b != b)


def refuse_unkept_optimizer_state(model: Model, trained: dict[str, torch.optim.Optimizer],
                                  fresh: dict[str, torch.optim.Optimizer], when: str) -> None:
    """Refuse ``model``'s class, in one line, if one of its ``trained`` optimisers holds in a plain attribute what a
    ``fresh`` one of its kind (the same name, from ``configure_optimizers`` of a fresh build of the model) given its
    state_dict does not: state no checkpoint holds, which every resume starts afresh.

    A Lookahead-style ``Adam`` subclass kept its slow weights and its step count in plain attributes of the
    optimiser: it trained and resumed with exit 0, and the resumed run differed from one never stopped (twentieth
    hostile pass, plugins F7). The attributes compared are those torch's own optimisers do not set, as for a model:
    each name not starting with ``_`` but ``state`` and ``param_groups`` (which the state_dict holds), and each entry
    of ``defaults`` (what a fresh one is built with: a count kept there escaped, twenty-first pass, plugins F2);
    then the attributes set on its parameters (slow weights kept as ``p.slow_w`` escaped: plugins F3), parameter by
    parameter. ``when`` says how far the run has trained.
    """
    for name, optimizer in trained.items():
        kind = type(optimizer).__name__
        differ = unkept_optimizer_state(optimizer, fresh[name])
        if differ:
            many = len(differ) > 1
            raise GenzooError(
                f"{type(model).__name__}'s optimiser {printable(name)!r} ({kind}) keeps state outside its state_dict: "
                f"{when}, it and a fresh {kind} given its state_dict differ in {listed(differ)} (plain "
                f"attribute{'s' * many} of the optimiser), so no checkpoint holds {'them' if many else 'it'} and "
                f"every resume would start {'them' if many else 'it'} afresh; {_KEEP_OPTIMIZER_STATE}")
        held = {id(param): key for key, param in model.named_parameters()}
        differ = unkept_parameter_attributes(optimizer, fresh[name], held)
        if differ:
            raise GenzooError(
                f"{type(model).__name__}'s optimiser {printable(name)!r} ({kind}) holds parameters with state outside "
                f"the state_dict: {when}, they and those of a fresh {kind} given its state_dict differ in "
                f"{listed(differ)} (attributes set on the parameter tensors), which no checkpoint holds and every "
                f"resume would start afresh; {_KEEP_OPTIMIZER_STATE}")


#: What the optimiser checks' lines advise.
_KEEP_OPTIMIZER_STATE = ("keep an optimiser's state in self.state (by parameter), or put it in what its state_dict "
                         "returns and take it back in load_state_dict")


def unkept_optimizer_state(trained: torch.optim.Optimizer, fresh: torch.optim.Optimizer) -> list[str]:
    """The names of ``trained``'s plain attributes (see :func:`refuse_unkept_optimizer_state`) unlike ``fresh``'s,
    one missing from either included; an entry of ``defaults`` as ``defaults['name']``."""
    places = _parameter_places(trained), _parameter_places(fresh)
    differ = _unlike(_optimizer_attributes(trained), _optimizer_attributes(fresh), places)
    defaults = _unlike(_loaded_defaults(trained), _loaded_defaults(fresh), places)
    return [printable(str(name)) for name in differ] + [f"defaults[{printable(repr(key))}]" for key in defaults]


def unkept_parameter_attributes(trained: torch.optim.Optimizer, fresh: torch.optim.Optimizer,
                                names: dict[int, str]) -> list[str]:
    """The attributes set on ``trained``'s parameters (not starting with ``_``) unlike those on ``fresh``'s at the
    same places, one missing from either included, as ``PARAMETER.ATTRIBUTE`` (by the model's name of the
    parameter, ``names`` by ``id``, else its place in the param groups)."""
    places = _parameter_places(trained), _parameter_places(fresh)
    differ: list[str] = []
    for place, (mine, theirs) in enumerate(zip(_parameters(trained), _parameters(fresh))):
        where = printable(names.get(id(mine), f"parameter {place}"))
        differ += [f"{where}.{printable(str(key))}"
                   for key in _unlike(_public_attributes(mine), _public_attributes(theirs), places)]
    return differ


def _public_attributes(holder: object) -> dict[Any, Any]:
    """``holder``'s own attributes not starting with ``_`` (torch's, DDP's flags on a parameter do)."""
    return {key: value for key, value in getattr(holder, "__dict__", {}).items()
            if not (isinstance(key, str) and key.startswith("_"))}


def _unlike(mine: dict[Any, Any], theirs: dict[Any, Any], places: tuple[dict[int, int], dict[int, int]]) -> list[Any]:
    """The keys of ``mine`` and ``theirs`` whose values :func:`_same_held` tells apart, one missing from either
    included."""
    return [key for key in {**mine, **theirs}
            if key not in mine or key not in theirs or not _same_held(mine[key], theirs[key], places)]


#: What torch keeps in an optimiser's attributes of these names, not starting with ``_``: the state_dict holds
#: ``state`` and ``param_groups``, ``defaults`` is what a fresh optimiser is built with (compared entry by entry),
#: and ``torch.amp``'s GradScaler sets ``grad_scale`` and ``found_inf`` around a step (its own state).
_TORCH_OPTIMIZER_FIELDS = ("defaults", "state", "param_groups", "grad_scale", "found_inf")


def _optimizer_attributes(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer``'s attributes that torch's own optimisers do not set (:data:`_TORCH_OPTIMIZER_FIELDS` and
    those starting with ``_``: torch's hooks and flags, which change as it steps), by name."""
    return {name: value for name, value in _public_attributes(optimizer).items() if name not in _TORCH_OPTIMIZER_FIELDS}


def _loaded_defaults(optimizer: torch.optim.Optimizer) -> dict[Any, Any]:
    """``optimizer.defaults`` as loading a state_dict leaves them (torch's ``load_state_dict`` adds
    ``differentiable``, False, where a subclass built them without it); none when they are no dict."""
    held = getattr(optimizer, "__dict__", {}).get("defaults")
    return {"differentiable": False, **held} if isinstance(held, dict) else {}


def _parameters(optimizer: torch.optim.Optimizer) -> list[Any]:
    """``optimizer``'s parameters in the order of its param groups (as its state_dict numbers them)."""
    return [param for group in optimizer.param_groups for param in group["params"]]


def _parameter_places(optimizer: torch.optim.Optimizer) -> dict[int, int]:
    """Each of ``optimizer``'s parameters, by ``id``, to its place in its param groups (as its state_dict numbers
    them)."""
    return {id(param): place for place, param in enumerate(_parameters(optimizer))}


def _same_held(a: Any, b: Any, places: tuple[dict[int, int], dict[int, int]], depth: int = 0) -> bool:
    """Whether two values of optimisers' plain attributes agree: tensors as :func:`_alike` compares them (on the
    CPU), numpy arrays alike, numbers (numpy's too: a count kept in an ``np.int64`` escaped, twenty-first hostile
    pass, plugins F6), strings and None equal, lists, tuples and dicts part by part, four levels deep (a dict's keys
    that are its optimiser's parameters or their ``id``, ``places``, matched by their places); anything else agrees
    (it cannot be told)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and _alike(a.detach().cpu(),
                                                                                      b.detach().cpu())
    if type(a) is not type(b):
        return False
    if a is None or isinstance(a, (numbers.Number, str, np.generic)):
        return bool(a == b or a != a and b != b)
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and bool(
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if depth >= 4:
        return True
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(_same_held(x, y, places, depth + 1) for x, y in zip(a, b))
    if isinstance(a, dict):
        mine = {_placed(key, places[0]): value for key, value in a.items()}
        theirs = {_placed(key, places[1]): value for key, value in b.items()}
        return mine.keys() == theirs.keys() and all(_same_held(mine[key], theirs[key], places, depth + 1)
                                                    for key in mine)
    return True


def _placed(key: Any, places: dict[int, int]) -> Any:
    """A dict's ``key`` as :func:`_same_held` matches it: a parameter of the optimiser, or its ``id`` (constant
    settings by ``id(p)`` were refused as state, the ids differing in any fresh optimiser: twenty-first hostile
    pass, plugins M1), by its place."""
    if isinstance(key, torch.Tensor) and id(key) in places:
        return ("parameter", places[id(key)])
    if type(key) is int and key in places:
        return ("parameter", places[key])
    return key


def _gpus(device: torch.device) -> list[int]:
    """The GPU whose random stream computing on ``device`` draws from, for ``fork_rng`` (none on the CPU)."""
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _seed(device: torch.device) -> None:
    """Seed the random streams a method computing on ``device`` draws from: torch's CPU one, numpy's and Python's,
    and ``device``'s own."""
    seed_streams(0, gpus=False)
    for gpu in _gpus(device):
        torch.cuda.default_generators[gpu].manual_seed(0)


def _computed(model: Model, x: torch.Tensor, methods: tuple[str, ...] | None = None) -> dict[str, Any]:
    """What each of ``model``'s methods the state check compares (or those of ``methods``, in their order) gives on
    ``x``, each under one seed (None: it raised)."""
    cls = type(model)
    calls: dict[str, Callable[[], Any]] = {  # the loss first, in training mode: the others must leave the state alone
        "loss": lambda: model.loss(x.clone()), "evaluate": lambda: model.evaluate(x.clone())}
    if cls.can_sample:
        calls["sample"] = lambda: model.sample(len(x))
    if cls.can_reconstruct:
        calls["reconstruct"] = lambda: model.reconstruct(x.clone())
    if cls.can_encode:
        calls["encode"] = lambda: model.encode(x.clone())
    results: dict[str, Any] = {}
    for method in methods if methods is not None else tuple(calls):
        if method not in calls:
            continue
        model.train(method == "loss")
        _seed(x.device)
        # What a model does only with gradients happens too; torch's defaults it changes would reach the run.
        with torch.set_grad_enabled(method == "loss"), model_call(f"{cls.__name__}.{method}", _CHECK_RAN):
            try:
                results[method] = _detached(calls[method]())
            except KeyboardInterrupt:
                raise
            except PLUGIN_FAULTS:
                results[method] = None
    return results


def _detached(value: Any) -> Any:
    """``value`` with its tensors detached, in dicts, lists and tuples too (the loss's graph is not kept)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {key: _detached(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_detached(item) for item in value]
    return value


def _refuse_unlike(model: Model, x: torch.Tensor, computed: dict[str, Any], other: dict[str, Any], who: str,
                   guess: str = "") -> None:
    """Refuse ``model``'s class if it ``computed`` other results on ``x`` than another copy of it did (``other``).

    An eval-mode method whose results ``model`` does not repeat under one seed draws from a random stream genzoo
    does not seed (numpy's, say): no state, and not this check's to judge.
    """
    name = type(model).__name__
    differ = [method for method in computed if computed[method] is not None and other[method] is not None
              and not _alike(computed[method], other[method])]
    again = _computed(model, x, tuple(method for method in differ if method != "loss"))
    differ = [method for method in differ if method not in again or _alike(computed[method], again[method])]
    if differ:
        raise GenzooError(
            f"{name} computes with state its state_dict does not hold: {who} compute {', '.join(differ)} "
            f"differently{guess}, so no checkpoint or export would hold all of it and every load would differ; "
            "keep layers in nn.ModuleList / nn.ModuleDict (not a plain list or dict), tensors as nn.Parameter, or "
            "register_buffer (persistent) for the ones not trained, other values in get_extra_state")


def _alike(a: Any, b: Any) -> bool:
    """Whether two results agree: tensors to float noise, dicts, lists and tuples part by part (anything else
    agrees: what is no comparable tensor is refused by the checks of each method's results)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        try:
            return a.shape == b.shape and a.dtype == b.dtype and (
                torch.equal(a, b) or ((a.is_floating_point() or a.is_complex())
                                      and torch.allclose(a, b, rtol=1e-4, atol=1e-6, equal_nan=True)))
        except (RuntimeError, NotImplementedError):  # tensors torch cannot compare (meta, sparse): refused elsewhere
            return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_alike(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(_alike, a, b))
    return True


def load_split(dataset: str, split: str, data_root: str | None, limit: int | None,
               device: torch.device, download: bool = True, recorded_in: Path | None = None) -> Split:
    """One split of a registered dataset, cut to its first ``limit`` images, on ``device``.

    ``recorded_in``: the run file ``data_root`` was read from, when the user did not name it.

    It must be a :class:`~genzoo.data.Split` of float32 images in [0, 1], of the shape the
    dataset declares, and not empty: models are built from that shape and dtype, and other
    images failed only inside the first step (a traceback, after the run folder was made),
    were trained and scored with no word (0..255 pixels), or, empty, ended a run in a
    traceback after its epochs. Every command loads its splits here, so one check covers all.
    """
    entry = registry().entry("dataset", dataset)
    root = resolve_data_root(data_root, recorded_in)
    try:
        # Guarded as every other plugin call is: a dataset that changed the working directory, torch's defaults
        # or a standard stream while loading was neither put back nor named (twentieth look, left by plugins F6).
        with defaults_kept(entry.origin, f"loading its {split} split", _DATASET_CONTRACT):
            data = entry.obj(root, download=download)
            loaded = data.load(split)
    except (GenzooError, OSError, KeyboardInterrupt):  # genzoo's own line, the disk's (a missing file), Ctrl-C
        raise
    except PLUGIN_FAULTS as exc:  # a bug in the plugin's own code (KeyError, ValueError, ...)
        raise GenzooError(f"{entry.origin} failed to load its {split} split: {first_line(describe(exc))}") from exc
    loaded = _guarded_split(_split_of(dataset, loaded, f"load({split!r})"), entry.origin, split)
    try:
        return _checked_split(dataset, split, loaded, tuple(data.sample_shape), limit, device)
    except (GenzooError, OSError, KeyboardInterrupt):
        raise
    except PLUGIN_FAULTS as exc:
        raise GenzooError(f"{entry.origin}: its {split} split raised {first_line(describe(exc))} "
                          "while being read") from exc


_DATASET_CONTRACT = "the Dataset contract: loading a split leaves torch's defaults and the process's settings alone"
#: What the Split protocol promises, quoted when a split breaks it.
SPLIT_PROTOCOL = ("a split's batches(b) yields every image once, as float32 tensors of b images (the last may "
                  "hold fewer), and its len() counts images, not batches")
#: What a resume needs of a split's shuffled batches, quoted when a split breaks it.
RESUME_PROTOCOL = ("batches(b, shuffle=True, generator=g, skip=k) draws its order from g alone (torch.randperm(n, "
                   "generator=generator), never torch's global stream or a generator of its own) and drops that "
                   "order's first k batches")


_SPLIT_CONTRACT = "the Dataset contract: a split's methods leave torch's defaults and the process's settings alone"
#: What :meth:`GuardedSplit.batches` gets from a split whose batches are over.
_OVER = object()


def _guarded_split(split: Split, who: str, name: str) -> Split:
    """``split`` as :class:`GuardedSplit`, unless it is genzoo's own :class:`TensorSplit` (genzoo's code alone) or no
    split (which :func:`_split_of` then refuses)."""
    if type(split) is TensorSplit or isinstance(split, GuardedSplit) or not _is_split(split):
        return split
    return GuardedSplit(split, who, name)


class GuardedSplit:
    """A dataset plugin's split, each of its calls guarded as its dataset's ``load`` is (:func:`defaults_kept`):
    torch's defaults and the process's settings put back, a change one line naming the dataset.

    Only ``load`` was guarded: a split whose ``batches`` moved the working directory (to open its shards by
    relative names) had the whole run written into that folder, exit 0, ``eval`` then finding no run where it was
    said to be; one that turned grad mode off had the first step blame the model (twenty-third hostile pass,
    plugins F1 and M2). Its other attributes (``images``, ``labels``) are the split's.
    """

    def __init__(self, split: Split, who: str, name: str) -> None:
        self._split, self._who, self._name = split, who, name

    def _kept(self, what: str) -> Any:
        return defaults_kept(self._who, f"{what} of its {self._name} split", _SPLIT_CONTRACT)

    def __len__(self) -> int:
        with self._kept("counting the images"):
            return len(self._split)

    def batches(self, batch_size: int, **options: Any) -> Iterator[torch.Tensor]:
        with self._kept("batching the images"):
            batches = iter(self._split.batches(batch_size, **options))
        try:
            while True:
                with self._kept("making a batch"):
                    batch: Any = next(batches, _OVER)
                if batch is _OVER:
                    return
                yield batch
        finally:  # a consumer that stops early (a --fid-curve point's few images) closes the split's batches too
            close = getattr(batches, "close", None)
            if callable(close):
                with self._kept("closing the batches"):
                    close()

    def take(self, n: int) -> Split:
        with self._kept(f"taking {n} images"):
            return _guarded_split(self._split.take(n), self._who, self._name)

    def to(self, device: torch.device | str) -> Split:
        with self._kept("moving the images"):
            return _guarded_split(self._split.to(device), self._who, self._name)

    def __getattr__(self, attribute: str) -> Any:
        if attribute == "_split":  # not set yet (while unpickling or copying): no recursion
            raise AttributeError(attribute)
        return getattr(self._split, attribute)


def _is_split(got: Any) -> bool:
    """Whether ``got`` has a split's methods."""
    return all(callable(getattr(got, method, None)) for method in ("__len__", "batches", "take", "to"))


def _split_of(dataset: str, got: Any, call: str, images: int | None = None) -> Split:
    """``got``, what ``call`` on a dataset or its split returned, if it is a split (of ``images`` images)."""
    if not _is_split(got):
        raise GenzooError(f"dataset {dataset!r} returned a {type(got).__name__} from {call}, not a "
                          "split (an object with __len__, batches, take and to, such as genzoo.TensorSplit)")
    if images is not None and len(got) != images:
        raise GenzooError(f"dataset {dataset!r}: {call} gave a split of {len(got)} images, not {images}")
    split: Split = got
    return split


def _checked_split(dataset: str, split: str, loaded: Split, shape: tuple[int, ...], limit: int | None,
                   device: torch.device) -> Split:
    """``loaded`` cut to ``limit`` and moved to ``device``, each step checked against the Split protocol.

    A split that yields ``(images, labels)`` pairs, drops the last partial batch, ignores
    ``batch_size`` or ``take``'s limit, or counts batches in ``len()`` (a DataLoader's habits)
    failed in a traceback, or trained and scored on other images than the run records with
    no word. All is read once, in batches of at most 10,000 cut so that the last is partial
    (one ignoring ``batch_size`` or dropping it is seen): the pass the range check made anyway.
    """
    whole, wanted = len(loaded), limit if limit is not None else 1  # without a limit, take(1) is tried
    taken = _split_of(dataset, loaded.take(wanted), f"its {split} split's take({wanted})")
    if limit is not None:
        loaded = taken
    images = len(loaded)
    if not images:
        raise GenzooError(f"dataset {dataset!r} gave no {split} images")
    size = min(10_000, images // 2 + 1)
    while size > 1 and images % size == 0:
        size -= 1
    seen, lows, highs, nans = 0, [], [], []
    broke = f"dataset {dataset!r}: its {split} split's batches({size})"
    for x in loaded.batches(size):
        if not isinstance(x, torch.Tensor):
            raise GenzooError(f"{broke} yielded a {type(x).__name__}, not a tensor of images (yield the images "
                              "alone, without labels)")
        if tuple(x.shape[1:]) != shape:
            raise GenzooError(f"dataset {dataset!r} gave {split} images of shape {tuple(x.shape[1:])}, "
                              f"but it declares {shape}")
        if x.dtype != torch.float32:
            raise GenzooError(f"dataset {dataset!r} gave {split} images of dtype {x.dtype}; images must be "
                              "float32 in [0, 1] (8-bit pixels divided by 255)")
        if x.requires_grad:  # a model's every step would add gradients into the data (genzoo.TensorSplit detaches)
            raise GenzooError(f"dataset {dataset!r} gave {split} images that require grad; a split holds data, not "
                              "a tensor being trained: detach them (x.detach())")
        if seen + x.shape[0] > images:
            raise GenzooError(f"{broke} yielded more than the {images} images its len() says it holds; "
                              f"{SPLIT_PROTOCOL}")
        if x.shape[0] != min(size, images - seen):
            raise GenzooError(f"{broke} yielded a batch of {x.shape[0]} images where {min(size, images - seen)} "
                              f"were due; {SPLIT_PROTOCOL}")
        seen += x.shape[0]
        lows.append(x.min())
        highs.append(x.max())
        nans.append(x.isnan().any())
    if seen != images:
        raise GenzooError(f"{broke} yielded {seen} images, but its len() says {images}; {SPLIT_PROTOCOL}")
    if bool(torch.stack(nans).any()):  # its min and max are NaN: "values from nan to nan" said nothing of where
        raise GenzooError(f"dataset {dataset!r} gave {split} images holding NaN values; images must be float32 in "
                          "[0, 1] (8-bit pixels divided by 255)")
    low, high = float(torch.stack(lows).min()), float(torch.stack(highs).max())
    if not (low >= 0 and high <= 1):
        raise GenzooError(f"dataset {dataset!r} gave {split} images with values from {low:g} to {high:g}; "
                          "images must be float32 in [0, 1] (8-bit pixels divided by 255)")
    if len(taken) != min(wanted, whole):  # after the batches: a len() counting batches is named as such
        raise GenzooError(f"dataset {dataset!r}: its {split} split's take({wanted}) gave a split of {len(taken)} "
                          f"images, not {min(wanted, whole)}")
    _check_shuffle(f"dataset {dataset!r}: its {split} split's batches", loaded, images)
    return _split_of(dataset, loaded.to(device), f"its {split} split's to({device})", images)


def _check_shuffle(broke: str, loaded: Split, images: int) -> None:
    """``loaded``'s shuffled batches follow the generator they are given, alone, and ``skip`` drops batches.

    A resume redraws its epoch's order from the saved generator state and skips the batches
    already trained. A split that ignored ``skip`` trained them again, saved over the run's
    checkpoint; one shuffling with torch's global stream or a generator of its own resumed in
    another order, and one drawing from the global stream at all (a ``DataLoader`` draws its
    base seed there) with other noise for the model, with no word. Three orders drawn and five
    batches of at most 32 images read: about a millisecond on MNIST's 60,000 images.
    """
    size = max(1, min(32, images // 3))
    shuffled = f"{broke}({size}, shuffle=True)"
    stream = torch.get_rng_state()
    drawn = list(itertools.islice(loaded.batches(size, shuffle=True, generator=torch.Generator().manual_seed(0)), 3))
    again = next(iter(loaded.batches(size, shuffle=True, generator=torch.Generator().manual_seed(0))), None)
    skipped = next(iter(loaded.batches(size, shuffle=True, generator=torch.Generator().manual_seed(0), skip=2)), None)
    if not (drawn and all(isinstance(x, torch.Tensor) for x in drawn)):
        return  # shuffled, no tensors (or none): the trainer names what it gets, before its first step
    if not torch.equal(stream, torch.get_rng_state()):
        raise GenzooError(f"{shuffled} drew from torch's global random stream: a resumed run would go on from "
                          "another point of it than the run it continues (another order, other noise for its "
                          f"model); a DataLoader must get generator=generator too; {RESUME_PROTOCOL}")
    if not same_batch(drawn[0], again):
        raise GenzooError(f"{shuffled} gave other batches from two generators in the same state: a resumed run "
                          f"would train in another order than the run it continues; {RESUME_PROTOCOL}")
    if len(drawn) == 3 and not same_batch(drawn[2], skipped):
        raise GenzooError(f"{broke}({size}, shuffle=True, skip=2) did not start with batch 3 of the same shuffle: "
                          f"a resumed run would train its epoch's first batches again; {RESUME_PROTOCOL}")


def same_batch(batch: torch.Tensor, other: Any) -> bool:
    """``other`` is a batch of the same images as ``batch``, in the same order."""
    return isinstance(other, torch.Tensor) and other.shape == batch.shape and torch.equal(other, batch)


def load_splits(config: TrainConfig, device: torch.device, download: bool = True) -> tuple[Split, Split]:
    """Load the train and test splits once, cut to the requested subsets, onto ``device``.

    In a distributed run rank 0 loads first, downloading what is missing, while the
    others wait; then they read what it fetched (ranks downloading into one folder at
    once would race). Its failure reaches them as the same one line. Then every rank
    holds the same images, or all refuse (:func:`same_data_on_every_rank`).
    """
    main = distributed.is_main()
    if not main:
        failed = distributed.broadcast(None)
        if failed is not None:
            raise GenzooError(failed)
    try:
        train = load_split(config.dataset, "train", config.data_root, config.train_limit, device, download)
        test = load_split(config.dataset, "test", config.data_root, config.test_limit, device, download)
    except Exception as exc:  # the others must not wait for data that will never come
        if main:
            distributed.broadcast(str(exc) if isinstance(exc, GenzooError) else f"{type(exc).__name__}: {exc}")
        raise
    if main:
        distributed.broadcast(None)
    same_data_on_every_rank(train, test)
    return train, test


def same_data_on_every_rank(train: Split, test: Split) -> None:
    """Refuse, in the same line on every rank, a launch whose ranks loaded different images.

    Each rank reads its own data (its machine's ``--data-root``, a dataset plugin's load): ranks that
    loaded other images trained as one run, half of each batch's gradient and of each test metric from
    other data, and ``config.json`` recorded rank 0's digest alone (nineteenth hostile pass on plugins, F9).
    The digests are agreed before any folder or step; a single process has nothing to agree.
    """
    if distributed.world()[1] == 1:
        return
    found = distributed.gather(data_sha256(train, test))
    for rank, digests in enumerate(found):
        differ = [split for split in ("train", "test") if digests[split] != found[0][split]]
        if differ:
            raise GenzooError(
                f"process {rank} of {len(found)} loaded other {' and '.join(differ)} data than process 0 (sha256 "
                f"{digests[differ[0]][:12]}... vs {found[0][differ[0]][:12]}...): every process of a launch must "
                "train and test on the same images; point --data-root (or GENZOO_DATA) at the same data on every "
                "machine, and a dataset plugin must load the same images in every process")


def data_sha256(train: Split, test: Split) -> dict[str, str]:
    """The sha256 of each split's pixels as trained on (float32, in order, after the limits).

    Recorded in ``config.json`` at the start and checked by :func:`check_data` (resume,
    eval), so a ``--data-root`` that holds other data is refused instead of used. Full MNIST
    (70,000 images, 220 MB of float32) takes about 0.3 s on the development CPU.
    """
    return {"train": pixels_sha256(train), "test": pixels_sha256(test)}


def pixels_sha256(split: Split) -> str:
    """The sha256 of one split's pixels (float32, in order): what :func:`data_sha256` records of each."""
    h = hashlib.sha256()
    for x in split.batches(10_000):
        h.update(x.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def check_data(run: RunDescription, train: Split | None, test: Split, run_dir: Path) -> None:
    """Refuse data other than the run's: the one policy of every command that reads a run's data.

    ``resume`` passes both splits, ``eval`` only the test split (``train`` None); each
    split is cut to the run's limits here, so a whole split may be given. Other data
    are refused, never warned about: resuming on them trains another run under this
    one's name, and an evaluation of them writes ``eval.json``, which ``compare
    --from-runs``, reports and ``genzoo.open_run`` take as the run's numbers (a warning
    on stderr would not travel with them). ``--data-root`` is for data that moved. A
    run from before digests were recorded has none to check. The dataset plugin must be the run's
    (:func:`check_plugins`).
    """
    check_plugins(run, run_dir, ("dataset",))
    if run.data_sha256 is None:
        return
    found = {name: pixels_sha256(split.take(limit) if limit is not None else split)
             for name, split, limit in (("train", train, run.train_config.train_limit),
                                        ("test", test, run.train_config.test_limit)) if split is not None}
    differ = [split for split in ("train", "test") if split in found and found[split] != run.data_sha256[split]]
    if differ:
        raise GenzooError(f"the {' and '.join(differ)} data found now differ from those run {run_dir} was trained "
                          f"and tested on (sha256 recorded in its {CONFIG}); point --data-root (or GENZOO_DATA) at "
                          f"the data it was trained on{_or_the_dataset(run.train_config.dataset)}")


def renamed_weights(model: Model, saved: Any) -> str:
    """``; CLASS names N of its weights otherwise ...`` where the model built now has names the saved state lacks and
    the saved state names the model lacks: names made from ``hash()`` or the process id, which differ in each process,
    were blamed on the checkpoint alone, and the run could never be loaded (twenty-sixth hostile pass, plugins F9)."""
    try:
        now, then = set(model.state_dict()), set(saved) if isinstance(saved, dict) else set()
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS:  # its state_dict raises: said elsewhere
        return ""
    missing, unexpected = sorted(map(str, now - then)), sorted(map(str, then - now))
    if not missing or not unexpected:
        return ""
    return (f"; {type(model).__name__} names {len(missing)} of its weights otherwise than the checkpoint does "
            f"({printable(missing[0])}, saved as {printable(unexpected[0])}): weight names made from hash() or the "
            "process id differ from one process to the next")


def _or_the_dataset(name: str) -> str:
    """What else to suspect when a plugin's dataset gives other images than a run recorded: the plugin itself, whose
    ``load`` may order or draw them otherwise in each process; a user was sent to their data folder alone (twenty-sixth
    hostile pass, plugins F10)."""
    entries = registry().entries.get("dataset", {})
    entry = entries.get(name)
    if entry is None or entry.distribution == BUILTIN_DISTRIBUTION:
        return ""
    return (f"; if they are, {entry.origin} gives other images from one process to the next (an order from hash() "
            "or a set, or an unseeded draw), which no later command can check a run against")


def trained_on(run: RunDescription, train: Split) -> bool:
    """Whether ``run`` was trained on the first images of ``train`` (a whole training split found now), by the
    digest its ``config.json`` records; a run from before digests were recorded is taken to have been."""
    if run.data_sha256 is None:
        return True
    limit = run.train_config.train_limit
    return pixels_sha256(train.take(min(limit, len(train))) if limit is not None else train) \
        == run.data_sha256["train"]


def plugin_versions(name: str, dataset: str, model: Model) -> dict[str, dict[str, str]]:
    """What a new run's ``config.json`` records of the plugins it is built from (:func:`check_plugins` reads it): the
    model ``name``, the ``dataset``, each loss ``model``'s config names (as ``loss.FIELD``) and the default sampler
    its pictures are drawn with, which a sampler fit cached by name is kept for."""
    kinds = {"model": ("model", name), "dataset": ("dataset", dataset), "sampler": ("sampler", model.default_sampler),
             **{f"loss.{field}": ("loss", getattr(model.config, field)) for field in model.config.loss_fields()}}
    entries = {key: registry().entry(kind, plugin) for key, (kind, plugin) in kinds.items()}
    return {key: {"name": entry.name, "distribution": entry.distribution, "version": entry.version}
            for key, entry in entries.items()}


#: The version warnings :func:`check_plugins` gave in this process (each once).
_told: set[str] = set()


def check_plugins(run: RunDescription, run_dir: Path, kinds: tuple[str, ...] = ("model", "loss", "sampler")) -> None:
    """Refuse a run whose model, dataset, losses or default sampler is now provided by another distribution, and
    warn once when by another version of the same one.

    A run recorded its model's name alone: another distribution's model of that name (or the next version of
    the plugin) evaluated and resumed it, exit 0, its numbers measured with other code on the same weights
    (twentieth hostile pass, plugins F9); then its model's and dataset's alone, and another distribution's loss of
    the name its config gives did the same (twenty-first hostile pass, plugins F5). A run from before (nothing
    recorded, or no loss or sampler) is read as before. ``kinds``: the registry's kinds checked; the dataset where
    the command loads its data. genzoo's own plugins carry genzoo's version, which the run's ``genzoo_version``
    records: no warning after each upgrade.
    """
    _refuse_partial_record(run, run_dir)
    for key, recorded in run.plugins.items():
        kind = plugin_kind(key)
        if kind not in kinds:  # the dataset only where its data are loaded: sample and export need none
            continue
        now = registry().entry(kind, recorded["name"])
        trained = f"{kind} {recorded['name']!r} of distribution {recorded['distribution']!r} {recorded['version']}"
        if now.distribution != recorded["distribution"]:
            raise GenzooError(f"{run_dir} was trained with {trained}, but {kind} {recorded['name']!r} is provided "
                              f"by distribution {now.distribution!r} {now.version} now: another distribution's "
                              f"{kind} of one name is another {kind}; install {recorded['distribution']!r} to read "
                              "this run")
        if now.version != recorded["version"] and now.distribution != BUILTIN_DISTRIBUTION:  # genzoo_version says
            line = (f"{run_dir} was trained with {trained}, and {recorded['distribution']!r} {now.version} is "
                    "installed now: what it computes may differ from what the run trained with")
            if line not in _told:
                _told.add(line)
                warn(line)


def _refuse_partial_record(run: RunDescription, run_dir: Path) -> None:
    """Refuse a ``plugins`` record that has its default sampler (as every record since the losses' has) but not
    every loss the model's config names, or a loss but no sampler: no genzoo writes one, and taking it for a run
    from before skipped the check of the loss left out (twenty-second hostile pass, files M2)."""
    keys = set(run.plugins) - {"model", "dataset"}
    if not keys:  # a run from before the losses were recorded
        return
    fields = registry().entry("model", run.model).obj.Config.loss_fields()
    wanted = {"sampler", *(f"loss.{field}" for field in fields)}
    if keys != wanted:
        raise GenzooError(f"{run_dir / 'config.json'} is not a genzoo run configuration: its plugins record holds "
                          f"{', '.join(sorted(keys))} beside its model and dataset, where genzoo records "
                          f"{', '.join(sorted(wanted))}")


def finished_checkpoint(run_dir: Path, run: RunDescription, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint of the finished run in ``run_dir``, or an error saying how to finish it.

    A finished run's checkpoint holds its planned last epoch at step 0, and its
    position agrees with ``metrics.jsonl``: a crash between an epoch's metric line
    and its checkpoint leaves a checkpoint one epoch behind, which must not be
    reported as the finished run. Metric lines that are missing while the checkpoint
    is finished are lost, not unfinished work (see :func:`genzoo.run_folder.lost_metrics`).
    An exported run (``genzoo export``) is read the same way, from its ``model.safetensors``.
    """
    check_plugins(run, run_dir)
    source = checkpoint_file(run_dir)
    state = load_checkpoint(source)
    check_matches(state, run.model, run.model_config, source, train_config=run.train_config.to_dict(),
                  sample_shape=list(run.sample_shape), data_sha256=run.data_sha256, run_id=run.run_id)
    # Against a freshly built model: its tensors' dtypes are what the weights must have.
    check_finite_weights(state, source, registry().build_model(run.model, run.sample_shape, **run.model_config))
    planned = run.train_config.epochs
    position = Position.from_checkpoint(state.get("position"), planned, source)

    def finish() -> str:
        """How to finish it: a run another process trains now is waited for (resuming it is refused as in use)."""
        if in_use(run_dir):
            return "another genzoo process is training it now: wait for it to finish"
        return f"finish it first (genzoo resume {run_dir})"

    listed = records[-1]["epoch"] if records else 0
    if listed > planned:
        raise GenzooError(f"{run_dir / METRICS} lists epoch {listed} of a {planned}-epoch run: "
                          "it is not this run's")
    if listed > position.epoch:
        raise GenzooError(f"run {run_dir} stopped before its last work was saved: its checkpoint holds epoch "
                          f"{position.epoch}, step {position.step}, but {METRICS} lists epoch {listed}; {finish()}")
    if position.epoch < planned:
        raise GenzooError(f"run {run_dir} has finished {position.epoch} of {planned} epochs (its checkpoint "
                          f"holds epoch {position.epoch}, step {position.step}); {finish()}")
    steps, uneven = divmod(position.global_step, planned)  # every epoch has the same number of steps
    if uneven:
        raise GenzooError(f"{source} holds an impossible training position ({planned} epochs in "
                          f"{position.global_step} steps); it is damaged or not from this run")
    for record in records:
        if record["step"] != record["epoch"] * steps:
            raise GenzooError(f"{source} holds {planned} epochs in {position.global_step} steps, but "
                              f"{run_dir / METRICS} ends epoch {record['epoch']} at step {record['step']}: "
                              "they are not of one run")
    return state


def load_model(run_dir: str | Path, device: str = "cpu", description: dict[str, Any] | None = None) -> Model:
    """The trained model of a finished run, from its checkpoint (loaded weights-only).

    ``description`` is the run's ``config.json`` when the caller has already read it.
    The checkpoint must hold the run's last epoch (:func:`finished_checkpoint`).
    """
    target = select_device(device)  # a bad device is refused before any file is read
    run_dir = Path(run_dir)
    run = read_run(run_dir) if description is None else RunDescription.from_json(description, run_dir / CONFIG)
    state = finished_checkpoint(run_dir, run, read_metrics(run_dir, run.run_id))
    model = registry().build_model(run.model, run.sample_shape, **run.model_config)
    who = f"{type(model).__name__}.load_state_dict"
    try:
        with blamed(who, passes=(KeyError, RuntimeError, TypeError, AttributeError)):
            model.load_state_dict(state["model_state"])
    except (KeyError, RuntimeError, TypeError, AttributeError) as exc:
        if out_of_memory(exc):
            raise GenzooError(f"{checkpoint_file(run_dir)}: {memory_line(exc)}") from exc
        raise GenzooError(first_line(f"{checkpoint_file(run_dir)} does not fit its model: {exc}")
                          + renamed_weights(model, state["model_state"])) from exc
    _refuse_unloaded(model, state["model_state"], who, checkpoint_file(run_dir))
    return model.to(target).eval()


def _refuse_unloaded(model: Model, saved: dict[str, Any], who: str, source: Path) -> None:
    """Refuse a model that does not hold, after its ``load_state_dict``, the weights it was given: one whose override
    left some as built (``strict=False`` after a wrong key mapping, as a plugin update renaming layers does) had
    ``eval`` and ``sample`` measure and draw from partly fresh weights, exit 0 (twenty-fourth hostile pass, plugins
    F8). Each tensor is compared with what was saved under its name, where both have it."""
    held = model.state_dict()
    # Names on one side alone are the model's conversion of an older checkpoint (the AE's former mixture prior)
    differ = sorted(name for name in set(held) & set(saved)
                    if isinstance(held[name], torch.Tensor) or isinstance(saved[name], torch.Tensor)
                    if not _loaded_alike(held[name], saved[name]))
    if differ:
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise PluginFault(f"{who} left {', '.join(printable(n) for n in differ[:3])}{more} otherwise than {source} "
                          "holds them: the model would be measured or drawn from with weights the run did not train")


def _loaded_alike(held: Any, saved: Any) -> bool:
    """Whether tensor ``held`` is tensor ``saved`` as loading copies it (in the model's dtype; NaN alike)."""
    if not (isinstance(held, torch.Tensor) and isinstance(saved, torch.Tensor) and held.shape == saved.shape):
        return False
    try:
        a, b = held.detach().cpu(), saved.detach().cpu().to(held.dtype)
        if torch.equal(a, b):
            return True
        return (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                and torch.equal(a.nan_to_num(), b.nan_to_num()))
    except (RuntimeError, TypeError):  # a layout torch cannot compare (sparse, quantised): left to the other checks
        return True


def sampler_options(model: Model, sampler: str) -> dict[str, Any]:
    """``model.sampler_options(sampler)``, refused in one line unless a dict of named options (a method that
    falls off its end for the samplers it does not name gave ``None``: a traceback in every command); one that
    raises (a dict lookup of the samplers it names: ``KeyError``) is blamed in one line too."""
    try:
        options = model.sampler_options(sampler)
    except (GenzooError, KeyboardInterrupt):
        raise
    except PLUGIN_FAULTS as exc:
        raise GenzooError(f"{type(model).__name__}.sampler_options({sampler!r}) raised "
                          f"{first_line(describe(exc))}") from exc
    if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
        raise GenzooError(f"{type(model).__name__}.sampler_options({sampler!r}) returned {shown(options)}, not a dict "
                          "of the sampler's options by name ({} for none)")
    return options


def model_config(model: str, options: dict[str, Any], spelled: Callable[[str], str]) -> ModelConfig:
    """``model``'s config from options given on a command line; a bad one is named as the user typed it.

    A config refuses a bad value in its own words, which name the field (``beta1 must
    be in [0, 1)``); the user typed ``--beta1`` (or ``--set gan.beta1=2``), so the option
    at fault is found by trying each alone and named by ``spelled(field)``.
    """
    config_cls = registry().model(model).Config
    try:
        return config_cls.from_dict(options)
    except GenzooError as refused:
        try:
            config_cls.from_dict({})
        except GenzooError as exc:  # its defaults fail too: the config's fault, not an option's (26th pass, M7)
            origin = registry().entry("model", model).origin
            raise GenzooError(f"{origin} cannot build its config {config_cls.__name__} from its own defaults "
                              f"({exc}); the plugin is at fault, not the options given") from refused
        for name, value in options.items():
            try:
                config_cls.from_dict({name: value})
            except GenzooError as exc:
                text = str(exc)
                rest = text[len(name):] if text.startswith(name + " ") else ": " + text
                raise GenzooError(spelled(name) + rest) from None
        raise


def with_its_losses(who: str, model: Model) -> str:
    """``who`` (``VAE.loss``), with the loss plugins ``model`` computes through named after it: a loss plugin's raise,
    or its value of a wrong shape, was said as the built-in ``VAE.loss``'s alone, sending the user to mend genzoo's
    own model (twenty-sixth hostile pass, plugins F17). Built-in losses are not named."""
    losses = getattr(model, "losses", None)
    kinds = {type(loss) for loss in losses.values()} if isinstance(losses, dict) else set()
    entries = registry().entries.get("loss", {}).values()
    plugged = [entry.origin for entry in entries
               if type(entry.obj) in kinds and entry.distribution != BUILTIN_DISTRIBUTION]
    return f"{who} (computed with {', '.join(plugged)})" if plugged else who


def unfitted_sampler(model: Model, model_name: str, name: str) -> Sampler:
    """Sampler ``name`` for ``model``, built with the options the model gives it and not fitted.

    The command line gives a sampler no options: ones its config refuses are the model's, and are blamed on its
    ``sampler_options`` (they read as the user's: ``components must be a positive integer, got 'ten'``;
    twenty-fifth hostile pass, plugins M11).
    """
    options = sampler_options(model, name)
    try:
        return registry().build_sampler(name, model, model_name, **options)
    except RefusedOptions as exc:
        raise GenzooError(f"{type(model).__name__}.sampler_options({name!r}) returned {shown(options)}, which "
                          f"sampler {name!r} refuses: {exc}") from exc


def build_sampler(model: Model, model_name: str, name: str | None, train: Callable[[], Split]) -> Sampler:
    """Sampler ``name`` (default: the model's ``default_sampler``) for ``model``, fitted when it must be.

    The model's config gives the sampler's options (the AE's ``prior_components``); ``train``
    is called for the training split only when the sampler fits to it. A sampler with a
    ``fit_version`` is fitted once per model and data, then read from the cache of fits
    (:mod:`genzoo.sampler_cache`).
    """
    chosen = name if name is not None else model.default_sampler
    sampler = unfitted_sampler(model, model_name, chosen)
    if sampler.needs_fit:
        split = train()
        if sampler.fit_version is None:
            sampler.fit(split)
        else:  # a fresh sampler, built alike, checks that a fit round-trips before it is cached
            fit_cached(sampler, chosen, split, pixels_sha256(split),
                       lambda: unfitted_sampler(model, model_name, chosen))
    return sampler


def run_training_split(run_dir: Path, description: dict[str, Any], device: torch.device,
                       data_root: str | None = None, download: bool = True) -> Split:
    """The split a finished run trained on, for a sampler to fit to; other data than it recorded are refused."""
    run = RunDescription.from_json(description, Path(run_dir) / CONFIG)
    config = run.train_config
    train = load_split(config.dataset, "train", data_root or config.data_root, config.train_limit, device, download,
                       None if data_root else Path(run_dir) / CONFIG)
    if run.data_sha256 is not None and pixels_sha256(train) != run.data_sha256["train"]:
        raise GenzooError(f"the training data found now differ from those run {run_dir} was trained on (sha256 "
                          f"recorded in its {CONFIG}), and the sampler fits to them; point --data-root (or "
                          "GENZOO_DATA) at the data it was trained on")
    return train
