"""Whether a model's weights fit in this machine's memory, asked before the model is built.

Building a model whose weights need more memory than the machine has filled memory for minutes (torch's
initialisation writes every weight) until the kernel's out-of-memory killer ended the command, exit 137 and no word
(twenty-third hostile pass, files F2: ``genzoo train vae --latent 10000000``, 48 GB of weights on a 24 GB
machine). The weights are counted on torch's meta device, which allocates and initialises nothing; the registry
refuses a model whose weights need more than half the free memory (genzoo's guard of plugin calls copies them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from genzoo.errors import PLUGIN_FAULTS
from genzoo.seeding import forked

MEMINFO = Path("/proc/meminfo")


def available_bytes(meminfo: Path = MEMINFO) -> int | None:
    """The memory this machine can still give a process (``MemAvailable`` and ``SwapFree`` of Linux's
    ``/proc/meminfo``), or None where that cannot be read."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    try:
        kib = [int(fields[name].split()[0]) for name in ("MemAvailable", "SwapFree")]
    except (KeyError, ValueError, IndexError):
        return None
    return sum(kib) * 1024


def weights_bytes(build: Callable[[], nn.Module]) -> int | None:
    """The bytes of the parameters and buffers of the module ``build`` makes, built on the meta device; None when it
    cannot be built there (code that reads a value of a tensor it made). The global random streams are put back, so
    counting draws nothing the real build would."""
    try:
        with forked([]), torch.device("meta"):
            module = build()
    except KeyboardInterrupt:
        raise
    except PLUGIN_FAULTS:
        return None
    if not isinstance(module, nn.Module):
        return None
    tensors = {id(t): t for t in [*module.parameters(), *module.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def shown_bytes(count: int) -> str:
    """``count`` bytes as a person reads them: ``48.1 GB``, ``812.0 MB``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count / 1e3:.1f} kB"
