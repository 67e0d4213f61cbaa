"""How float32 matrix products and convolutions are computed while a run trains: exactly, or faster.

CPUs with bf16 units (AVX512-BF16: AMD EPYC since Zen 4, Xeons since Cooper Lake; AMX: Xeons
since Sapphire Rapids) multiply bf16 matrices faster than fp32 (on the 2-core EPYC genzoo is
benchmarked on, a VAE layer at 226 against 110 GFLOP/s); oneDNN can round fp32 operands to
bf16 and accumulate in fp32, as TF32 does on NVIDIA GPUs. The weights, gradients and
optimiser states stay fp32, so nothing is cast around the step: only the products lose
input bits. Training alone runs so; evaluation (each epoch's test pass, ``genzoo eval``)
always multiplies exactly, so the numbers a run reports are never rounded this way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from genzoo.errors import warn

#: ``auto``: bf16 where the CPU multiplies bf16 natively, torch's own defaults on a GPU; ``ieee``: exact fp32
#: everywhere; ``bf16``: oneDNN's bf16 products on the CPU; ``tf32``: TF32 products on an NVIDIA GPU.
PRECISIONS = ("auto", "ieee", "bf16", "tf32")


def cpu_has_bf16() -> bool:
    """Whether oneDNN multiplies bf16 natively here (AVX512-BF16 or AMX); emulated bf16 would be slower."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN, or without the probe
        return False


def resolved(precision: str, device: torch.device) -> tuple[str, str | None]:
    """The precision a run asking for ``precision`` trains with on ``device``, and why it differs, if it does.

    ``None`` stands for torch's own defaults (``auto`` on a GPU: cuDNN's convolutions in TF32,
    matrix products exact), which genzoo leaves as they are.
    """
    cpu = device.type == "cpu"
    if precision == "auto":
        if cpu:
            return ("bf16" if cpu_has_bf16() else "ieee"), None
        return "default", None
    if precision == "bf16" and not cpu:
        return "default", f"--fp32-precision bf16 is for CPUs; on {device.type} training keeps torch's defaults"
    if precision == "bf16" and not cpu_has_bf16():
        return "ieee", "--fp32-precision bf16: this CPU has no native bf16 matrix units; training in exact fp32"
    if precision == "tf32" and device.type != "cuda":
        return "ieee", f"--fp32-precision tf32 is for NVIDIA GPUs; on {device.type} training in exact fp32"
    return precision, None


#: The warnings :func:`warn_resolved` gave inside :func:`warned_once` (None outside it).
_said: set[str] | None = None


@contextmanager
def warned_once() -> Iterator[None]:
    """Inside, :func:`warn_resolved` gives each warning once: a compare trains each of its models on one device,
    and the same line came once per model."""
    global _said
    before, _said = _said, set()
    try:
        yield
    finally:
        _said = before


def warn_resolved(why: str) -> None:
    """Say why training keeps another precision than the one asked for (:func:`resolved`), once inside
    :func:`warned_once`."""
    if _said is not None:
        if why in _said:
            return
        _said.add(why)
    warn(why)


def _owners(device: torch.device) -> list[Any]:
    """The torch settings objects whose ``fp32_precision`` chooses how fp32 products are computed on ``device``.

    Each backend's ``matmul`` and ``conv`` are attributes torch adds when it loads (not in its type stubs).
    """
    if device.type == "cuda":
        return [torch.backends.cuda.matmul, torch.backends.cudnn.conv]  # type: ignore[attr-defined]
    return [torch.backends.mkldnn.matmul, torch.backends.mkldnn.conv]  # type: ignore[attr-defined]


@contextmanager
def fp32_precision(precision: str, device: torch.device) -> Iterator[None]:
    """Compute fp32 products on ``device`` in ``precision`` (a resolved one) inside, as before after."""
    if precision == "default":
        yield
        return
    owners = _owners(device)
    before = [owner.fp32_precision for owner in owners]
    try:
        for owner in owners:
            owner.fp32_precision = precision
        yield
    finally:
        for owner, value in zip(owners, before):
            owner.fp32_precision = value
