"""Pieces shared by the benchmark suite and ``benchmarks/epoch_time.py``.

Three ways to train the same VAE for the same steps live here, so the suite and the
per-epoch script compare exactly the same code:

* :func:`reference_article_epoch`: the source article's loop (torchvision MNIST,
  ``transforms.ToTensor()``, ``DataLoader(shuffle=True)``, ``loss.item()`` every step),
  with its bugs fixed. It is the *reference* the product is compared with, not genzoo.
* :func:`floor_epoch`: the compute floor: the same forward, loss, backward and Adam
  step on batches sliced from one tensor already in memory, with no logging at all.
* :func:`genzoo_steps_epoch`: genzoo's ``TensorSplit.batches`` and one optimisation step
  (:func:`genzoo.trainer.training_step`) each, without the rest of the trainer, to tell
  the trainer's cost from the model's.

genzoo's trainer itself runs through :class:`genzoo.trainer.Trainer`, as ``genzoo train``
does. Every function builds nothing it times except what the timed loop really does.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import genzoo
from genzoo.building import load_split
from genzoo.data import Split, TensorSplit, resolve_data_root
from genzoo.model import Model
from genzoo.plugin_registry import registry
from genzoo.sampler import sampler_problem
from genzoo.trainer import training_step

#: The article's (and genzoo's default) VAE: latent 40, batch 100, Adam 1e-3.
VAE_OPTIONS: dict[str, Any] = {"latent": 40}
BATCH = 100
#: Environment variables the suite reads (the command-line options win).
QUICK_ENV = "GENZOO_BENCH_QUICK"
THREADS_ENV = "GENZOO_BENCH_THREADS"
MODELS_ENV = "GENZOO_BENCH_MODELS"
#: Built-ins left out unless ``--bench-models`` (or ``$GENZOO_BENCH_MODELS``) names them or says ``all``:
#: the convolutional models at their papers' widths take hours per epoch on a CPU; name them on a GPU.
#: Every other registered model, a plugin's too, is benchmarked like the article's MLPs.
HEAVY_MODELS = ("conv-ae", "conv-vae", "dcgan")


def machine_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pin_threads(threads: int | None = None) -> int:
    """Pin torch's intra-op threads to the machine's cores (or ``$GENZOO_BENCH_THREADS``).

    torch's own default can differ between builds and machines; pinning it makes
    results comparable and is recorded with them.
    """
    if threads is None:
        threads = int(os.environ.get(THREADS_ENV) or machine_cores())
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """``cpu (AMD EPYC)`` or ``cuda (NVIDIA H100 ...)``: the device as a reader needs it."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_name()})"


#: ``python -m genzoo``, without the current folder on the module path: ``-m`` puts that folder first, so a
#: ``rich.py`` or ``torch.py`` in the folder a benchmark is run from was imported as code in every ``genzoo``
#: child (fifteenth hostile pass, F12). genzoo's own ``--nproc`` ranks start so (``genzoo.distributed._RANK_CODE``);
#: ``python -P`` would do it, but only from Python 3.11, and genzoo runs on 3.10.
GENZOO_CODE = "import sys\nif sys.path[:1] == ['']:\n    del sys.path[0]\nfrom genzoo.cli import main\nmain()\n"


def genzoo_command(*args: str) -> list[str]:
    """The command line of ``genzoo ARGS`` run by this Python, importing nothing from the current folder."""
    return [sys.executable, "-c", GENZOO_CODE, *args]


def load_average() -> float | None:
    """The 1-minute load average: other processes on these cores distort every timing.

    With torch's threads pinned to all cores, one busy process elsewhere can make a
    step many times slower (a thread of each parallel region waits for a core), so
    each result records how busy the machine was.
    """
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """What every result must carry to be compared across machines."""
    return {
        "device": device_name(device),
        "device_type": device.type,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cores": machine_cores(),
        "cpu": cpu_name(),
        "genzoo_version": genzoo.__version__,
    }


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer stops when the work is really done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_mnist(device: torch.device) -> tuple[Split, Split]:
    """MNIST train and test splits through genzoo's dataset plugin, on ``device``."""
    return load_split("mnist", "train", None, None, device), load_split("mnist", "test", None, None, device)


def bench_models(chosen: str | None = None) -> list[str]:
    """The registered models to benchmark: ``chosen`` (comma-separated, ``all``), else ``$GENZOO_BENCH_MODELS``,
    else all but :data:`HEAVY_MODELS`; a name that is not registered is an error, not a silent skip."""
    names = registry().names("model")
    chosen = chosen or os.environ.get(MODELS_ENV)
    if not chosen:
        return [name for name in names if name not in HEAVY_MODELS]
    if chosen == "all":
        return list(names)
    wanted = [name.strip() for name in chosen.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise ValueError(f"--bench-models: {', '.join(unknown)} not registered (registered: {', '.join(names)})")
    return wanted


def models_with(capability: str) -> list[str]:
    """The benchmarked models whose class sets ``capability`` (``can_reconstruct``, ``has_elbo``, ...)."""
    reg = registry()
    return [name for name in bench_models() if getattr(reg.model(name), capability)]


def models_that_sample() -> list[str]:
    """The benchmarked models their default sampler can draw from (the AE through ``gmm``), as eval samples."""
    reg = registry()
    return [name for name in bench_models() if sampler_problem(reg.model(name)) is None]


def build_model(name: str, device: torch.device, seed: int = 0, **options: Any) -> Model:
    """A freshly initialised model, seeded so every variant starts from the same weights."""
    torch.manual_seed(seed)
    return registry().build_model(name, (1, 28, 28), **options).to(device)


@dataclass
class EpochResult:
    """What one timed pass over the data reports."""

    seconds: float
    steps: int
    images: int
    loss: float | None = None  # mean training loss per image, where the loop keeps one


# -- the compute floor -------------------------------------------------------------------

def vae_loss(model: Model, x: torch.Tensor) -> torch.Tensor:
    """The VAE's negative ELBO summed over the batch, written in plain PyTorch.

    Same modules and same maths as genzoo's VAE (BCE from logits, one z = mu + eps*sigma
    with eps ~ N(0, I), closed-form KL), without the per-part bookkeeping.
    """
    h = model.encoder(x.flatten(1))
    mu, logvar = model.mu_head(h), model.logvar_head(h)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    bce = F.binary_cross_entropy_with_logits(model.decoder(z), x.flatten(1), reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kl


def floor_epoch(model: Model, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                batch_size: int = BATCH) -> EpochResult:
    """One pass of plain steps over ``images`` (already shuffled, already on the device)."""
    model.train()
    sync(images.device)
    started = time.perf_counter()
    steps = 0
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        vae_loss(model, x).backward()
        optimizer.step()
        steps += 1
    sync(images.device)
    return EpochResult(time.perf_counter() - started, steps, images.shape[0])


def shuffled(images: torch.Tensor, seed: int) -> torch.Tensor:
    """A shuffled contiguous copy, made before the floor's timer starts."""
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    return images[order.to(images.device)].contiguous()


# -- genzoo's model steps without the trainer --------------------------------------------

def genzoo_steps_epoch(model: Model, optimizers: dict[str, torch.optim.Optimizer], train: TensorSplit,
                       seed: int, batch_size: int = BATCH) -> EpochResult:
    """``TensorSplit.batches(shuffle=True)`` into :func:`genzoo.trainer.training_step`: the trainer's inner loop."""
    model.train()
    generator = torch.Generator().manual_seed(seed)
    sync(model.device)
    started = time.perf_counter()
    steps = 0
    for x in train.batches(batch_size, shuffle=True, generator=generator):
        training_step(model, x, optimizers)
        steps += 1
    sync(model.device)
    return EpochResult(time.perf_counter() - started, steps, len(train))


# -- the reference: the source article's loop --------------------------------------------

def article_dataset(limit: int | None = None) -> torch.utils.data.Dataset:
    """torchvision's MNIST with ``transforms.ToTensor()``, as the article builds it.

    Built outside the timer (the article builds it once per script). ``limit`` keeps
    the first images, so a short run is still whole epochs of a smaller set.
    """
    import torchvision
    from torchvision import transforms

    data = torchvision.datasets.MNIST(str(resolve_data_root()), train=True,
                                      transform=transforms.ToTensor(), download=False)
    if limit is not None and limit < len(data):
        data = torch.utils.data.Subset(data, range(limit))
    return data


def reference_article_epoch(model: Model, optimizer: torch.optim.Optimizer, data: torch.utils.data.Dataset,
                            num_workers: int, seed: int, batch_size: int = BATCH) -> EpochResult:
    """REFERENCE, not genzoo: one epoch of the article's training loop, bugs fixed.

    A new ``DataLoader`` iterator per epoch (worker processes start inside the timer,
    as they do for the article), a host-to-device copy per batch, the loss read back
    with ``loss.item()`` after every step. The VAE's loss uses its mean and
    log-variance in their right roles and ``randn_like`` noise (the article's bugs).
    """
    device = model.device
    generator = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():
        # more workers than cores is the article's choice on this machine, and what is measured
        warnings.filterwarnings("ignore", message="This DataLoader will create")
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True,
                                             num_workers=num_workers, generator=generator)
        model.train()
        sync(device)
        started = time.perf_counter()
        train_loss = 0.0
        steps = images = 0
        for x, _ in loader:
            x = x.to(device)
            optimizer.zero_grad()
            loss = vae_loss(model, x)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
            steps += 1
            images += x.shape[0]
        sync(device)
        seconds = time.perf_counter() - started
    return EpochResult(seconds, steps, images, train_loss / max(images, 1))


def adam(model: Model) -> torch.optim.Optimizer:
    """The optimiser genzoo's VAE configures (Adam, its configured learning rate)."""
    return torch.optim.Adam(model.parameters(), lr=model.config.lr)

