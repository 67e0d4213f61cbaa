"""The cache of sampler fits: a fit is made once per model, data and sampler, then read back.

A sampler that fits to the training split (the ``gmm`` mixture: about two minutes for
60,000 codes on one CPU thread) used to be fitted again by every ``genzoo sample``,
``eval`` and ``compare`` of a run. A sampler that sets ``fit_version`` gives its fit as
tensors (``Sampler.fitted_state``); they are kept as safetensors (no pickle, no code)
in ``$GENZOO_CACHE/samplers`` (the FID statistics' cache root), under the sha256 of all
the fit depends on: the model's class, config and weights (names, dtypes, shapes,
bytes), the training split's pixels, the sampler's name, class, config and
``fit_version``. The file holds that key and the sha256 of its tensors; both are
checked on every read, and the sampler checks that the tensors are a fit of its kind
(``Sampler.load_fitted_state``). A new fit is kept only when a fresh sampler given it draws what
the fitted one draws under one seed: a ``fitted_state`` that leaves out part of the fit would
otherwise make every later command draw other samples than the first.

The cache only saves time: a fit is deterministic, so fitting again gives the same
samples. Hence a file that fails a check is warned about and ignored (the sampler is
fitted again and the file left as it is, for its owner to delete), and a cache that
cannot be written is warned about once and the command goes on with its fit: neither
fails a command, least of all the end of a training run (docs/reliability.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from genzoo.checkpoint import read_genzoo_safetensors, safetensors_name_problem, tensors_sha256
from genzoo.checks import shown
from genzoo.data import CACHE_ENV, Split, cache_root
from genzoo.errors import PLUGIN_FAULTS, GenzooError, describe, warn
from genzoo.files import atomic_write, private_folder
from genzoo.sampler import GuardedSampler, Sampler, plugin_call
from genzoo.seeding import seed_streams, seeded

#: The cache's own format: part of every key, and checked in every file.
FORMAT = "genzoo-sampler-fit-1"
#: The largest fit genzoo reads back (a 10-component mixture of the AE's 40-d codes is 66 kB).
MAX_FIT_BYTES = 2**30
#: How many samples, under which seed, a fresh sampler given a new fit must draw as the fitted one did.
ROUND_TRIP_SAMPLES = 16
ROUND_TRIP_SEED = 0
#: Cache folders already warned about in this process: a compare would otherwise warn per model.
_warned: set[Path] = set()
#: Samplers whose fit was found not to round-trip in this process: each is warned about once.
_warned_samplers: set[str] = set()


def fit_cache() -> Path:
    """Where fits live: ``cache_root()/samplers`` (``$GENZOO_CACHE``, as the FID statistics' ``fid``)."""
    return cache_root() / "samplers"


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Cloned to the CPU: safetensors refuses tensors that share memory, and state dicts may hold views.
    return {name: value.detach().cpu().contiguous().clone() for name, value in state.items()}


def _digested(name: str) -> str:
    """``name`` as :func:`state_sha256` hands it to safetensors: itself, or, for one safetensors cannot keep (a model's
    buffer ``__metadata__``, which it wrote beside its header's and the digest then skipped), a NUL, then the name
    with anything UTF-8 cannot encode escaped."""
    if safetensors_name_problem(name) is None:
        return name
    return "\0" + str(name).encode("utf-8", "backslashreplace").decode("utf-8")


def state_sha256(state: dict[str, Any]) -> str:
    """The sha256 of named tensors (each one's name, dtype, shape and bytes), as a weights file vouches for them,
    and of a state_dict's other values (a model's ``get_extra_state``) as ``torch.save`` writes them."""
    from safetensors.torch import save

    data = save(_tensors({_digested(name): value for name, value in state.items() if isinstance(value, torch.Tensor)}))
    size = int.from_bytes(data[:8], "little")
    digest = tensors_sha256(json.loads(data[8:8 + size]), data[8 + size:])
    others = {name: value for name, value in state.items() if not isinstance(value, torch.Tensor)}
    if not others:
        return digest
    written = io.BytesIO()
    torch.save(others, written)
    return hashlib.sha256(digest.encode("utf-8") + written.getvalue()).hexdigest()


def _class_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def fit_key(name: str, sampler: Sampler, train_sha256: str) -> str:
    """The sha256 of everything the fit of ``sampler`` (registered as ``name``) depends on; it names the file."""
    model = sampler.model
    plugin_sampler = sampler.inner if isinstance(sampler, GuardedSampler) else sampler

    def config() -> str:
        return json.dumps(dataclasses.asdict(sampler.config), sort_keys=True, default=repr)

    parts = [FORMAT, name, _class_name(plugin_sampler), sampler.fit_version,
             # The plugin's config, as plugin code: a field that cannot be copied or shown is the sampler's fault.
             plugin_call(sampler.origin, "giving its config for the cache of fits", config)
             if isinstance(sampler, GuardedSampler) else config(),
             _class_name(model), json.dumps(dataclasses.asdict(model.config), sort_keys=True, default=repr),
             train_sha256, state_sha256(model.state_dict())]
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()


def fit_path(key: str) -> Path:
    """The file of the fit named ``key``."""
    return fit_cache() / f"{key}.safetensors"


def fit_cached(sampler: Sampler, name: str, train: Split, train_sha256: str, fresh: Callable[[], Sampler]) -> None:
    """Fit ``sampler`` to ``train`` (pixels sha256 ``train_sha256``), or take the fit cached for them.

    ``fresh`` builds another, unfitted sampler like it: a new fit is cached only when one given it
    draws what the fitted one draws (:func:`round_trip_problem`).
    """
    key = fit_key(name, sampler, train_sha256)
    path = fit_path(key)
    try:
        problem = private_folder(path.parent)[1]
    except OSError:  # no folder: storing the fit says the cache cannot keep fits
        problem = None
    if problem is not None:  # another user could swap the fits kept there: none is read or written
        if path.parent not in _warned:
            _warned.add(path.parent)
            warn(f"the sampler cache {path.parent} {problem}, so another user could change the fits kept there; "
                 f"fitting without it; set {CACHE_ENV} to a folder only you can write "
                 f"(now {os.environ.get(CACHE_ENV) or 'unset'})")
        sampler.fit(train)
        return
    if os.path.lexists(path):
        try:
            sampler.load_fitted_state(read_fit(path, key))
            return
        except KeyboardInterrupt:
            raise
        except PLUGIN_FAULTS as exc:
            reason = str(exc) if isinstance(exc, GenzooError) else describe(exc)
            warn(f"sampler cache file {path} is not a valid fit of sampler {name!r} for this model and data "
                 f"({reason}); fitting again without replacing it (delete it to have the fit cached)")
            sampler.fit(train)
            return
    sampler.fit(train)
    store_fit(sampler, name, path, key, fresh)


def round_trip_problem(sampler: Sampler, data: bytes, fresh: Callable[[], Sampler]) -> str | None:
    """Why a ``fresh`` sampler given the fit file ``data`` (as a later command reads it) draws other samples
    than the fitted ``sampler`` under one seed, or None when it draws the same; the model is asked in
    eval mode, as it draws, and the caller's random stream is left as it was."""
    from safetensors.torch import load

    model = sampler.model
    training = model.training
    model.eval()
    try:
        # Every global stream a sampler may draw from (numpy's too: a mixture fitted by a library that draws
        # there) forked and seeded alike for both draws.
        with seeded(model.device, ROUND_TRIP_SEED):
            try:
                with torch.no_grad():
                    fitted = sampler.sample(ROUND_TRIP_SAMPLES)
            except GenzooError:  # nothing to compare: the command's own draw says what is wrong, in its words
                return None
            loaded = fresh()
            seed_streams(ROUND_TRIP_SEED)
            try:
                loaded.load_fitted_state(load(data))
                with torch.no_grad():
                    drawn = loaded.sample(ROUND_TRIP_SAMPLES)
            except GenzooError as exc:
                return f"a sampler given it fails: {exc}"
    finally:
        model.train(training)
    if fitted.dtype == drawn.dtype and torch.allclose(fitted, drawn, rtol=0, atol=0, equal_nan=True):
        return None
    return (f"under one seed, a sampler given it draws samples up to {float((fitted - drawn).abs().max()):.3g} "
            "per pixel apart from the fit's")


def read_fit(path: Path, key: str) -> dict[str, torch.Tensor]:
    """The tensors of the fit file ``path``, after checking its format, its ``key`` and their digest."""

    def check(metadata: dict[str, Any]) -> None:
        if metadata.get("key") != key:
            raise GenzooError("it was written for another model, data or sampler")

    return read_genzoo_safetensors(path, MAX_FIT_BYTES, FORMAT, check)[1]


def fit_bytes(state: dict[str, torch.Tensor], name: str, key: str) -> bytes:
    """A fit file's bytes: the tensors of ``state`` as safetensors, with the format, ``key`` and their sha256."""
    from safetensors.torch import save

    for tensor in state:
        problem = safetensors_name_problem(tensor)
        if problem is not None:
            raise GenzooError(f"safetensors cannot keep its tensor {shown(tensor)}: {problem}")
    tensors = _tensors(state)
    metadata: dict[str, str] = {"format": FORMAT, "key": key, "sampler": name,
                                "tensors_sha256": state_sha256(tensors)}
    return save(tensors, metadata=metadata)


def store_fit(sampler: Sampler, name: str, path: Path, key: str, fresh: Callable[[], Sampler]) -> None:
    """Keep the fit of ``sampler`` at ``path``; a cache that cannot take it is a warning, once per folder.

    A fit that a ``fresh`` sampler, given it as a later command would read it, does not draw alike
    (a tensor left out of ``fitted_state``) is not kept: each command then fits again, consistently.
    """
    try:
        data = fit_bytes(sampler.fitted_state(), name, key)
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS as exc:
        reason = str(exc) if isinstance(exc, GenzooError) else describe(exc)
        warn(f"the fit of sampler {name!r} cannot be cached ({reason}); it is fitted again by each command")
        return
    problem = round_trip_problem(sampler, data, fresh)
    if problem is not None:
        who = sampler.origin if isinstance(sampler, GuardedSampler) else f"sampler {name!r}"
        if who in _warned_samplers:  # a compare would otherwise warn per model
            return
        _warned_samplers.add(who)
        warn(f"{who}: its fitted_state does not capture its fit ({problem}), so the fit is not cached and "
             "each command fits again (the Sampler contract: load_fitted_state(fitted_state()) draws as the fit)")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(data))
    except (OSError, GenzooError) as exc:
        if path.parent not in _warned:
            _warned.add(path.parent)
            reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
            warn(f"the sampler cache {path.parent} cannot keep fits ({reason}); continuing without it, so each "
                 f"command fits again; set {CACHE_ENV} to a folder genzoo can write "
                 f"(now {os.environ.get(CACHE_ENV) or 'unset'})")
