"""Value checks every reader of user files shares: counts and numbers (never ``bool``), how a bad value is quoted."""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from genzoo.errors import GenzooError


def shown(value: Any) -> str:
    """``repr(value)`` on one line, cut short: a message quotes a bad value, not a whole file of it. A repr of
    several lines (a sparse tensor's, a matrix's) is joined: no str's repr holds a line break of its own."""
    text = re.sub(r"\n\s*", " ", repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def listed(names: list[str], between: str = ", ") -> str:
    """The first three of ``names``, ``between`` each, and how many more: a line naming what it found stays
    readable."""
    return f"{between.join(names[:3])}{f' and {len(names) - 3} more' * (len(names) > 3)}"


def printable(text: str) -> str:
    """``text`` as it is when printable, else escaped (``'a\\nb'``): a folder name must not break a line or
    send escape sequences to the terminal, nor reach a picture's title as an undecodable byte (a surrogate,
    which matplotlib cannot draw)."""
    return text if text.isprintable() else ascii(text)


def same_value(before: Any, after: Any) -> bool:
    """``before == after``, where that has one truth value; a tensor anywhere in either is the same only as itself;
    a NaN, anywhere in either, the same as a NaN.

    A checkpoint's identity fields and a model's config hold plain values, but a tensor can stand anywhere
    (a weights-only checkpoint allows one, a model may put one in its config): its ``==`` gives a tensor,
    whose truth is an error, or, for one element, true for a list of its value. A float field may hold NaN (a
    plugin's "not set" default, ``--clip-norm nan``): ``config.json``, the checkpoint and ``eval.json`` each read
    back a NaN of their own, which ``==`` calls unequal, so every reader refused the run it had just trained
    (``dropout nan vs nan``; eighteenth hostile pass, plugins F5). A config keeps its NaN as
    :func:`genzoo.model.config_changes` does: unchanged.
    """
    def tensor_free(value: Any) -> bool:
        if isinstance(value, dict):
            return all(tensor_free(k) and tensor_free(v) for k, v in value.items())
        if isinstance(value, (list, tuple, set, frozenset)):
            return all(map(tensor_free, value))
        return not isinstance(value, torch.Tensor)

    def equal(a: Any, b: Any) -> bool:  # ==, with NaN equal to NaN inside the plain containers JSON reads back
        if a is b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
            return True
        if type(a) is type(b) and type(a) in (list, tuple):
            return len(a) == len(b) and all(map(equal, a, b))
        if type(a) is type(b) is dict:
            return bool(a.keys() == b.keys()) and all(equal(a[key], b[key]) for key in a)
        return bool(a == b)

    if not (tensor_free(before) and tensor_free(after)):
        return before is after
    try:
        return equal(before, after)
    except (RuntimeError, TypeError, ValueError):  # an object of a plugin's own, whose == fails
        return False


def differences(before: dict[Any, Any], after: dict[Any, Any], between: str = "vs",
                ignore: tuple[Any, ...] = ()) -> list[str]:
    """Each key (but those in ``ignore``) whose value is not :func:`same_value` in ``before`` and ``after``, as
    ``name BEFORE vs AFTER`` (``between`` in the middle, ``(none)`` for a key one lacks), in the order of the keys'
    reprs; a name is quoted unless it is a plain identifier."""
    def value(where: dict[Any, Any], key: Any) -> str:
        return shown(where[key]) if key in where else "(none)"

    def name(key: Any) -> str:
        return key if isinstance(key, str) and key.isidentifier() else shown(key)

    return [f"{name(key)} {value(before, key)} {between} {value(after, key)}"
            for key in sorted(set(before) | set(after), key=repr) if key not in ignore
            and (key not in before or key not in after or not same_value(before[key], after[key]))]


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


def is_lower_hex(value: Any, digits: int) -> bool:
    """``value`` is ``digits`` lower-case hexadecimal digits, as genzoo records run ids and sha256s."""
    return isinstance(value, str) and len(value) == digits and all(c in "0123456789abcdef" for c in value)


def data_problem(value: torch.Tensor, layout: torch.layout = torch.strided) -> str | None:
    """What keeps ``value``, a tensor read from a file, from holding values genzoo can compute with, or None: it
    must be a tensor of ``layout`` (plain, strided, unless the reader expects a model's own sparse buffer), not
    nested, with its data: on any device but ``meta`` (files are loaded on the CPU, but the trainer puts a live
    optimiser's state, on the run's GPU, through the same checks).

    A weights-only load reads more than plain tensors: a ``meta`` tensor (a shape without data), a sparse,
    compressed or nested one, of any dtype and shape. A comparison, ``bool`` or ``.item()`` on one is a page
    of traceback from torch's dispatcher, so every reader of tensors from files (checkpoints, weights files)
    asks this before its own checks of dtype, shape and values (nineteenth hostile pass, F1-F3).
    """
    if value.is_nested:
        return "a nested tensor, not a plain one"
    if value.layout != layout:
        return f"a {value.layout} tensor, not a {'plain (strided)' if layout == torch.strided else layout} one"
    if value.device.type == "meta":
        return "a meta tensor (shape without data)"
    return None


def all_finite(values: torch.Tensor) -> bool:
    """Whether every value of ``values`` is finite (an integer, bool or bits tensor's always are): the one check
    of training's weights and optimiser state and of the loader's, so that both take the same tensors.

    A ``meta`` tensor holds no values, so none is known finite: False, never torch's traceback (a reader of
    files names it first, through :func:`data_problem`); a nested tensor's parts are checked.

    A 1-byte float (the float8 kinds) is checked in float32, which holds each of its values, NaN too, exactly:
    torch's ``isfinite`` takes neither float8_e4m3fn nor the ``fnuz`` kinds, and says True for float8_e8m0fnu's
    NaN (0xFF). Packed float4 (float4_e2m1fn_x2) has no NaN or infinity encoding, and torch cannot widen it: it is
    finite by construction. A complex kind ``isfinite`` does not take is widened to complex64 (``.float()``
    would drop the imaginary part); a sparse tensor's stored values are checked (the rest are zeros).
    """
    if values.device.type == "meta":
        return False
    if values.is_nested:
        parts = [part.reshape(-1) for part in values.unbind()]
        values = torch.cat(parts) if parts else torch.empty(0, dtype=values.dtype)
    if values.layout == torch.sparse_coo:
        values = values.coalesce().values()
    elif values.layout != torch.strided:  # compressed (CSR, CSC, BSR, BSC)
        values = values.values()
    if not (values.is_floating_point() or values.is_complex()) or values.dtype is _FLOAT4:
        return True
    if values.element_size() == 1:
        values = values.float()
    try:
        return bool(torch.isfinite(values).all())
    except NotImplementedError:
        return bool(torch.isfinite(values.to(torch.complex64 if values.is_complex() else torch.float32)).all())


#: Packed float4 (two values a byte): no NaN or infinity to find; torch before 2.8 has no such dtype.
_FLOAT4 = getattr(torch, "float4_e2m1fn_x2", None)


def kept_copy(values: torch.Tensor) -> torch.Tensor:
    """``values``, plugin code's result, as float32 on the CPU in memory of their own: always one copy, never two.

    ``.float().cpu()`` of a float32 CPU tensor is that tensor itself, so a ``decode`` (or ``encode``, or a sampler)
    that hands back one output buffer it refills at each call had every batch kept in a list be that buffer: the
    reconstructions genzoo eval measured were the last batch repeated (twenty-first hostile pass, plugins F8).
    """
    return values.detach().to("cpu", torch.float32, copy=True)


def require_count(name: str, value: Any, minimum: int = 1) -> None:
    """Refuse anything but an ``int`` of at least ``minimum`` (``True`` included), in one line."""
    if not is_count(value, minimum):
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer of at least {minimum}")
        raise GenzooError(f"{name} must be {kind}, got {shown(value)}")


class NotPixels(GenzooError):
    """Samples that break the Model contract (pixels in [0, 1]): they get no FID and no picture.

    ``through``: the sampler (as :func:`genzoo.sampler.origin` names it) that drew them, when it
    is not the model's own: the line blames it, and names the model it drew from.
    """

    def __init__(self, who: str, found: str, method: str = "sample", what: str = "samples",
                 through: str | None = None) -> None:
        if through is None:
            super().__init__(f"model {who!r} produced {what} that are not pixels in [0, 1] ({found}; the Model "
                             f"contract: {method} returns pixels in [0, 1])")
        else:
            super().__init__(f"{through} drew {what} from model {who!r} that are not pixels in [0, 1] ({found}; "
                             f"the Sampler contract: {method} returns pixels in [0, 1])")
        self.found = found
        self.through = through


class NotCodes(GenzooError):
    """Codes a model's ``encode`` gave that are not ``(images, latent)`` (``Model.checked_codes``): what needs them
    (reconstructions, interpolations, a panel of ``latent.png``) is n/a with this reason, the rest still counts."""


class NotShaped(NotPixels):
    """Images of another shape than the model's samples (flat rows, no channel): no FID (the extractors take
    ``(N, C, H, W)``) and no picture; a :class:`NotPixels`, so each step that gives up on those gives up on these."""

    def __init__(self, who: str, found: str, method: str = "sample", what: str = "samples") -> None:
        GenzooError.__init__(self, f"model {who!r} produced {what} of {found} (the Model contract: {method} "
                             "returns (batch, *sample_shape))")
        self.found = found
        self.through = None


def check_pixels(images: torch.Tensor, who: str, through: str | None = None) -> torch.Tensor:
    """``images`` if every value is a pixel in [0, 1]; else :class:`NotPixels` naming ``who`` (and ``through``).

    Turning them into uint8 would clamp them without a word: NaN samples become black
    images and get the FID of black images.
    """
    values = images.detach()
    if not bool(torch.isfinite(values).all()):
        found = "NaN or infinite values"
    elif values.numel() and (values.amin().item() < 0 or values.amax().item() > 1):
        found = f"values from {values.amin().item():.3g} to {values.amax().item():.3g}"
    else:
        return images
    raise NotPixels(who, found, through=through)
