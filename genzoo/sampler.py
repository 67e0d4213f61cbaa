"""The Sampler interface: how images are drawn from a trained model, chosen apart from the model.

A model may have a prior of its own (a VAE's N(0, I), a GAN's noise): the built-in
``model`` sampler calls its :meth:`Model.sample`. A sampler plugin instead draws codes
itself and decodes them with the model's ``decode`` (an N(0, I) draw, a Gaussian mixture
fitted to the training codes after training), so any model that can encode and decode
can be sampled several ways and each FID names the sampler it measured. A plugin
registers a subclass with the ``register_samplers`` hook; ``Model.default_sampler`` names
the one used when none is asked for.

A sampler is fitted when it is built (:meth:`Sampler.fit` on the run's training split,
deterministically). One that sets :attr:`Sampler.fit_version` gives its fit as tensors
(:meth:`Sampler.fitted_state`) and takes it back (:meth:`Sampler.load_fitted_state`), so
genzoo keeps each fit in its cache (:mod:`genzoo.sampler_cache`, safetensors, never a
pickle) and a later command on the same model and data reads it instead of fitting again.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from genzoo import process_settings
from genzoo.checks import NotPixels, printable, shown
from genzoo.errors import PLUGIN_FAULTS, GenzooError, PluginFault, describe, first_line
from genzoo.process_settings import dtype_name

if TYPE_CHECKING:
    from genzoo.data import Split
    from genzoo.model import Model


@dataclass
class SamplerConfig:
    """A sampler's options; plugins subclass it to add theirs (checked in ``__post_init__``)."""

    def __post_init__(self) -> None:
        """Nothing to check here; a subclass checks its own fields."""

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SamplerConfig:
        """Build a config, refusing keys this sampler does not know, in one line."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GenzooError(f"unknown option(s) for {cls.__name__}: {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known)) or 'none'}")
        try:
            return cls(**values)
        except (GenzooError, KeyboardInterrupt):
            raise
        except PLUGIN_FAULTS as exc:
            raise GenzooError(f"invalid options for {cls.__name__} ({shown(values)}): {describe(exc)}") from exc


class Sampler:
    """Draws images from one model; built for that model by the registry (``Registry.build_sampler``).

    A subclass sets ``Config``, :attr:`needs_fit` when it must see the training split
    first, and implements :meth:`sample` (and :meth:`fit`; with :attr:`fit_version`, also
    :meth:`fitted_state` and :meth:`load_fitted_state`). The default :meth:`unsupported`
    asks for a model that can encode and decode.
    """

    Config: ClassVar[type[SamplerConfig]] = SamplerConfig
    #: True: :meth:`fit` must see the model's training split before :meth:`sample` draws.
    needs_fit: ClassVar[bool] = False
    #: None: the fit is made again by every command. A string: fits are cached under a name that
    #: includes it; change it whenever :meth:`fit` would give another state for the same model and data.
    fit_version: ClassVar[str | None] = None

    def __init__(self, config: SamplerConfig, model: Model) -> None:
        self.config = config
        self.model = model

    @classmethod
    def unsupported(cls, model: type[Model] | Model) -> str | None:
        """Why this sampler cannot draw from ``model`` (its class is enough), or None."""
        return None if model.can_encode else "it cannot encode and decode"

    @property
    def device(self) -> torch.device:
        """The model's device: codes are drawn there."""
        return self.model.device

    def fit(self, train: Split) -> None:
        """Fit to ``train`` (called once when :attr:`needs_fit`); deterministic: no global random stream."""

    def fitted_state(self) -> dict[str, torch.Tensor]:
        """What :meth:`fit` found, as named tensors, for the cache of fits (with :attr:`fit_version` only)."""
        raise NotImplementedError(f"{type(self).__name__} sets fit_version but does not implement fitted_state")

    def load_fitted_state(self, state: dict[str, torch.Tensor]) -> None:
        """Take, instead of fitting, a state :meth:`fitted_state` gave (read back on the CPU).

        The file it came from passed genzoo's digests, which find damage, not forgery: refuse
        tensors that are not such a state (names, shapes, values) with a :class:`GenzooError`.
        """
        raise NotImplementedError(f"{type(self).__name__} sets fit_version but does not implement "
                                  "load_fitted_state")

    def sample(self, n: int) -> torch.Tensor:
        """``n`` images in [0, 1] of the model's sample shape, drawn from the seeded global random stream."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sample")

    def description(self, short: bool = False) -> str:
        """How it draws, for the report (``short``: a few words for a picture title)."""
        return type(self).__name__


def sampler_problem(model: type[Model] | Model, name: str | None = None) -> str | None:
    """Why sampler ``name`` (default: the model's own default) cannot draw from ``model``, or None.

    An unknown sampler name is a :class:`GenzooError` of its own (with suggestions).
    """
    from genzoo.plugin_registry import registry  # the neighbour in layer 1, as Model.build does

    chosen = name if name is not None else model.default_sampler
    try:
        entry = registry().entry("sampler", chosen)
    except GenzooError as exc:
        if name is not None:
            raise
        # The user named no sampler: say whose default it is (twenty-fourth hostile pass, plugins M7)
        model_name = model.__name__ if isinstance(model, type) else type(model).__name__
        raise GenzooError(f"{model_name}.default_sampler names {exc}") from exc
    return checked_unsupported(entry.obj, model, origin(chosen, entry.plugin, entry.distribution))


def origin(name: str, plugin: str, distribution: str) -> str:
    """How a message names a sampler: its name, plugin and distribution."""
    return f"sampler {name!r} from plugin {plugin!r} (distribution {distribution!r})"


def checked_unsupported(sampler: type[Sampler] | Sampler, model: type[Model] | Model, who: str) -> str | None:
    """``sampler.unsupported(model)``, guarded: a fault in it, or an answer that is not a reason, is one line.

    An empty (or blank) str is no reason: its refusal was a line ending in nothing (eighteenth hostile pass, M7).
    """
    problem = plugin_call(who, "checking the model", lambda: sampler.unsupported(model),
                          model if isinstance(model, torch.nn.Module) else None)
    if problem is not None and not isinstance(problem, str):
        raise GenzooError(f"{who} answered unsupported() with {type(problem).__name__}, not a reason or None")
    if problem is not None and not problem.strip():
        raise GenzooError(f"{who} answered unsupported() with an empty str, not a reason or None")
    return problem


def fit_attributes(sampler: type[Sampler] | Sampler, who: str) -> tuple[bool, str | None]:
    """``needs_fit`` and ``fit_version``, read guarded and checked: a property that raises, or a value of
    another type (a property object on the class), would otherwise fail or mislead every later command."""
    needs_fit = plugin_call(who, "giving needs_fit", lambda: sampler.needs_fit)
    fit_version = plugin_call(who, "giving fit_version", lambda: sampler.fit_version)
    if not isinstance(needs_fit, bool):  # a property read on the class is a property object
        raise GenzooError(f"{who} has needs_fit of type {type(needs_fit).__name__}, not bool")
    if fit_version is not None and not isinstance(fit_version, str):
        raise GenzooError(f"{who} has fit_version of type {type(fit_version).__name__}, not str or None")
    return needs_fit, fit_version


#: What a sampler that changed the model, torch's defaults or the process's settings broke (:func:`_changed`'s line).
_CONTRACT = ("the Sampler contract: a sampler leaves the model it draws from, torch's defaults and the process's "
             "settings alone")


def plugin_call(who: str, what: str, call: Callable[[], Any], model: Model | None = None,
                contract: str = _CONTRACT) -> Any:
    """``call()``, a sampler plugin's code: a fault in it is one :class:`GenzooError` naming ``who``.

    With ``model``, a call that changes the model's weights or buffers (in place, through
    ``.data``, or by replacing them), their or its modules' classes, its hooks, the order of
    its modules or its modules' other attributes (a patched ``decode``, a new ``__dict__``),
    or a parameter's ``requires_grad`` (a frozen model trains no more after a curve's draw)
    is the sampler's fault too, and they are put back: the metrics measured after it
    (interpolation, reconstructions, ``compare.png``) would otherwise be of another model,
    filed under this one. So is any call that changes torch's default dtype, default device
    or grad mode: every later step would fail (float64 inputs to float32 weights) or differ.
    ``contract`` ends that line: what ``who`` broke.
    """
    settings = process_settings.saved()
    snapshot = _Snapshot(model) if model is not None else None
    error: GenzooError | None = None
    parts: list[str] = []
    try:
        result = call()
    except GenzooError as exc:
        error = exc
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS as exc:
        error = GenzooError(f"{who} failed while {what}: {first_line(describe(exc))}")
        error.__cause__ = exc
    finally:  # a stop signal too: the checkpoint it writes must not hold what the sampler changed
        if snapshot is not None:
            parts = snapshot.put_back()
        changed = process_settings.put_back(settings)
    if parts or changed:
        raise _changed(who, what, parts, changed, contract) from error
    if error is not None:
        raise error
    return result


class PutBack(GenzooError):
    """Plugin code changed the model or torch's defaults, and they are put back (:func:`_changed`'s line).

    Its own class so that a caller that can go on without the plugin (a run's logger, dropped with a
    warning) tells it from a :class:`GenzooError` the plugin raised itself, which stops the command.
    """


def _changed(who: str, what: str, parts: list[str], settings: list[str], contract: str = _CONTRACT) -> PutBack:
    """One line naming what changed: the model's ``parts`` (the first three), then the process's ``settings``."""
    more = f" and {len(parts) - 3} more" if len(parts) > 3 else ""
    named = [f"the model's {', '.join(parts[:3])}{more}"] if parts else []
    named += settings
    return PutBack(f"{who}{_beside()} changed {' and '.join(named)} while {what}; they are put back ({contract})")


#: The threads plugin code started while being imported or registered, or in a logger's call, by who started them.
_PLUGIN_THREADS: weakref.WeakKeyDictionary[threading.Thread, str] = weakref.WeakKeyDictionary()


@contextmanager
def threads_noted(who: str) -> Iterator[None]:
    """Note the threads plugin code ``who`` starts in the block: a change one of them makes later lands in
    whichever guarded call is running, and is named with the thread (:func:`_beside`)."""
    before = set(threading.enumerate())
    try:
        yield
    finally:
        for thread in threading.enumerate():
            if thread not in before:
                _PLUGIN_THREADS.setdefault(thread, who)


def _beside() -> str:
    """`` (or a thread of WHO running beside it: NAME)``, while a thread plugin code started runs: a change it made
    (a logger's upload thread changing directory) was blamed on the built-in ``VAE.loss`` alone (twenty-sixth
    hostile pass, plugins F5). Threads no plugin started (torch's compiler's) are not named."""
    for thread, who in list(_PLUGIN_THREADS.items()):
        if thread.is_alive() and thread is not threading.current_thread():
            return f" (or a thread of {who} running beside it: {printable(thread.name)})"
    return ""


@contextmanager
def defaults_kept(who: str, what: str, contract: str = _CONTRACT, model: Model | None = None) -> Iterator[None]:
    """Within it, plugin code that is no :func:`plugin_call` (a sampler's or model's ``__init__``, run by the
    registry) must leave torch's defaults, and ``model`` if given (a sampler's ``__init__`` holds the model it
    draws from), as they were: they are put back, and a change is one line."""
    settings = process_settings.saved()
    snapshot = _Snapshot(model) if model is not None else None
    try:
        yield
    finally:  # put back on any way out; a change is the error only when nothing else went wrong
        parts = snapshot.put_back() if snapshot is not None else []
        changed = process_settings.put_back(settings)
    if parts or changed:
        raise _changed(who, what, parts, changed, contract)


#: The longest description of its sampling a sampler (or a model, through ``model``) may give: it goes into report
#: lines and ``eval.json`` as it is (a 100,000-character one was 800 lines of ``x``; twenty-fifth hostile pass,
#: plugins M3).
MAX_DESCRIPTION = 300
#: The end of the line of a model's method that changed torch's defaults (:func:`model_call`).
_MODEL_CONTRACT = "the Model contract: a model's methods leave torch's defaults and the process's settings alone"
#: The end of the line of a model's own ``sample`` or ``sampling_description``, called by the built-in sampler
#: ``model``, that changed the model or torch's defaults (:meth:`GuardedSampler.culprit`).
_MODEL_SAMPLING_CONTRACT = ("the Model contract: a model's sample and sampling_description leave the model, torch's "
                            "defaults and the process's settings alone")


@contextmanager
def model_call(who: str, what: str) -> Iterator[None]:
    """A model's method, ``who`` (``VAE.after_training``), in the block, as a sampler's calls are guarded: torch's
    default dtype, device and grad mode it changes are put back, and the change is one :class:`PluginFault` line
    naming it (a trainer adds what the run holds). An ``after_training`` that turned grad mode off in genzoo's own
    state check once failed the run's first step blaming ``loss``, and in the conformance kit every later check
    of the session, of every model (eighteenth hostile pass, F9 and F11)."""
    try:
        with defaults_kept(who, what, _MODEL_CONTRACT):
            yield
    except PutBack as exc:
        raise PluginFault(str(exc)) from exc


@contextmanager
def model_checked_once(sampler: Sampler, what: str) -> Iterator[None]:
    """Within it, a guarded ``sampler``'s calls leave the model's check to its end (one copy, one comparison):
    a copy and a comparison of the weights at each batch would be timed with the sampling speed."""
    if not isinstance(sampler, GuardedSampler):
        yield
        return
    snapshot = _Snapshot(sampler.model)
    settings = process_settings.saved()
    sampler.checked_later = True
    try:
        yield
    finally:  # put back on any way out; a change is the error only when nothing else went wrong
        sampler.checked_later = False
        parts = snapshot.put_back()
        changed = process_settings.put_back(settings)
    if parts or changed:
        who, contract = sampler.culprit("sample")
        raise _changed(who, what, parts, changed, contract)


#: torch's own containers in every module's ``__dict__`` (weights, submodules, hooks): a hook is registered
#: into one of them, so each is compared by its contents; every other attribute by what it holds.
_SLOTS = tuple(name for name, value in vars(torch.nn.Module()).items() if isinstance(value, (dict, set)))
#: The slots whose entries are named in a message: a weight or a submodule (a hook's key is a number).
_NAMED = ("_parameters", "_buffers", "_modules")
#: The names of the hooks torch calls for every module (``register_module_forward_hook`` and the like): each
#: snapshot looks them up again, as torch's ``_call_impl`` does at each call (a plugin may rebind one).
_GLOBAL_HOOKS = process_settings.GLOBAL_HOOKS
_MISSING = object()


class _Snapshot:
    """A model's weights and buffers, which module holds each, its modules' hooks and other attributes (and
    torch's global module hooks), the class of each module and tensor, as they were before a sampler's call: a
    hook, a patched ``decode`` or a swapped class changes what the model draws as surely as a changed weight."""

    def __init__(self, model: Model) -> None:
        modules = list(model.named_modules())
        tensors = [*model.named_parameters(), *model.named_buffers()]
        # Classes first: a tensor subclass's __torch_function__ must not run in genzoo's own comparisons.
        self.classes = [(_joined(prefix, "__class__"), module, type(module)) for prefix, module in modules]
        self.classes += [(_joined(name, "__class__"), tensor, type(tensor)) for name, tensor in tensors]
        namespace = vars(torch.nn.modules.module)
        self.globals = [(name, namespace.get(name, _MISSING)) for name in _GLOBAL_HOOKS]
        self.slots = [(prefix, name, slot, _contents(slot)) for prefix, module in modules for name in _SLOTS
                      if isinstance(slot := vars(module).get(name), (dict, set))]
        self.slots += [(f"torch.nn.modules.module.{name}", "", slot, _contents(slot)) for name, slot in self.globals
                       if isinstance(slot, dict)]
        self.attributes = [(prefix, module, vars(module), dict(vars(module))) for prefix, module in modules]
        self.tensors = {name: (tensor, _layout(tensor), _copy(name, tensor)) for name, tensor in tensors}
        self.grads = [(name, parameter, parameter.requires_grad) for name, parameter in model.named_parameters()]

    def put_back(self) -> list[str]:
        """The names of what changed since the snapshot, each put back as it was."""
        changed: list[str] = []
        for name, thing, kind in self.classes:  # obj.__class__ = ...: what it computes is another class's
            if type(thing) is not kind:
                object.__setattr__(thing, "__class__", kind)
                changed.append(name)
        namespace = vars(torch.nn.modules.module)
        for name, hooks in self.globals:  # torch.nn.modules.module._global_forward_hooks = {...}, or deleted
            if namespace.get(name, _MISSING) is not hooks:
                if hooks is _MISSING:
                    del namespace[name]
                else:
                    namespace[name] = hooks
                changed.append(f"torch.nn.modules.module.{name}")
        for prefix, name, slot, saved in self.slots:  # a replaced weight or module, a hook: the originals again
            if name in _NAMED and isinstance(slot, dict):
                names = sorted(_joined(prefix, key) for key in {*slot, *saved} if slot.get(key) is not saved.get(key))
                if not names and list(slot) != list(saved):  # reordered: a Sequential runs in insertion order
                    names = [_joined(prefix, name)]
            else:
                names = [_joined(prefix, name)] if _differs(slot, saved) else []
            if names:
                changed += [entry for entry in names if entry not in changed]
                slot.clear()
                slot.update(saved)  # in the saved order
        for prefix, module, attributes, saved in self.attributes:  # model.decode = ..., a slot set or deleted
            if vars(module) is not attributes:  # module.__dict__ = {...}: every slot and attribute new at once
                object.__setattr__(module, "__dict__", attributes)
                changed.append(_joined(prefix, "__dict__"))
            keys = sorted(key for key in {*attributes, *saved}
                          if not _kept(attributes.get(key, _MISSING), saved.get(key, _MISSING)))
            for key in keys:
                if key in saved:
                    attributes[key] = saved[key]
                else:
                    del attributes[key]
            changed += [_joined(prefix, key) for key in keys]
        with torch.no_grad():
            for name, (tensor, layout, copy) in self.tensors.items():
                if _layout(tensor) != layout:  # its .data replaced
                    tensor.data = copy
                elif not _same(tensor, copy):  # written in place (through .data, no version counter sees it)
                    tensor.copy_(copy)
                else:
                    continue
                if name not in changed:
                    changed.append(name)
        for name, parameter, wanted in self.grads:  # requires_grad_(False) where torch.no_grad() was meant
            if parameter.requires_grad is not wanted:
                parameter.requires_grad_(wanted)
                changed.append(f"{name}.requires_grad")
        return changed


def _contents(slot: dict[Any, Any] | set[Any]) -> dict[Any, Any]:
    """A slot's entries (a set's as keys: ``slot.update`` takes them back either way)."""
    return dict(slot) if isinstance(slot, dict) else dict.fromkeys(slot)


def _differs(slot: dict[Any, Any] | set[Any], saved: dict[Any, Any]) -> bool:
    """A hook added, removed, replaced (by identity: hooks are functions) or moved (torch calls them in order)."""
    if isinstance(slot, dict):
        return list(slot) != list(saved) or any(slot[key] is not value for key, value in saved.items())
    return slot != set(saved)


def _kept(now: Any, before: Any) -> bool:
    """The same attribute: the same object, or a tensor of the same values (``weight_norm`` makes its weight
    again at each forward)."""
    if now is before:
        return True
    return (type(now) is type(before) and isinstance(now, torch.Tensor)
            and (now.dtype, now.shape, now.device) == (before.dtype, before.shape, before.device)
            and _same(now, before))


def _joined(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _copy(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """A copy of the model's ``name``; one line for a dtype torch cannot copy (the sub-byte integers): it cannot
    save it either, so no run of the model could keep a checkpoint."""
    try:
        return tensor.detach().clone()
    except NotImplementedError as exc:
        raise GenzooError(f"the model's {name} is of dtype {dtype_name(tensor.dtype)}, which torch can neither copy "
                          "nor save: genzoo cannot guard or checkpoint it") from exc


def _layout(tensor: torch.Tensor) -> tuple[Any, ...]:
    """Where its values live (a new ``.data`` moves them); a sparse tensor has no one place: its values decide."""
    if tensor.layout != torch.strided:
        return tensor.layout, tensor.dtype, tensor.shape, tensor.device
    return tensor.data_ptr(), tensor.dtype, tensor.shape, tensor.stride(), tensor.device


def _same(tensor: torch.Tensor, copy: torch.Tensor) -> bool:
    """Equal values, NaN where NaN was (a diverged model's weights are not changed by drawing from it).

    A sparse tensor is compared by its indices and values; a dtype ``torch.equal`` does not take (packed
    float4, complex32, bits) by its bits, read as an integer of its size.
    """
    if tensor.shape != copy.shape or tensor.layout != copy.layout:
        return False
    if tensor.layout != torch.strided:
        return all(_same(part, saved) for part, saved in zip(_parts(tensor), _parts(copy), strict=True))
    try:
        if torch.equal(tensor, copy):
            return True
    except NotImplementedError:
        bits = _BITS[tensor.element_size()]
        return torch.equal(tensor.view(bits), copy.view(bits))
    return tensor.is_floating_point() and bool(((tensor == copy) | (tensor.isnan() & copy.isnan())).all())


#: An integer dtype of each element size: the bits of a dtype torch cannot compare, compared as integers.
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _parts(tensor: torch.Tensor) -> list[torch.Tensor]:
    """A sparse tensor's dense indices and values (COO coalesced: the same values, one way)."""
    if tensor.layout == torch.sparse_coo:
        tensor = tensor.coalesce()
        return [tensor.indices(), tensor.values()]
    if tensor.layout in (torch.sparse_csr, torch.sparse_bsr):
        return [tensor.crow_indices(), tensor.col_indices(), tensor.values()]
    return [tensor.ccol_indices(), tensor.row_indices(), tensor.values()]


class GuardedSampler(Sampler):
    """A registered sampler as the registry hands it out: the one place its plugin's code is called.

    A fault in its ``fit``, ``sample`` or ``description`` is one :class:`GenzooError` line
    naming the sampler, its plugin and distribution and what failed, as a model's is, and so
    is a call that changes the model's weights (they are put back: :func:`plugin_call`); the
    built-in sampler ``model`` names the model's own method instead (:meth:`culprit`); and
    every ``sample(n)`` must be ``n`` images of the model's sample shape, real values in a
    dense plain ``torch.Tensor`` with data, or an FID would be filed for samples that were
    never drawn (or each later step would fail its own way); they are handed on as float32
    (float64 as it is), a dtype every check and picture takes. Other attributes are the
    wrapped sampler's.
    """

    def __init__(self, inner: Sampler, name: str, plugin: str, distribution: str) -> None:
        super().__init__(inner.config, inner.model)
        self.inner = inner
        self.origin = origin(name, plugin, distribution)
        #: Whom samples that are not pixels blame (:class:`NotPixels`): None for the model's own sampler.
        self.blamed = None if name == "model" else self.origin
        #: True within :func:`model_checked_once`: the model is checked at its end, not at each call.
        self.checked_later = False

    def __getattr__(self, attribute: str) -> Any:
        """The wrapped sampler's own attributes (a mixture, a cache) stay reachable."""
        if attribute == "inner":  # not set yet (while unpickling or copying): no recursion
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)

    def culprit(self, method: str) -> tuple[str, str]:
        """Whom a fault in the sampler's ``method`` (``sample``, ``sampling_description``), or a change it made,
        names, and the contract the change broke: the sampler's plugin, or for the built-in sampler ``model``,
        which hands the call on, the model's own method. A ``ReuseVAE.sample`` that kept a buffer on the model was
        said to be genzoo's ``samplers`` plugin breaking the Sampler contract (twenty-first hostile pass, M2)."""
        if self.blamed is not None:
            return self.origin, _CONTRACT
        return f"{type(self.model).__name__}.{method} (sampler 'model')", _MODEL_SAMPLING_CONTRACT

    def _call(self, what: str, call: Callable[[], Any], method: str | None = None) -> Any:
        """``call()`` guarded, blaming the sampler, or the :meth:`culprit` of ``method`` when it is given."""
        who, contract = self.culprit(method) if method is not None else (self.origin, _CONTRACT)
        return plugin_call(who, what, call, None if self.checked_later else self.model, contract)

    def fit(self, train: Split) -> None:
        self._call("fitting", lambda: self.inner.fit(CopiedSplit(train)))

    def sample(self, n: int) -> torch.Tensor:
        images = self._call(f"drawing {n} samples", lambda: self.inner.sample(n), "sample")
        expected = (n, *self.model.sample_shape)
        # The model's own sampler hands on what the model's sample gave: the model is the one to name.
        who, _ = self.culprit("sample")
        kind = plugin_call(self.origin, "having its samples checked", lambda: _not_images(images))
        if kind is not None:  # what genzoo cannot read as pixels: each later step would fail in its own way
            raise GenzooError(f"{who} returned {kind} when asked for {n} samples (the Sampler contract: "
                              "images of real values, a dense torch.Tensor on a device that holds data)")
        if tuple(images.shape) != expected:
            raise GenzooError(f"{who} returned shape {tuple(images.shape)} when asked for {n} samples, "
                              f"not {expected} (the Sampler contract: n images of the model's sample shape)")
        pixels = _as_float(images)
        if pixels is None:
            raise GenzooError(f"{who} returned {_dtype(images)} values when asked for {n} samples, which "
                              "torch cannot turn into float32 (the Sampler contract: images of real values)")
        return pixels

    def description(self, short: bool = False) -> str:
        # The model's own sampler hands on its sampling_description: a fault there is the model's to name.
        text = self._call("describing itself", lambda: self.inner.description(short), "sampling_description")
        if not isinstance(text, str):
            if self.blamed is None:  # the model's own sampler hands on its sampling_description: name the model's
                raise GenzooError(f"{self.culprit('sampling_description')[0]} returned {type(text).__name__}, not a "
                                  "string or None")
            raise GenzooError(f"{self.origin} described itself with {type(text).__name__}, not a string")
        if not text.isprintable() or len(text) > MAX_DESCRIPTION:  # it goes into report lines and eval.json as is
            who = self.culprit("sampling_description")[0] if self.blamed is None else self.origin
            broken = " with a line break or a control character" if not text.isprintable() else ""
            raise GenzooError(f"{who} gave a description of {len(text):,} characters{broken}, not one line of "
                              f"printable text of at most {MAX_DESCRIPTION:,}")
        return text

    def fitted_state(self) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = self._call("giving its fit", self.inner.fitted_state)
        return state

    def load_fitted_state(self, state: dict[str, torch.Tensor]) -> None:
        self._call("loading its fit", lambda: self.inner.load_fitted_state(state))


class CopiedSplit:
    """A split as plugin code sees it (a sampler's fit, a model's ``after_training``): each batch,
    and each tensor it reads off the split, a copy.

    A training split's batches are views of its images: a fit that normalises them in place
    (``x.sub_(0.5)``) would change the images the model trains on after a ``--fid-curve``
    point, or the next model's in a ``compare`` (the ninth hostile pass saw a train -ELBO of
    -4220); an ``after_training`` that centred ``train.images`` in place changed the mixture
    ``samples.png`` is drawn from and the last FID-curve point (eleventh pass, F10). The copies
    cost the images read, once per call.
    """

    def __init__(self, split: Split) -> None:
        self._split = split

    def __len__(self) -> int:
        return len(self._split)

    def batches(self, batch_size: int, **options: Any) -> Iterator[torch.Tensor]:
        return (batch.clone() for batch in self._split.batches(batch_size, **options))

    def to(self, device: torch.device | str) -> CopiedSplit:
        return CopiedSplit(self._split.to(device))

    def take(self, n: int) -> CopiedSplit:
        return CopiedSplit(self._split.take(n))

    def __getattr__(self, attribute: str) -> Any:
        """The split's other attributes (a ``TensorSplit``'s ``images``), tensors copied."""
        if attribute == "_split":  # not set yet (while unpickling or copying): no recursion
            raise AttributeError(attribute)
        value = getattr(self._split, attribute)
        return value.clone() if isinstance(value, torch.Tensor) else value


def guarded(inner: Sampler, name: str, plugin: str, distribution: str) -> GuardedSampler:
    """``inner`` wrapped in :class:`GuardedSampler`, with its class attributes (``needs_fit``, ``fit_version``):
    the base class's defaults would otherwise shadow them, and its fit would never be cached."""
    needs_fit, fit_version = fit_attributes(inner, origin(name, plugin, distribution))
    kind: type[GuardedSampler] = type(f"Guarded{type(inner).__name__}", (GuardedSampler,),
                                      {"needs_fit": needs_fit, "fit_version": fit_version})
    return kind(inner, name, plugin, distribution)


def _not_images(images: Any) -> str | None:
    """What ``images`` is, when it is not a tensor genzoo can read pixels from (None when it is).

    A subclass is refused before anything touches it: its ``__torch_function__`` would run at
    genzoo's first operation on it (``.detach()``), outside the guard, and could fail there or
    change the model.
    """
    if type(images) is not torch.Tensor:
        kind = type(images).__name__
        return f"a {kind} (a torch.Tensor subclass)" if isinstance(images, torch.Tensor) else kind
    if images.layout != torch.strided or images.is_nested:
        return f"a {'nested' if images.is_nested else str(images.layout)} tensor"
    if images.device.type == "meta":
        return "a tensor on the meta device (it holds no data)"
    if images.is_complex() or images.is_quantized:
        return f"{_dtype(images)} values"
    return None


def _dtype(images: torch.Tensor) -> str:
    return dtype_name(images.dtype)


def _as_float(images: torch.Tensor) -> torch.Tensor | None:
    """``images`` as float32 (float32 and float64 as they are), or None for a dtype torch cannot convert.

    torch implements neither ``isfinite`` nor ``amin`` for float8 or uint16/32/64, and a
    picture cannot put float8 beside float32: each later step would fail in its own way.
    Pixels in [0, 1] of any other real dtype are exactly the same in float32.
    """
    if images.dtype in (torch.float32, torch.float64):
        return images
    try:
        return images.float()
    except (RuntimeError, TypeError):
        return None


def drawn_by(sampler: Sampler | Model) -> str | None:
    """The sampler that samples which are not pixels blame besides the model (None: the model's own)."""
    return sampler.blamed if isinstance(sampler, GuardedSampler) else None


def model_images(images: Any, who: str, method: str, what: str) -> torch.Tensor:
    """What model ``who``'s own ``method`` gave (its reconstructions), taken as :class:`GuardedSampler` takes a
    sampler's samples: a plain, dense tensor of real values, as float32; else :class:`NotPixels` naming it."""
    kind = _not_images(images)
    pixels = _as_float(images) if kind is None else None
    if pixels is None:
        raise NotPixels(who, kind or f"{_dtype(images)} values", method, what)
    return pixels
