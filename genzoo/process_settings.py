"""The process-wide settings genzoo relies on, which plugin code it calls must leave as it found them.

A plugin's call runs in genzoo's process: one that leaves torch's default dtype, device or grad mode, its thread
count, deterministic algorithms, fp32 precision, autocast or inference mode, its global module hooks, Python's
recursion limit (lowered), the working directory, genzoo's own stop-signal and SIGPIPE handlers, the signal mask, a
SIGALRM timer or its standard streams changed changes everything genzoo does after it. The working directory: the
run's later files (checkpoint, metric lines, pictures, ``eval.json``), written by a path relative to it, went to
another folder or failed as a file error blaming nobody; a SIGTERM handler set back to its default: a SIGTERM killed
the run at once, with no checkpoint and no line (nineteenth hostile pass, F2 and F3). ``sys.stdout`` closed by a
console logger's ``close()`` turned a finished run's last lines into a ``ValueError`` traceback, exit 1; replaced by
one that captures the console, it silenced them, exit 0 (twentieth hostile pass, plugins F2). :func:`saved` reads
them before the call, :func:`put_back` restores what changed after it and names each change, for the guard's one
line (:func:`genzoo.sampler.defaults_kept`).
"""

from __future__ import annotations

import faulthandler
import importlib
import io
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

import torch

from genzoo.checks import printable

#: How a message names one of torch's settings.
TORCH = "torch's "

#: The stop signals genzoo handles itself (``trainer.STOP_SIGNALS``): training checkpoints on them.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGXCPU)
#: The handlers a guarded call must leave as they were: the stop signals', and SIGPIPE's, which Python ignores so that
#: a closed pipe is an error genzoo reports (a plugin setting it to the default had ``| head`` kill genzoo without a
#: word, exit 141: twenty-fourth hostile pass, plugins M4).
KEPT_SIGNALS = (*STOP_SIGNALS, signal.SIGPIPE)
_KEPT = frozenset(KEPT_SIGNALS)

#: The objects whose ``fp32_precision`` say how torch computes fp32 products (``set_float32_matmul_precision``
#: sets some of them; :func:`genzoo.precision.fp32_precision` sets others for training's steps).
_PRECISION_OWNERS = ("", "cuda.matmul", "cudnn.conv", "cudnn.rnn", "mkldnn.matmul", "mkldnn.conv", "mkldnn.rnn")
#: The devices whose autocast state is kept (a plugin may turn either on without a GPU).
AUTOCAST_DEVICES = ("cpu", "cuda")
#: The inference-mode guards :func:`put_back` entered to put the mode back; kept for the process's life.
_INFERENCE_GUARDS: list[Any] = []
#: The standard streams genzoo writes its lines to, by their name in :mod:`sys`.
STREAMS = ("stdout", "stderr")
#: torch's global module hooks (``register_module_forward_hook`` and the like), by their name in
#: ``torch.nn.modules.module``, which torch looks up at each call: a plugin's hook at import changed what every model
#: of every run computed, ``eval`` of an older run included, without a word (twenty-fifth hostile pass, plugins F1).
GLOBAL_HOOKS = tuple(name for name, value in vars(torch.nn.modules.module).items()
                     if name.startswith("_global_") and isinstance(value, dict))
#: The modules whose global hooks are kept, each with what a message calls its hooks: torch's optimizers call
#: theirs at every step (a plugin's ``register_optimizer_step_pre_hook`` at import zeroed every run's gradients, of
#: genzoo's own models too, without a word; twenty-sixth hostile pass, plugins F3).
_HOOK_MODULES = ((torch.nn.modules.module, "module", GLOBAL_HOOKS),
                 (_optimizers := importlib.import_module("torch.optim.optimizer"), "optimizer", tuple(
                     name for name, value in vars(_optimizers).items()
                     if name.startswith("_global_") and isinstance(value, dict))))
#: The interval timers whose signals end the process by default: one a call leaves set is cancelled. A SIGALRM timer
#: killed a run mid-epoch (twenty-fifth pass, F8), a CPU-time one by SIGVTALRM or SIGPROF (twenty-sixth, F1).
_TIMERS = ((signal.ITIMER_REAL, "SIGALRM"), (signal.ITIMER_VIRTUAL, "SIGVTALRM"), (signal.ITIMER_PROF, "SIGPROF"))
#: Where Python reports an exception nobody catches, by name in :mod:`sys` or :mod:`threading`: genzoo's command line
#: sets its own one-line reports there; a plugin that put Python's back had full tracebacks printed (twenty-sixth
#: hostile pass, plugins F7).
EXCEPTION_HOOKS = ((sys, "excepthook"), (threading, "excepthook"), (sys, "unraisablehook"))
_MISSING = object()
#: The file descriptors of standard output and error, by the stream a message names them for.
_DESCRIPTORS = {1: "standard output", 2: "standard error"}


def _opened_on(fd: int) -> tuple[int, int] | None:
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _copies() -> dict[int, int]:
    """A copy of each of :data:`_DESCRIPTORS` as genzoo found them, to put one back that a call redirected."""
    copies = {}
    for fd in _DESCRIPTORS:
        try:
            copies[fd] = os.dup(fd)
        except OSError:  # closed: there is nothing to put back
            continue
        os.set_inheritable(copies[fd], False)
    return copies


_DESCRIPTOR_COPIES = _copies()
#: The kernels registered through ``torch.library`` when last looked at (:func:`_put_back_kernels`).
_KERNELS_SEEN = frozenset(torch.library._impls)


class WrappedStream:
    """A standard stream that writes through another, :attr:`stream` (genzoo's command line tags standard output's
    errors with one), and is that stream in all else. Closed, it is put back by reopening the stream it wraps, so
    that it stays the one in use."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@dataclass(frozen=True)
class Stream:
    """One of :data:`STREAMS` as a moment left it: the object in :mod:`sys`, whether it was closed, and the file
    descriptor it writes to (None: none, as for a ``StringIO``), which a closed one is reopened on."""

    stream: Any
    closed: bool
    fd: int | None
    coding: tuple[Any, Any] = (None, None)  # a text stream's encoding and errors, which ``reconfigure`` changes


@dataclass(frozen=True)
class Settings:
    """The settings as one moment left them (:func:`saved`); each is compared and put back on its own."""

    dtype: torch.dtype
    device: torch.device
    grad: bool
    threads: int
    deterministic: tuple[bool, bool]  # on, warning only
    matmul: str | None  # torch's legacy matmul precision; None where it cannot be read (mixed with the new one)
    precision: tuple[str, ...]  # each of _PRECISION_OWNERS' fp32_precision
    cwd: str | None  # None: the working directory was deleted, so there is no path to come back to
    handlers: tuple[Any, ...] | None  # of KEPT_SIGNALS; None outside the main thread, where none can be set
    streams: tuple[Stream, ...]  # of STREAMS
    descriptors: tuple[tuple[int, int] | None, ...]  # what file descriptors 1 and 2 are open on (device, inode)
    autocast: tuple[tuple[bool, torch.dtype], ...]  # each of AUTOCAST_DEVICES': on, and its dtype
    inference: bool  # torch's inference mode
    anomaly: tuple[bool, bool]  # torch's anomaly detection: on, and its check for NaN
    hooks: tuple[tuple[Any, tuple[tuple[Any, Any], ...]], ...]  # each of GLOBAL_HOOKS: the object, and its items
    recursion: int  # Python's recursion limit
    modes: tuple[int, int]  # how many torch function modes and dispatch modes are entered
    saved_hooks: Any  # the innermost default saved-tensors hooks (a pair of functions), or None
    blocked: frozenset[int]  # which of KEPT_SIGNALS this thread blocks
    timers: tuple[bool, ...]  # whether each of _TIMERS is set
    exception_hooks: tuple[Any, ...]  # each of EXCEPTION_HOOKS
    kernels: frozenset[str]  # the kernels registered through torch.library (torch.library._impls)
    watchdog: float | None  # the seconds of a faulthandler watchdog armed since watch_watchdog(); None: none


def saved() -> Settings:
    """The settings now (a few microseconds: a training step's guard reads them each step)."""
    main = threading.current_thread() is threading.main_thread()
    return Settings(
        torch.get_default_dtype(), torch.get_default_device(), torch.is_grad_enabled(), torch.get_num_threads(),
        (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
        _matmul(), tuple(_owner(name).fp32_precision for name in _PRECISION_OWNERS), working_directory(),
        tuple(signal.getsignal(signum) for signum in KEPT_SIGNALS) if main else None,
        tuple(_stream(getattr(sys, name)) for name in STREAMS),
        tuple(_opened_on(fd) for fd in _DESCRIPTORS),
        tuple((torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)) for kind in AUTOCAST_DEVICES),
        torch.is_inference_mode_enabled(),
        (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
        tuple((hooks, tuple(hooks.items()) if isinstance(hooks, dict) else ())
              for module, _, names in _HOOK_MODULES for hooks in (vars(module).get(name, _MISSING) for name in names)),
        sys.getrecursionlimit(),
        (torch._C._len_torch_function_stack(), torch._C._len_torch_dispatch_stack()),
        torch._C._autograd._top_saved_tensors_default_hooks(False),
        frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, ())) & _KEPT,
        tuple(signal.getitimer(timer)[0] > 0 for timer, _ in _TIMERS),
        tuple(getattr(owner, name) for owner, name in EXCEPTION_HOOKS),
        _kernels(),
        _watchdog,
    )


def put_back(before: Settings) -> list[str]:
    """The settings that differ from ``before``, each named as it was and as the call left it, and put back."""
    now = saved()
    changed: list[str] = []
    if now.dtype is not before.dtype:
        changed.append(f"{TORCH}default dtype ({dtype_name(before.dtype)}, set to {dtype_name(now.dtype)})")
        torch.set_default_dtype(before.dtype)
    if now.device != before.device:
        changed.append(f"{TORCH}default device ({before.device}, set to {now.device})")
        torch.set_default_device(None if before.device == torch.device("cpu") else before.device)  # None: torch's own
    if now.grad is not before.grad:
        changed.append(f"{TORCH}grad mode ({_enabled(before.grad)}, set to {_enabled(now.grad)})")
        torch.set_grad_enabled(before.grad)
    if now.anomaly != before.anomaly:  # left on at import: a diverging run was a traceback blaming the model
        changed.append(f"{TORCH}anomaly detection ({_enabled(before.anomaly[0])}, set to {_enabled(now.anomaly[0])})")
        torch.autograd.set_detect_anomaly(*before.anomaly)
    if now.threads != before.threads:
        changed.append(f"{TORCH}thread count ({before.threads}, set to {now.threads})")
        torch.set_num_threads(before.threads)
    if now.deterministic != before.deterministic:
        changed.append(f"{TORCH}deterministic algorithms ({_determinism(before.deterministic)}, set to "
                       f"{_determinism(now.deterministic)})")
        torch.use_deterministic_algorithms(before.deterministic[0], warn_only=before.deterministic[1])
    if (now.matmul, now.precision) != (before.matmul, before.precision):
        changed.append(_precision_change(before, now))
        _put_back_precision(before)
    changed += _put_back_autocast(before, now)
    changed += _put_back_hooks(before, now)
    changed += _put_back_process(before, now)
    changed += _put_back_kernels(before, now)
    changed += _put_back_modes(before)  # last: the default device, put back above, is a function mode too
    return changed


def _put_back_modes(before: Settings) -> list[str]:
    """torch's function and dispatch modes and its default saved-tensors hooks that a call entered and left
    entered, named and left. A plugin that entered a ``TorchFunctionMode`` or ``saved_tensors_hooks`` at import
    changed what every model of every run computed or its gradients, without a word (twenty-fifth hostile pass,
    plugins F5), as autocast did before it was kept."""
    from torch.utils import _python_dispatch

    changed: list[str] = []
    for kind, was, count, top, pop in (
            ("function", before.modes[0], torch._C._len_torch_function_stack, torch._C._get_function_stack_at,
             torch._C._pop_torch_function_stack),
            ("dispatch", before.modes[1], torch._C._len_torch_dispatch_stack, torch._C._get_dispatch_stack_at,
             _python_dispatch._pop_mode)):
        now = count()
        if now == was:
            continue
        names = ", ".join(type(top(i)).__name__ for i in range(was, now))
        changed.append(f"{TORCH}{kind} modes ({was} entered, set to {now}{': ' + names if names else ''})")
        for _ in range(now - was):
            pop()
    hooks = torch._C._autograd._top_saved_tensors_default_hooks(False)
    if hooks != before.saved_hooks:
        changed.append(f"{TORCH}default saved-tensors hooks ({_hooks_name(before.saved_hooks)}, set to "
                       f"{_hooks_name(hooks)})")
        for _ in range(1000):  # (a bound: each pop removes one pair the call pushed)
            if hooks is None or hooks == before.saved_hooks:
                break
            torch._C._autograd._pop_saved_tensors_default_hooks()
            hooks = torch._C._autograd._top_saved_tensors_default_hooks(False)
    return changed


#: The timeout of the watchdog armed through the functions :func:`watch_watchdog` put in place, or None.
_watchdog: float | None = None


def watch_watchdog() -> None:
    """Have faulthandler's ``dump_traceback_later`` and its ``cancel`` say here whether a watchdog is armed, which
    faulthandler itself never says: genzoo's command line calls this before any plugin loads, and arms none itself.
    A plugin's watchdog left armed at import (``exit=True``) ended a run with fifty lines of stack and exit 1, mid
    pictures or after its last line (twenty-sixth hostile pass, plugins F2)."""
    arm, cancel = faulthandler.dump_traceback_later, faulthandler.cancel_dump_traceback_later
    if getattr(arm, "__module__", None) == __name__:
        return

    def dump_traceback_later(timeout: float, *args: Any, **kwargs: Any) -> None:
        global _watchdog
        arm(timeout, *args, **kwargs)
        _watchdog = timeout

    def cancel_dump_traceback_later() -> None:
        global _watchdog
        cancel()
        _watchdog = None

    faulthandler.dump_traceback_later = dump_traceback_later
    faulthandler.cancel_dump_traceback_later = cancel_dump_traceback_later


def _kernels() -> frozenset[str]:
    """The kernels registered through torch.library now, taken anew only when there are more or fewer (a copy of
    the set at each guarded call would cost a training step tens of microseconds)."""
    global _KERNELS_SEEN
    if len(torch.library._impls) != len(_KERNELS_SEEN):  # torch rebinds the set when a library is destroyed
        _KERNELS_SEEN = frozenset(torch.library._impls)
    return _KERNELS_SEEN


def _put_back_kernels(before: Settings, now: Settings) -> list[str]:
    """Kernels a call registered through ``torch.library`` for torch's own operators (``aten::relu`` on the CPU),
    named and removed. A plugin's replaced ``relu`` at import changed what every model of every run computed,
    ``eval`` of an older run included, without a word (twenty-sixth hostile pass, plugins F4). Only ``aten``'s
    operators, the ones models are made of, defined in C++ (torch registers kernels of other namespaces' operators
    as it imports its own modules, which a plugin may import)."""
    if now.kernels is before.kernels:
        return []
    defined = torch.library._defs
    replaced = sorted(key for key in now.kernels - before.kernels
                      if key.startswith("aten/") and "::".join(key.split("/")[:2]) not in defined)
    if not replaced:
        return []
    import gc

    # type(), not isinstance: isinstance reads __class__, which some of torch's deprecated objects warn about
    for library in [thing for thing in gc.get_objects() if issubclass(type(thing), torch.library.Library)]:
        if library._op_impls & set(replaced):
            library._destroy()
    names = ", ".join("{}::{} for {}".format(*key.split("/", 2)) for key in replaced[:3])
    more = f" and {len(replaced) - 3} more" if len(replaced) > 3 else ""
    return [f"{TORCH}operators ({names}{more} replaced through torch.library)"]


def _hooks_name(hooks: Any) -> str:
    """A pair of saved-tensors hooks as a message names it: ``none``, or its pack function's qualified name."""
    return "none" if hooks is None else f"pack {getattr(hooks[0], '__qualname__', type(hooks[0]).__name__)}"


def _put_back_hooks(before: Settings, now: Settings) -> list[str]:
    """torch's global module and optimizer hooks, named and put back as :func:`put_back` does."""
    changed: list[str] = []
    places = [(module, kind, name) for module, kind, names in _HOOK_MODULES for name in names]
    for (module, kind, name), (hooks, items), (was, was_items) in zip(places, now.hooks, before.hooks, strict=True):
        if hooks is was and items == was_items:
            continue
        namespace = vars(module)
        changed.append(f"{TORCH}global {kind} hooks ({module.__name__}.{name}: {len(was_items)}, set to "
                       f"{len(items) if isinstance(hooks, dict) else 'another object'})")
        if was is _MISSING:
            namespace.pop(name, None)
            continue
        namespace[name] = was
        was.clear()
        was.update(was_items)  # in the order they were registered
    return changed


def _put_back_autocast(before: Settings, now: Settings) -> list[str]:
    """Autocast and inference mode, named and put back as :func:`put_back` does. A plugin that turned CPU autocast
    on at import had every run, of genzoo's own models too, train in bfloat16 without a word (twenty-fourth hostile
    pass, plugins F2); one that entered inference mode was named for grad mode, and inference mode stayed on (M1)."""
    changed: list[str] = []
    for kind, (on, dtype), (was_on, was_dtype) in zip(AUTOCAST_DEVICES, now.autocast, before.autocast, strict=True):
        if (on, dtype) != (was_on, was_dtype):
            changed.append(f"{TORCH}{kind} autocast ({_autocast(was_on, was_dtype)}, set to {_autocast(on, dtype)})")
            torch.set_autocast_enabled(kind, was_on)
            torch.set_autocast_dtype(kind, was_dtype)
    if now.inference != before.inference:
        changed.append(f"{TORCH}inference mode ({_enabled(before.inference)}, set to {_enabled(now.inference)})")
        # A mode is a guard entered and left in order: the call's own is left entered, and one of the mode before
        # is entered above it for the rest of the process (grad mode, which it sets, put back after it).
        guard = torch.inference_mode(before.inference)
        guard.__enter__()
        _INFERENCE_GUARDS.append(guard)
        torch.set_grad_enabled(before.grad)
    return changed


def _autocast(on: bool, dtype: torch.dtype) -> str:
    return f"on, {dtype_name(dtype)}" if on else "off"


def _put_back_process(before: Settings, now: Settings) -> list[str]:
    """The working directory, genzoo's stop-signal handlers and the standard streams: named and put back as
    :func:`put_back` does."""
    changed: list[str] = []
    # Lowered: genzoo's own next import failed in a RecursionError traceback (twenty-fifth hostile pass, plugins F2).
    # Raised, as inductor raises it to compile a graph, it is left.
    if now.recursion < before.recursion:
        changed.append(f"Python's recursion limit ({before.recursion}, set to {now.recursion})")
        sys.setrecursionlimit(before.recursion)
    # Blocked stop signals never reach their handlers: Ctrl-C and SIGTERM did not stop a run, which trained to its
    # end; a timer left set killed one by SIGALRM mid-epoch, exit 142, no word (twenty-fifth hostile pass, F7, F8).
    if now.blocked != before.blocked:
        names = ", ".join(signal.Signals(signum).name for signum in sorted(now.blocked ^ before.blocked))
        changed.append(f"the signal mask ({names} {'blocked' if now.blocked - before.blocked else 'unblocked'})")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, now.blocked - before.blocked)
        signal.pthread_sigmask(signal.SIG_BLOCK, before.blocked - now.blocked)
    for (timer, timer_signal), on, set_before in zip(_TIMERS, now.timers, before.timers, strict=True):
        if on and not set_before:
            changed.append(f"the {timer_signal} timer (none, set to {signal.getitimer(timer)[0]:.3g} s)")
            signal.setitimer(timer, 0)
    if now.watchdog is not None and before.watchdog is None:
        changed.append(f"faulthandler's watchdog (none, set to {now.watchdog:.3g} s)")
        faulthandler.cancel_dump_traceback_later()
    for (owner, hook_name), hook, hook_before in zip(EXCEPTION_HOOKS, now.exception_hooks, before.exception_hooks,
                                                     strict=True):
        if hook is not hook_before:
            changed.append(f"{owner.__name__}.{hook_name} ({handler_name(hook_before)}, set to {handler_name(hook)})")
            setattr(owner, hook_name, hook_before)
    if now.cwd != before.cwd and before.cwd is not None:
        changed.append(f"the working directory ({printable(before.cwd)}, set to "
                       f"{printable(now.cwd or 'a deleted folder')})")
        try:
            os.chdir(before.cwd)
        except OSError as exc:  # removed by the call: genzoo's own check refuses each later write by its path
            changed[-1] += f", which cannot be put back: {exc.strerror or exc}"
    if now.handlers is not None and before.handlers is not None:
        for signum, handler, was in zip(KEPT_SIGNALS, now.handlers, before.handlers, strict=True):
            if handler != was:
                name = signal.Signals(signum).name
                changed.append(f"the {name} handler ({handler_name(was)}, set to {handler_name(handler)})")
                signal.signal(signum, was if was is not None else signal.SIG_DFL)
    for name, stream, was in zip(STREAMS, now.streams, before.streams, strict=True):
        changed += _put_back_stream(name, stream, was)
    for (fd, stream_name), target, target_before in zip(_DESCRIPTORS.items(), now.descriptors, before.descriptors,
                                                        strict=True):
        # os.dup2 onto 1 and 2, as a tracking client's console capture does, silenced every later line of genzoo:
        # a failed run ended with nothing on the terminal (twenty-sixth hostile pass, plugins F8)
        if target != target_before and target_before is not None:
            changed.append(f"file descriptor {fd}, {stream_name} (redirected)")
            copy = _DESCRIPTOR_COPIES.get(fd)
            if copy is not None and _opened_on(copy) == target_before:
                os.dup2(copy, fd)
            else:
                changed[-1] = changed[-1][:-1] + ", which cannot be put back: genzoo kept no copy of it)"
    return changed


def _stream(stream: Any) -> Stream:
    """:class:`Stream` of ``stream``; the descriptor and state are read from :mod:`io` streams alone (a plain
    object a plugin set in place, with a ``fileno`` of its own, is compared by identity only)."""
    inner = _unwrapped(stream)
    if not isinstance(inner, io.IOBase):
        return Stream(stream, False, None)
    try:
        fd: int | None = inner.fileno()
    except (OSError, ValueError):  # a StringIO (io.UnsupportedOperation), or closed already
        fd = None
    coding = (inner.encoding, inner.errors) if isinstance(inner, io.TextIOWrapper) else (None, None)
    return Stream(stream, inner.closed, fd, coding)


def _put_back_stream(name: str, now: Stream, before: Stream) -> list[str]:
    """``sys.NAME`` set back to the stream it was, reopened on its descriptor if the call closed it (the descriptor
    is left open by Python's own ``close``); each change named as :func:`put_back` names one."""
    changed: list[str] = []
    if now.stream is not before.stream:
        changed.append(f"sys.{name} ({_stream_name(before.stream)}, set to {_stream_name(now.stream)})")
        setattr(sys, name, before.stream)
    inner = _unwrapped(before.stream)
    if now.stream is before.stream and not now.closed and now.coding != before.coding and \
            isinstance(inner, io.TextIOWrapper):
        # sys.stdout.reconfigure(encoding="ascii") at import: genzoo list was a UnicodeEncodeError traceback
        # (twenty-fifth hostile pass, plugins F6)
        changed.append(f"sys.{name}'s encoding ({'/'.join(map(str, before.coding))}, set to "
                       f"{'/'.join(map(str, now.coding))})")
        inner.reconfigure(encoding=before.coding[0], errors=before.coding[1])
    if before.closed or not _closed(before.stream):
        return changed
    changed.append(f"sys.{name} (open, set to closed)")
    if before.fd is None:
        changed[-1] += ", which cannot be put back: it has no file descriptor to reopen"
        return changed
    try:
        _reopen(name, before.stream, before.fd)
    except OSError as exc:  # the descriptor itself closed (``os.close(1)``): genzoo's writes fail in its own line
        changed[-1] += f", which cannot be put back: {exc.strerror or exc}"
    return changed


def _unwrapped(stream: Any) -> Any:
    """The stream a :class:`WrappedStream` writes through; any other, as it is."""
    return stream.stream if isinstance(stream, WrappedStream) else stream


def _closed(stream: Any) -> bool:
    """Whether ``stream`` (genzoo's own, or Python's: :func:`_stream` read its descriptor) is closed now."""
    inner = _unwrapped(stream)
    return isinstance(inner, io.IOBase) and inner.closed


def _reopen(name: str, stream: Any, fd: int) -> None:
    """Put ``sys.NAME``, ``stream``, closed, back in use: a new stream on its descriptor ``fd``, writing as it
    wrote, in its place (a :class:`WrappedStream` keeps its place and wraps the new one)."""
    inner = _unwrapped(stream)
    fresh = io.TextIOWrapper(open(fd, "wb", closefd=False), encoding=getattr(inner, "encoding", None),
                             errors=getattr(inner, "errors", None),
                             line_buffering=bool(getattr(inner, "line_buffering", False)),
                             write_through=bool(getattr(inner, "write_through", False)))
    if isinstance(stream, WrappedStream):
        stream.stream = fresh
    else:
        setattr(sys, name, fresh)


def _stream_name(stream: Any) -> str:
    """A stream as a message names it: its type, and the file it writes to where it says (``TextIOWrapper of
    '/dev/null'``); genzoo's own wrapper by the stream it wraps."""
    stream = _unwrapped(stream)
    file = getattr(stream, "name", None) if isinstance(stream, io.IOBase) else None
    return type(stream).__name__ + (f" of {file!r}" if isinstance(file, (str, int)) else "")


def _owner(name: str) -> Any:
    """``torch.backends`` (``""``) or one of its backend's settings objects (``"mkldnn.matmul"``)."""
    owner: Any = torch.backends
    for part in filter(None, name.split(".")):
        owner = getattr(owner, part)
    return owner


def _matmul() -> str | None:
    """``torch.get_float32_matmul_precision()``; None where torch refuses to say (legacy and new settings mixed,
    as within training's :func:`genzoo.precision.fp32_precision`)."""
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        return None


def _put_back_precision(before: Settings) -> None:
    """The legacy setting first (it sets some of the new ones), then each new one as it was."""
    if before.matmul is not None:
        torch.set_float32_matmul_precision(before.matmul)
    for name, value in zip(_PRECISION_OWNERS, before.precision, strict=True):
        _owner(name).fp32_precision = value


def _precision_change(before: Settings, now: Settings) -> str:
    """How a message names a changed fp32 precision: by torch's matmul precision where both can be read, else by
    each backend's setting that changed (``cuda.matmul none, set to tf32``)."""
    changes = [f"{name or 'generic'} {was}, set to {value}" for name, was, value
               in zip(_PRECISION_OWNERS, before.precision, now.precision, strict=True) if was != value]
    if (None not in (before.matmul, now.matmul) and before.matmul != now.matmul) or not changes:
        return f"{TORCH}float32 matmul precision ({before.matmul or 'unreadable'}, set to {now.matmul or 'unreadable'})"
    return f"{TORCH}fp32 precision ({'; '.join(changes)})"


def working_directory() -> str | None:
    """``os.getcwd()``, or None where the folder was deleted (there is no path to it)."""
    try:
        return os.getcwd()
    except OSError:
        return None


def handler_name(handler: Any) -> str:
    """A signal handler as a message names it: ``SIG_DFL``, ``SIG_IGN``, or the function's qualified name."""
    if handler is None:
        return "a handler not set from Python"
    if isinstance(handler, signal.Handlers):
        return handler.name
    return str(getattr(handler, "__qualname__", type(handler).__name__))


def _determinism(setting: tuple[bool, bool]) -> str:
    return ("on, warning only" if setting[1] else "on") if setting[0] else "off"


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _enabled(on: bool) -> str:
    return "enabled" if on else "disabled"
