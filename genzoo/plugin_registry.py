"""The plugin manager and the registry of models, losses, datasets, loggers and samplers it yields.

Built-in plugins and third-party ones are loaded the same way: from the ``genzoo``
entry-point group. ``GENZOO_LOAD_PLUGINS`` (a comma-separated allow-list of
distribution names) restricts third-party plugins; an empty value loads only the
built-ins, which ship in the ``genzoo`` distribution itself as entry points into
``genzoo_plugins``. The allow-list keeps out distributions one did not choose to run;
it is no sandbox against whoever can put packages on Python's path.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import inspect
import os
import re
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Callable

import pluggy

from genzoo import hookspecs
from genzoo.errors import (
    PLUGIN_FAULTS,
    GenzooError,
    RefusedOptions,
    can_show,
    describe,
    escaped,
    first_line,
    warn,
)
from genzoo.matplotlib_import import import_matplotlib

if TYPE_CHECKING:  # imported when needed: genzoo.model and genzoo.data import torch
    from genzoo.data import Dataset
    from genzoo.logger import Logger
    from genzoo.loss import Loss
    from genzoo.model import Model, ModelConfig
    from genzoo.sampler import Sampler

GROUP = "genzoo"
BUILTIN_DISTRIBUTION = "genzoo"
BUILTIN_PACKAGE = "genzoo_plugins"
ALLOW_ENV = "GENZOO_LOAD_PLUGINS"
KINDS = ("model", "loss", "dataset", "logger", "sampler")
_HOOKS = {"model": "register_models", "loss": "register_losses", "dataset": "register_datasets",
          "logger": "register_loggers", "sampler": "register_samplers"}
_PLURALS = {"model": "models", "loss": "losses", "dataset": "datasets", "logger": "loggers", "sampler": "samplers"}

pm = pluggy.PluginManager(GROUP)
pm.add_hookspecs(hookspecs)

#: Plugin name -> the distribution that provides it and that distribution's version.
_distributions: dict[str, tuple[str, str]] = {}
#: Installed distributions the allow-list kept out (never imported, so their names are unknown).
_skipped: set[str] = set()
_loaded = False
#: What the plugins are doing while genzoo imports or registers them (``being imported``, ``registering models``),
#: None otherwise: :func:`registry` is refused meanwhile (:class:`RegistryNotReady`).
_busy: str | None = None


class RegistryNotReady(GenzooError):
    """The registry was looked up while plugins were being imported or registered: it does not exist yet.

    Building it there ran every plugin's hooks again from inside one, until ``RecursionError``, which each
    built-in model's type check then met and was blamed for (seven false warnings on every command), or, at
    import, looked a built-in loss up in an empty registry (``unknown loss 'bce-sum' (available: none)``;
    eighteenth hostile pass, plugins F6). The plugin that looked it up is skipped instead, with one warning.
    """

    def __init__(self, when: str) -> None:
        super().__init__(f"genzoo's registry was looked up while a plugin was {when}, before it exists; look "
                         "things up when they are used, not while registering")
        self.when = when

    def skipped(self, plugin: str, distribution: str) -> str:
        """The warning that skips ``plugin``, the one that looked the registry up."""
        return (f"plugin {plugin!r} (distribution {distribution!r}) looked something up in genzoo's registry "
                f"(genzoo.registry(), list_models, get_model, ...) while {self.when}, before the registry exists, "
                "and is skipped: look things up when they are used, not while registering")


#: The end of the line of a plugin that changed torch's defaults or the process's settings as it was imported or
#: registered (:func:`_kept`).
_CONTRACT = ("the plugin contract: importing a plugin and running its register_* hooks leave torch's defaults and the "
             "process's settings alone")


@contextmanager
def _kept(who: str, what: str) -> Iterator[None]:
    """Import or register plugin ``who`` in the block, as every other call of plugin code is guarded
    (:func:`genzoo.sampler.defaults_kept`): the working directory, torch's defaults, grad mode and thread count,
    the stop-signal handlers and standard streams it changes are put back, and the change is a
    :class:`genzoo.sampler.PutBack` line naming it, which skips it. An installed plugin that changed directory
    to find a file of its own sent every run, of the built-in models too, to another folder, genzoo printing
    the asked-for path; one that set float64 as torch's default failed every model's first step, blaming the
    model (twentieth hostile pass, plugins F6)."""
    from genzoo.sampler import defaults_kept, threads_noted  # when needed: it imports torch

    with threads_noted(who), defaults_kept(who, what, _CONTRACT), _root_logger_kept(who, what), \
            _umask_kept(who, what), _environment_kept(who, what), _compiler_settings_kept(who, what):
        yield


#: The settings modules of torch's compiler, which a compiled step reads (``--compile``).
_COMPILER_CONFIGS = ("torch._inductor.config", "torch._dynamo.config", "torch._functorch.config")


def _compiler_overrides() -> dict[tuple[str, str], Any]:
    """Each setting of :data:`_COMPILER_CONFIGS` given a value from Python (not its default, nor the environment's),
    by module and name; a module not imported yet has none."""
    import sys

    found: dict[tuple[str, str], Any] = {}
    for module_name in _COMPILER_CONFIGS:
        entries = getattr(sys.modules.get(module_name), "_config", None)
        if not isinstance(entries, dict):
            continue
        unset = getattr(importlib.import_module("torch.utils._config_module"), "_UNSET_SENTINEL", None)
        for name, entry in entries.items():
            override = getattr(entry, "user_override", None)
            value = override.get() if override is not None else unset
            if value is not unset and not _equal(value, getattr(entry, "default", unset)):
                found[module_name, name] = value  # (torch's own modules set some to their defaults as they load)
    return found


def _equal(value: Any, default: Any) -> bool:
    try:
        return bool(value == default)
    except Exception:  # a value whose == raises (a graph pass object): not the default
        return False


@contextmanager
def _compiler_settings_kept(who: str, what: str) -> Iterator[None]:
    """Put back the settings of torch's compiler that plugin ``who``'s import or registration changed, which skips
    it. A plugin that set a custom graph pass or ``fallback_random`` in inductor's config at import changed what every
    ``--compile`` run computed, of genzoo's own models too, without a word (twenty-sixth hostile pass, plugins F6)."""
    import sys

    from genzoo.sampler import PutBack  # when needed, as in _kept

    before = _compiler_overrides()
    try:
        yield
    finally:
        now = _compiler_overrides()
        changed = sorted(key for key in {*before, *now} if key not in before or key not in now
                         or now[key] is not before[key])
        for module_name, name in changed:
            module = sys.modules[module_name]
            if (module_name, name) in before:
                setattr(module, name, before[module_name, name])
            else:  # back to no value given: delattr is torch's own way (mock.patch's), which hides the name
                delattr(module, name)
                module._config[name].hide = False
    if changed:
        shown_changes = ", ".join(f"{module_name}.{name}" for module_name, name in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise PutBack(f"{who} changed torch's compiler settings ({shown_changes}{more}) while {what}; they are "
                      f"put back ({_CONTRACT})")


#: Environment variables a plugin may not add, only the user: genzoo's own, where torch keeps its downloads, and
#: torch's launcher's (a plugin setting RANK and WORLD_SIZE at import had every run wait two minutes for ranks that
#: never came). Not all of torch's: importing torchvision sets TORCHINDUCTOR_CACHE_DIR, which genzoo sets aside.
_USERS_ENV = re.compile(r"GENZOO_|(TORCH_HOME|RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|GROUP_RANK|MASTER_ADDR|"
                        r"MASTER_PORT)$")


@contextmanager
def _environment_kept(who: str, what: str) -> Iterator[None]:
    """Put back, with one warning, the environment variables plugin ``who``'s import or registration removed or
    changed, and those of :data:`_USERS_ENV` it added (a library may add its own). A plugin's
    ``os.environ.clear()`` had genzoo look for data in its default folder and tell the user to set the
    ``GENZOO_DATA`` they had set (twenty-sixth hostile pass, plugins M1); the plugin still loads."""
    before = dict(os.environ)
    try:
        yield
    finally:
        now = dict(os.environ)
        if now != before:
            changed = sorted(name for name in {*before, *now} if before.get(name) != now.get(name)
                             and (name in before or _USERS_ENV.match(name)))
            for name in changed:
                if name in before:
                    os.environ[name] = before[name]
                else:
                    del os.environ[name]
            if changed:
                more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
                warn(f"{who} changed the environment variables {', '.join(map(escaped, changed[:3]))}{more} "
                     f"while {what}; they are put back: a plugin's settings come from its config and the user's "
                     "environment, not from changing it")


@contextmanager
def _umask_kept(who: str, what: str) -> Iterator[None]:
    """Put the process umask back after plugin ``who``'s import or registration, with one warning: a plugin's
    ``os.umask(0)`` at import made every file genzoo wrote after it (run folders, checkpoints) writable by anyone,
    without a word (twenty-fourth hostile pass, plugins M2). Read only here, where no thread of genzoo's writes:
    reading a umask sets it."""
    mask = os.umask(0o077)
    os.umask(mask)
    try:
        yield
    finally:
        now = os.umask(mask)
    if now != mask:
        warn(f"{who} set the process umask to {now:03o} while {what}; it is put back to {mask:03o}, so that "
             "genzoo's files stay as private as the user's umask asks: a plugin passes a mode to the files it makes")


@contextmanager
def _root_logger_kept(who: str, what: str) -> Iterator[None]:
    """Put the root logger's level and handlers back after plugin ``who``'s import or registration, with one
    warning: a plugin's ``logging.basicConfig(level=logging.DEBUG)`` at import had every library's debug lines
    (matplotlib's font search: hundreds) on every command's standard error (twenty-third hostile pass, plugins M4).
    A library logs through a logger of its own and leaves the root logger to the program; the plugin still loads."""
    import logging

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        changed = root.level != level or root.handlers != handlers
        root.setLevel(level)
        root.handlers[:] = handlers
    if changed:
        warn(f"{who} configured the root logger while {what} (logging.basicConfig?); it is put back: a plugin logs "
             "through a logger of its own (logging.getLogger(__name__)) and leaves the root logger to the program")


@contextmanager
def _busy_with(what: str) -> Iterator[None]:
    """Mark the plugins as ``what`` (being imported, registering models) for :func:`registry`'s refusal."""
    global _busy
    before, _busy = _busy, what
    try:
        yield
    finally:
        _busy = before


def _normalize(name: str) -> str:
    """Distribution names compare as pip compares them: case, ``-``, ``_`` and ``.`` folded."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _allowed() -> dict[str, str] | None:
    """The allow-list from ``GENZOO_LOAD_PLUGINS`` (each name normalised, to the name as given), or ``None`` when it
    is unset."""
    value = os.environ.get(ALLOW_ENV)
    if value is None:
        return None
    return {_normalize(name.strip()): name.strip() for name in value.split(",") if name.strip()}


def load_plugins() -> None:
    """Load every entry point of the ``genzoo`` group once; a broken one only warns, as does one whose import
    changes torch's defaults or the process's settings (:func:`_kept`)."""
    from genzoo.sampler import PutBack  # when needed, as in _kept

    global _loaded
    if _loaded:
        return
    _loaded = True
    from genzoo import process_settings  # when needed: it imports torch

    process_settings.watch_watchdog()  # before any plugin's code runs
    _skipped.clear()
    allowed = _allowed()
    builtins_found = False
    offering: set[str] = set()  # the distributions with plugins, normalised
    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda ep: not _is_builtin(ep)):
        if ep.dist is not None and not isinstance(ep.dist.name, str):
            # A half-written install: a TypeError traceback in every command, GENZOO_LOAD_PLUGINS= too; no
            # allow-list can name it, so it is never imported (eighteenth hostile pass, plugins F7)
            warn(f"a distribution in {ep.dist.locate_file('')} offers genzoo plugins (entry point {ep.name} = "
                 f"{ep.value}) but its metadata has no name (a broken install?); it is skipped")
            continue
        dist = ep.dist.name if ep.dist is not None else "unknown"
        offering.add(_normalize(dist))
        version = ep.dist.version if ep.dist is not None else ""
        builtin = _is_builtin(ep)
        builtins_found = builtins_found or builtin
        if allowed is not None and not builtin and _normalize(dist) not in allowed:
            _skipped.add(dist)
            continue  # not imported at all: a distrusted plugin runs no code
        if ep.dist is not None and not isinstance(ep.dist.version, str):
            # A run records its plugins' versions, and a run folder's reader takes a version only as text: a run
            # of such a plugin would be unreadable after it trained (twenty-second hostile pass, plugins F4)
            warn(f"distribution {ep.dist.name!r} offers genzoo plugins (entry point {ep.name} = {ep.value}) but its "
                 "metadata has no version (a broken install?); it is skipped")
            continue
        if not builtin:  # before a plugin's code can import it unprotected (twenty-sixth hostile pass, F12)
            import_matplotlib()
        try:
            with _busy_with("being imported"), _kept(f"plugin {ep.name!r} (distribution {dist!r})", "being imported"):
                plugin = ep.load()
        except RegistryNotReady as exc:
            warn(exc.skipped(ep.name, dist))
            continue
        except PutBack as exc:
            warn(f"{exc}; it is skipped")
            continue
        except KeyboardInterrupt:
            raise
        except PLUGIN_FAULTS as exc:  # a faulty plugin must not take the others down
            warn(f"plugin {ep.name!r} from {dist!r} failed to load and is skipped: {describe(exc)}")
            continue
        name = _free_name(ep.name, dist)
        try:
            if pm.is_registered(plugin):
                continue
            if name is None:
                warn(_names_taken(ep, dist))
                continue
            register_plugin(plugin, name, dist, version)
        except pluggy.PluginValidationError as exc:  # e.g. a hook whose argument is not ``register``
            warn(f"plugin {ep.name!r} from {dist!r} has an invalid hook and is skipped: {exc}")
        except KeyboardInterrupt:
            raise
        except PLUGIN_FAULTS as exc:
            # pluggy reads the object's attributes to find its hooks: an object whose ``__dir__`` raised was a
            # traceback in every command, one raising SystemExit(3) ended each with exit 3, no word (twenty-fifth
            # hostile pass, plugins F9)
            _forget(name)
            warn(f"plugin {ep.name!r} from {dist!r} failed to register and is skipped: {describe(exc)}")
    if not builtins_found:  # another distribution named genzoo shadows this one: say so, not "available: none"
        warn(_missing_builtins())
    unknown = [given for name, given in (allowed or {}).items() if name not in offering]
    if unknown:  # a typo in the list loads nothing, and said nothing either
        warn(f"{ALLOW_ENV} names {', '.join(map(repr, unknown))}, but no installed distribution of that name "
             "offers genzoo plugins; it loads nothing")


def _refuse_unrun(result: Any, hook: str) -> None:
    """Refuse what a ``register_*`` hook gave back when its body never ran: an ``async def`` or a generator hook
    returned a coroutine or generator unstarted, registering nothing without a word (twenty-fifth hostile pass,
    plugins M9)."""
    if inspect.iscoroutine(result) or inspect.isgenerator(result) or inspect.isasyncgen(result):
        kind = "an async function" if inspect.iscoroutine(result) or inspect.isasyncgen(result) else "a generator"
        if not inspect.isasyncgen(result):  # (a coroutine never awaited would add Python's own warning)
            result.close()
        raise TypeError(f"its {hook} hook is {kind}, whose body never runs when called: make it a plain function")


def _forget(name: str | None) -> None:
    """Unregister what pluggy kept of plugin ``name`` when its registration failed half-way, as far as it can."""
    if name is not None and pm.has_plugin(name):
        try:
            pm.unregister(name=name)
        except KeyboardInterrupt:
            raise
        except PLUGIN_FAULTS:  # its object cannot even be compared: its name stays taken, with no hook
            pass


def _is_builtin(ep: metadata.EntryPoint) -> bool:
    """Whether ``ep`` is one of genzoo's own modules, not anything a distribution named genzoo lists.

    Built-ins are loaded first, so that each gets its own name: a distribution found earlier on the path with an
    entry point ``vae`` took it, and one also listing ``vae@genzoo`` left the built-in vae no name at all, a
    traceback in every command (nineteenth hostile pass, plugins F4).
    """
    dist = ep.dist.name if ep.dist is not None else None
    return dist == BUILTIN_DISTRIBUTION and ep.value.split(".")[0].split(":")[0] == BUILTIN_PACKAGE


def _free_name(name: str, distribution: str) -> str | None:
    """The plugin name of entry point ``name`` of ``distribution``: ``name``, or ``name@distribution`` when another
    plugin has it; None when both are taken (an entry point listed three times: pluggy's ``ValueError``)."""
    for candidate in (name, f"{name}@{distribution}"):
        if not pm.has_plugin(candidate):
            return candidate
    return None


def _names_taken(ep: metadata.EntryPoint, distribution: str) -> str:
    """The warning that skips entry point ``ep`` of ``distribution``, both of whose names are taken."""
    fallback = f"{ep.name}@{distribution}"
    holders = sorted({_distributions.get(name, (name, ""))[0] for name in (ep.name, fallback)})
    by = f"distribution{'s' if len(holders) > 1 else ''} {' and '.join(map(repr, holders))}"
    return (f"entry point {ep.name} = {ep.value} of distribution {distribution!r} is skipped: the plugin names "
            f"{ep.name!r} and {fallback!r} are both taken (by {by}); give "
            "each genzoo entry point of a distribution a name of its own")


def _missing_builtins() -> str:
    """Why genzoo's built-in plugins are missing: which ``genzoo`` distribution Python found instead."""
    try:
        found = metadata.distribution(BUILTIN_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return (f"genzoo's built-in plugins are not loaded: no {BUILTIN_DISTRIBUTION!r} distribution is installed "
                "(install genzoo with pip)")
    return (f"the {BUILTIN_DISTRIBUTION!r} distribution found first on the path ({found.locate_file('')}, version "
            f"{found.version}) does not list genzoo's built-in plugins, so they are not loaded; another package "
            f"named genzoo shadows this one ({os.path.dirname(__file__)})")


#: Checks of a model's config class that the layers above add (the command line's: the options its fields give
#: must not clash with genzoo's own, ``genzoo.options.config_clash``); each says why the model cannot be
#: registered, or None. Added where those layers are imported, so the registry never imports them.
CONFIG_CHECKS: list[Callable[[str, "type[ModelConfig]"], str | None]] = []


def register_plugin(plugin: Any, name: str, distribution: str | None = None, version: str = "") -> None:
    """Register a plugin object (a module or any object with hook implementations).

    The next :func:`registry` call sees it. One implementing a hook genzoo does not know is refused (pluggy's
    :class:`~pluggy.PluginValidationError`, as for an invalid hook) and left unregistered.
    """
    pm.register(plugin, name=name)
    unknown = _unknown_hooks(plugin)
    if unknown:
        pm.unregister(plugin)
        for hook in unknown:  # pluggy keeps a caller for a hook without a spec: none is left once none implements it
            if not getattr(pm.hook, hook).get_hookimpls():
                delattr(pm.hook, hook)
        raise pluggy.PluginValidationError(plugin, _unknown_hooks_line(unknown))
    _distributions[name] = (distribution or name, version)


def _unknown_hooks(plugin: Any) -> list[str]:
    """The hooks ``plugin`` implements that genzoo has no spec of, unless marked ``optionalhook``: pluggy's
    ``check_pending`` for this plugin alone. A typo (``register_model``) was ignored without a word, and
    ``train typovae`` said only ``unknown model`` (eighteenth hostile pass, M3)."""
    return sorted(name for name, caller in vars(pm.hook).items() if not name.startswith("_") and not caller.has_spec()
                  and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()))


def _unknown_hooks_line(unknown: list[str]) -> str:
    """What is wrong with a plugin implementing the ``unknown`` hooks, and the hooks genzoo has."""
    hooks = sorted(_HOOKS.values())
    named = []
    for name in unknown:
        close = difflib.get_close_matches(name, hooks, n=1)
        named.append(f"{name} (did you mean {close[0]}?)" if close else name)
    which = "is no genzoo hook" if len(named) == 1 else "are no genzoo hooks"
    return f"it implements {', '.join(named)}, which {which}; genzoo's hooks are {', '.join(hooks)}"


def unregister_plugin(name: str) -> None:
    """Remove the plugin registered as ``name``; the next :func:`registry` call no longer has it."""
    pm.unregister(name=name)
    _distributions.pop(name, None)


@dataclass(frozen=True)
class Entry:
    """One registered model, loss, dataset, logger or sampler and where it came from."""

    kind: str
    name: str
    obj: Any
    plugin: str
    distribution: str
    version: str = ""

    @property
    def origin(self) -> str:
        """How a message names it: ``model 'vae' from plugin 'vae' (distribution 'genzoo')``."""
        return f"{self.kind} {self.name!r} from plugin {self.plugin!r} (distribution {self.distribution!r})"


#: The most bytes a registered name may take: it names folders (``runs/NAME-20261130-221050-2``) whose names may
#: take 255 bytes, and a 250-character name failed to make one.
MAX_NAME_BYTES = 100
#: The kinds whose names an option takes as a list separated by commas, and that option.
_LISTED = {"logger": "--log", "sampler": "--sampler"}


def _name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` cannot name a ``kind`` (one the command line cannot give, or no folder can be named by), or None.

    A name is a part of paths (``runs/NAME-...``, a compare's ``OUT/runs/NAME``): ``../x`` made a run folder outside
    ``runs/`` (seventeenth hostile pass, M3); one too long for a folder name failed in ``train``, and ``-dash``, one
    space or a control character cannot be typed as an argument, nor a logger ``csv,json`` given to ``--log``
    (eighteenth hostile pass, M5).
    """
    if name in (".", "..") or any(part in name for part in ("/", "\\", "\0")):
        return f"a {kind} name must not be '.' or '..' nor hold '/', '\\' or NUL (it names folders)"
    if not name.isprintable():
        return f"a {kind} name must hold printable characters only (it is typed on the command line)"
    if name != name.strip():
        return f"a {kind} name must not start or end with a space (it is typed on the command line)"
    if name.startswith("-"):
        return f"a {kind} name must not start with '-' (the command line would read it as an option)"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"a {kind} name must be at most {MAX_NAME_BYTES} bytes (it names folders, runs/NAME-TIMESTAMP)"
    if kind in _LISTED and "," in name:
        return f"a {kind} name must not hold ',' ({_LISTED[kind]} takes names separated by commas)"
    if kind == "model" and "=" in name:  # twentieth hostile pass, plugins M5
        return "a model name must not hold '=' (compare's --set MODEL.FIELD=VALUE could never name it)"
    return None


def _check_kind(kind: str, name: str, obj: Any) -> None:
    """Refuse a registration of the wrong type, so it fails in its plugin, not in a later command."""
    from genzoo.data import Dataset
    from genzoo.logger import Logger
    from genzoo.loss import Loss
    from genzoo.model import Model, ModelConfig
    from genzoo.sampler import Sampler

    if type(name) is not str or not name:  # sorted, compared and printed as a string by every command
        raise TypeError(f"a {kind} name must be a non-empty string, got {name!r:.60}")
    problem = _name_problem(kind, name)
    if problem is not None:
        raise TypeError(f"{problem}, got {name!r:.60}")
    if kind == "loss":
        ok, wanted = isinstance(obj, Loss), "a genzoo.Loss instance"
    else:
        base = {"model": Model, "dataset": Dataset, "logger": Logger, "sampler": Sampler}[kind]
        ok, wanted = isinstance(obj, type) and issubclass(obj, base), f"a subclass of genzoo.{base.__name__}"
    if not ok:
        raise TypeError(f"{kind} {name!r} must be {wanted}, got {obj!r}")
    if kind == "dataset":  # every command (genzoo list too) reads it as a tuple of sizes
        shape = getattr(obj, "sample_shape", None)
        if not isinstance(shape, (tuple, list)) or not shape or not all(type(n) is int and n > 0 for n in shape):
            # A property is what the class holds, not a shape: every command reads the class's (no instance yet).
            declared = "as a property" if isinstance(shape, property) else f"{shape!r:.60}"
            raise TypeError(f"dataset {name!r} declares sample_shape {declared}, not a tuple of positive "
                            "integers on its class")
    if kind in ("model", "sampler"):  # a config genzoo cannot read would fail in every later command instead
        try:
            typing.get_type_hints(obj.Config)
        except KeyboardInterrupt:
            raise
        except PLUGIN_FAULTS as exc:
            raise TypeError(f"{kind} {name!r} has a config whose field types cannot be resolved: "
                            f"{describe(exc)}") from exc
    if kind == "model":
        for flag in CAPABILITIES:  # read from the class by every command, samplers' checks too, before any instance
            declared = inspect.getattr_static(obj, flag, None)
            if type(declared) is not bool:
                shown_as = "as a property" if isinstance(declared, property) else f"as {declared!r:.60}"
                raise TypeError(f"model {name!r} declares {flag} {shown_as}, not True or False on its class")
        config = obj.Config
        if not (isinstance(config, type) and issubclass(config, ModelConfig) and dataclasses.is_dataclass(config)):
            raise TypeError(f"model {name!r} has a Config that is not a genzoo.ModelConfig dataclass: {config!r:.60}")
        option, fields = config.loss_option, {f.name for f in dataclasses.fields(config)}
        if option is not None and option not in fields:  # --loss sets it: a wrong one failed only when --loss was given
            raise TypeError(f"model {name!r} has a Config whose loss_option {option!r:.60} names none of its fields")
        for check in CONFIG_CHECKS:
            problem = check(name, config)
            if problem is not None:
                raise TypeError(f"model {name!r}: {problem}; the plugin must rename it")


#: What a model can do, read from its class: a property there that raised was blamed on the built-in sampler that
#: asked (twenty-fourth hostile pass, plugins M6).
CAPABILITIES = ("can_reconstruct", "can_sample", "can_encode", "gaussian_prior", "has_elbo", "has_likelihood")


class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for kind in KINDS:
            caller = getattr(pm.hook, _HOOKS[kind])
            # Call each implementation on its own, so every registration knows its plugin.
            for impl in reversed(caller.get_hookimpls()):
                self._collect(kind, impl.plugin_name, impl.function)

    def _collect(self, kind: str, plugin: str, function: Callable[..., Any]) -> None:
        distribution, version = _distributions.get(plugin, (plugin, ""))

        def register(name: str, obj: Any) -> None:
            _check_kind(kind, name, obj)
            existing = self.entries[kind].get(name)
            if existing is not None and existing.plugin == plugin:
                # Its own mistake, skipped as other bad registrations are: the clash line below advised uninstalling
                # one of two plugins that were one, and stopped every command (eighteenth hostile pass, M4).
                raise ValueError(f"it registers {kind} {name!r} twice")
            if existing is not None:
                raise GenzooError(
                    f"{kind} {name!r} is registered twice: by plugin {existing.plugin!r} "
                    f"(distribution {existing.distribution!r}) and by plugin {plugin!r} "
                    f"(distribution {distribution!r}); uninstall one or restrict "
                    f"plugins with {ALLOW_ENV}"
                )
            self.entries[kind][name] = Entry(kind, name, obj, plugin, distribution, version)

        from genzoo.sampler import PutBack  # when needed, as in _kept

        before = dict(self.entries[kind])
        what = f"registering {_PLURALS[kind]}"
        try:
            with _busy_with(what), _kept(f"plugin {plugin!r} (distribution {distribution!r})", what):
                _refuse_unrun(function(register=register), _HOOKS[kind])
        except RegistryNotReady as exc:
            self.entries[kind] = before
            warn(exc.skipped(plugin, distribution))
        except PutBack as exc:
            self.entries[kind] = before
            warn(f"{exc}; it is skipped")
        except KeyboardInterrupt:
            raise
        except GenzooError as exc:
            if not can_show(exc):  # its own line would raise (twenty-fourth hostile pass, plugins F9)
                raise GenzooError(f"plugin {plugin!r} (distribution {distribution!r}) failed while {what}: "
                                  f"{describe(exc)}") from exc
            raise
        except PLUGIN_FAULTS as exc:
            self.entries[kind] = before  # skipped whole: none of what it registered before failing stays
            warn(f"plugin {plugin!r} (distribution {distribution!r}) failed while "
                  f"registering {_PLURALS[kind]} and is skipped: {describe(exc)}")

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind`` (a name in :data:`KINDS`: ``"model"``, ``"sampler"``, ...), sorted."""
        return sorted(self.entries[kind])

    def entry(self, kind: str, name: str) -> Entry:
        """Look ``name`` up, or fail with the closest names and everything available.

        When the allow-list kept distributions out, they are named: one of them may
        provide ``name``, and knowing which would take importing it.
        """
        if not isinstance(name, str):  # None, a number or a list from Python code: say so, not TypeError
            raise GenzooError(f"a {kind} name must be a string, got {name!r:.60}")
        try:
            return self.entries[kind][name]
        except KeyError:
            pass
        names = self.names(kind)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        available = ", ".join(names) or "none"
        if _skipped:
            available += f"; {ALLOW_ENV} skipped distributions: {', '.join(sorted(_skipped))}"
        raise GenzooError(f"unknown {kind} {name!r}{hint} (available: {available})")

    def model(self, name: str) -> type[Model]:
        """The model class registered as ``name`` (not built: see :meth:`build_model`)."""
        model: type[Model] = self.entry("model", name).obj
        return model

    def loss(self, name: str, kind: str | None = None) -> Loss:
        """The loss ``name``; with ``kind``, refuse a loss of another kind."""
        loss: Loss = self.entry("loss", name).obj
        if kind is not None and loss.kind != kind:
            raise GenzooError(f"loss {name!r} is of kind {loss.kind!r}, not {kind!r}")
        return loss

    def dataset(self, name: str) -> type[Dataset]:
        """The dataset class registered as ``name``; create it as ``cls(root, download=...)``."""
        dataset: type[Dataset] = self.entry("dataset", name).obj
        return dataset

    def logger(self, name: str) -> type[Logger]:
        """The logger class registered as ``name``; create it as ``cls(run_dir, start_epoch)``."""
        logger: type[Logger] = self.entry("logger", name).obj
        return logger

    def sampler(self, name: str) -> type[Sampler]:
        """The sampler class registered as ``name`` (not built: see :meth:`build_sampler`)."""
        sampler: type[Sampler] = self.entry("sampler", name).obj
        return sampler

    def build_sampler(self, name: str, model: Model, model_name: str, **options: Any) -> Sampler:
        """Sampler ``name`` for ``model`` (registered as ``model_name``), not fitted yet.

        A model it cannot draw from is refused in one line, as is a plugin that fails to build.
        """
        from genzoo.sampler import checked_unsupported, defaults_kept, guarded, origin  # when needed, as above

        entry = self.entry("sampler", name)
        sampler_class: type[Sampler] = entry.obj
        who = origin(name, entry.plugin, entry.distribution)
        problem = checked_unsupported(sampler_class, model, who)
        if problem is not None:
            raise GenzooError(f"sampler {name!r} cannot draw from model {model_name!r}: {problem}")
        # Built with the model in eval mode, as it draws: an __init__ that calls model.eval() changes nothing,
        # whichever mode the caller left it in (compare's plan builds on models fresh in training mode).
        training = model.training
        model.eval()
        try:
            with defaults_kept(who, "being built", model=model):  # its __init__ is no plugin_call: kept here
                try:
                    config = sampler_class.Config.from_dict(options)
                except GenzooError as exc:
                    raise RefusedOptions(str(exc)) from exc
                built = sampler_class(config, model)
        except (GenzooError, KeyboardInterrupt):
            raise
        except PLUGIN_FAULTS as exc:
            raise GenzooError(f"{entry.origin} failed to build: {describe(exc)}") from exc
        finally:
            model.train(training)
        return guarded(built, name, entry.plugin, entry.distribution)

    def build_model(self, name: str, sample_shape: tuple[int, ...], **options: Any) -> Model:
        """Build model ``name`` from its config class and ``options``.

        A plugin whose model raises while being built is named in the error, as is one that changes
        torch's default dtype, device or grad mode (put back: every later step would fail or differ).
        The model gets the losses its config names from this registry (:meth:`Model.build`).
        """
        from genzoo.sampler import defaults_kept  # the sampler guard's check of torch's defaults

        entry = self.entry("model", name)
        model_class: type[Model] = entry.obj
        try:
            with defaults_kept(entry.origin, "being built", "the Model contract: building a model leaves torch's "
                               "defaults and the process's settings alone"):
                config = model_class.Config.from_dict(options)
                _refuse_dropped(entry.origin, config, options)
                # On a copy of the config: an __init__ that rewrites the one it is given (refused as such later)
                # would otherwise hand the real build a config already rewritten
                _refuse_unfitting(entry.origin, lambda: model_class(copy.deepcopy(config), sample_shape))
                return model_class.build(config, sample_shape, registry=self)
        except (GenzooError, KeyboardInterrupt):
            raise
        except PLUGIN_FAULTS as exc:
            # torch's own errors append C++ stack frames after their first line: keep that line.
            reason = first_line(describe(exc))
            raise GenzooError(f"{entry.origin} failed to build: {reason}") from exc


def _refuse_dropped(origin: str, config: ModelConfig, options: dict[str, Any]) -> None:
    """Refuse a config that does not hold an option it was given: one whose ``from_dict`` dropped ``latent``, or
    whose ``__post_init__`` clamped it, trained ``--latent 4`` at 40 (or 2), and ``compare --latent 4`` reported
    latent 4 for it, exit 0 (twenty-fifth hostile pass, plugins F10)."""
    from genzoo.checks import same_value, shown  # imports torch: when needed

    for name, value in options.items():
        field = config.loss_option if name == "loss" and config.loss_option is not None else name
        held = getattr(config, field, None)
        if not same_value(tuple(value) if isinstance(value, list) else value, held):
            raise GenzooError(f"{origin}: its config was given {field} {shown(value)} but holds {shown(held)}; a "
                              "config keeps each option it is given, or refuses it")


def _refuse_unfitting(origin: str, build: Callable[[], Model]) -> None:
    """Refuse, in one line, a model whose weights (counted by :func:`genzoo.memory.weights_bytes`, before it is
    built) need more memory than this machine has free: building it filled memory until the kernel killed the
    command."""
    from genzoo.memory import available_bytes, shown_bytes, weights_bytes  # imports torch: when needed

    need, free = weights_bytes(build), available_bytes()
    # Twice: genzoo's guard of plugin calls holds a copy of the weights to put them back (sampler._Snapshot); a
    # model that fit once then failed there, a traceback (twenty-fourth hostile pass, files F2)
    if need is not None and free is not None and 2 * need > free:
        raise GenzooError(f"{origin} with these options has {shown_bytes(need)} of weights, and genzoo holds a "
                          f"second copy of them while it checks the model's calls: {shown_bytes(2 * need)}, more "
                          f"than the {shown_bytes(free)} of memory this machine has free: give it smaller sizes")


#: The last registry built and the plugins it was built from (see :func:`registry`).
_built: tuple[list[tuple[str, Any]], dict[str, tuple[str, str]], Registry] | None = None


def registry() -> Registry:
    """The registry of the plugins registered now, built once per process.

    It is rebuilt only when the plugins differ from those it was built from: one was
    registered or unregistered (through :func:`register_plugin`, the ``genzoo_register``
    test fixture or the plugin manager itself). So the hooks run once per command,
    and a faulty plugin's warning prints once. A build that fails is not kept. Called
    while a plugin is imported or registers (from its hook), it raises
    :class:`RegistryNotReady`, which skips that plugin.
    """
    global _built
    if _busy is not None:
        raise RegistryNotReady(_busy)
    load_plugins()
    plugins, distributions = pm.list_name_plugin(), dict(_distributions)
    if _built is not None:
        built_plugins, built_distributions, built = _built
        same = len(plugins) == len(built_plugins) and all(
            name == built_name and plugin is built_plugin
            for (name, plugin), (built_name, built_plugin) in zip(plugins, built_plugins))
        if same and distributions == built_distributions:
            return built
    fresh = Registry()
    _built = (plugins, distributions, fresh)
    return fresh
