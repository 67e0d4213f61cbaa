"""Seconds per epoch by kind of training step, beside the eager floor and the machine's limit; pythae beside them.

    python benchmarks/step_kinds.py --json benchmarks/results/cpu-steps.json    # full epochs, ae, vae, gan
    python benchmarks/step_kinds.py --steps 20 --epochs 2 --models vae          # a sanity run, seconds
    python benchmarks/step_kinds.py --processes 3 --json ...                    # and whole `genzoo train` runs

For each model (batch 100, seed 0, the full MNIST training split, its data in memory)
four loops train their own copy, interleaved epoch by epoch so load from other
processes hits all alike:

* floor: the plain PyTorch loop (``benchmarks.common.floor_epoch``; the VAE only, the
  loop the issue measures against).
* eager: genzoo's ``training_step`` with the optimisers as the model builds them, unfused.
* fused: the same with torch's fused optimiser kernels (``--fused``), products exact.
* fast: fused, and the fp32 products in bf16 on a CPU with bf16 units (TF32 on a GPU): genzoo's
  default on such a CPU (``--fp32-precision auto``).
* compiled: fused, and the objective through ``torch.compile`` (``--compile``); its first
  step's extra seconds are the compile time, reported apart. A model that steps its
  own optimisers (the GAN) trains uncompiled, as ``genzoo train --compile`` does.

The limit is the model's floating-point work per epoch (counted by torch's
``FlopCounterMode`` over one real training step, from the shapes of every matrix
product it runs, forward and backward) divided by this machine's fp32 matrix-product
peak (measured here: the best of several large ``torch.mm`` calls); the fast limit
divides it by the peak of the same products in the fast kind's precision.

``--processes N`` also times whole 5-epoch ``genzoo train vae --latent 40`` processes
(start-up, data, evaluation, pictures included): eager, fused with exact products, the
default (fused, ``--fp32-precision auto``), compiled (the default and ``--compile``) with a
cold inductor cache and with a warm one, N of each, medians.

pythae (``pip install pythae`` beside this torch; never another torch) trains its own
VAE with the same MLP, BCE and Adam 1e-3 at batch 100 through its TrainingPipeline, for
the same epochs; without it, that row says why it is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks import common
from benchmarks.options import at_least
from genzoo.building import select_device
from genzoo.data import TensorSplit
from genzoo.precision import fp32_precision, resolved
from genzoo.trainer import CompiledObjective, fuse, training_step

KINDS = ("floor", "eager", "fused", "fast", "compiled")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ae,vae,gan", help="comma-separated registered models")
    parser.add_argument("--epochs", type=at_least(1), default=3, help="timed epochs per loop (medians)")
    parser.add_argument("--steps", type=at_least(1), default=None, help="steps per epoch (default: the whole split)")
    parser.add_argument("--batch-size", type=at_least(1), default=common.BATCH)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=at_least(1), default=None,
                        help="torch threads (default: the machine's cores)")
    parser.add_argument("--processes", type=at_least(0), default=0,
                        help="also time N whole genzoo train processes of each")
    parser.add_argument("--no-pythae", action="store_true", help="skip pythae even when it is installed")
    parser.add_argument("--json", help="also write every number to this JSON file")
    return parser.parse_args(argv)


def fast_precision(device: torch.device) -> str:
    """The reduced precision of the fast kind on ``device``: bf16 on a CPU, TF32 on a GPU (exact where it has none)."""
    return resolved("bf16" if device.type == "cpu" else "tf32", device)[0]


def matmul_peak(device: torch.device, precision: str = "ieee", size: int = 2048, repeats: int = 10) -> float:
    """This machine's fp32 matrix-product rate in FLOP/s, its products in ``precision``: the best of ``repeats``
    ``size``-square products."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best = float("inf")
    with fp32_precision(precision, device):
        torch.mm(a, b)
        for _ in range(repeats):
            common.sync(device)
            started = time.perf_counter()
            torch.mm(a, b)
            common.sync(device)
            best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def step_flops(model_name: str, device: torch.device, x: torch.Tensor) -> int:
    """FLOPs of one training step of ``model_name`` on ``x``, counted from the shapes of the operations it runs."""
    from torch.utils.flop_counter import FlopCounterMode

    model = common.build_model(model_name, device, **common.VAE_OPTIONS)
    optimizers = model.configure_optimizers()
    with FlopCounterMode(display=False) as counter:
        training_step(model, x, optimizers)
    return int(counter.get_total_flops())


def make_loop(model_name: str, kind: str, device: torch.device, train: TensorSplit,
              batch_size: int, steps: int) -> tuple[Callable[[int], float], str | None]:
    """A function timing one epoch of ``kind`` (its seed given), and why the kind is not what it says (or None)."""
    model = common.build_model(model_name, device, **common.VAE_OPTIONS)
    optimizers = model.configure_optimizers()
    note = None
    if kind == "floor":
        (optimizer,) = optimizers.values()

        def floor(seed: int) -> float:
            images = common.shuffled(train.images, seed)[: steps * batch_size]
            return common.floor_epoch(model, optimizer, images, batch_size).seconds
        return floor, None
    fuse(optimizers, kind != "eager")
    precision = fast_precision(device) if kind == "fast" else "ieee"
    if kind == "fast" and precision == "ieee":
        note = "no reduced-precision units: exact"
    forward = None
    if kind == "compiled":
        if model.automatic_optimization:
            forward = CompiledObjective(model.loss, model.device)
        else:
            note = "steps its own optimisers: uncompiled"

    def epoch(seed: int) -> float:
        model.train()
        generator = torch.Generator().manual_seed(seed)
        common.sync(device)
        started = time.perf_counter()
        with fp32_precision(precision, device):
            for i, x in enumerate(train.batches(batch_size, shuffle=True, generator=generator)):
                if i == steps:
                    break
                training_step(model, x, optimizers, forward=forward)
        common.sync(device)
        return time.perf_counter() - started
    return epoch, note


def epoch_steps(args: argparse.Namespace, images: int) -> int:
    """The steps of one timed epoch: ``--steps``, or the whole split, never past it (then it is the split)."""
    whole: int = -(-images // args.batch_size)
    steps: int = args.steps or whole
    return min(steps, whole)


def measure_model(model_name: str, args: argparse.Namespace, device: torch.device, train: TensorSplit,
                  peak: float, fast_peak: float) -> dict[str, Any]:
    steps = epoch_steps(args, len(train))
    kinds = [k for k in KINDS if k != "floor" or model_name == "vae"]
    loops = {kind: make_loop(model_name, kind, device, train, args.batch_size, steps) for kind in kinds}
    # The first epoch of each loop warms it up; the compiled one's first steps compile.
    first = {kind: loop(0) for kind, (loop, _) in loops.items()}
    seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
    for epoch in range(1, args.epochs + 1):
        for kind, (loop, _) in loops.items():
            seconds[kind].append(loop(epoch))
    median = {kind: statistics.median(values) for kind, values in seconds.items()}
    why = notes(loops)
    x = next(iter(train.batches(args.batch_size)))
    flops = step_flops(model_name, device, x) * steps
    return {
        "model": model_name, "steps_per_epoch": steps, "images_per_epoch": min(steps * args.batch_size, len(train)),
        "seconds": seconds, "median_s": median,
        "compile_s": first["compiled"] - median["compiled"] if "compiled" in first and "compiled" not in why else None,
        "notes": why, "fast_precision": fast_precision(device),
        "flops_per_epoch": flops, "limit_s": flops / peak, "fast_limit_s": flops / fast_peak,
    }


def notes(loops: dict[str, tuple[Callable[[int], float], str | None]]) -> dict[str, str]:
    """Why each kind that is not what it says is not."""
    return {kind: note for kind, (_, note) in loops.items() if note}


def pythae_installed() -> str | None:
    """Why pythae cannot run beside this torch, or None when it can."""
    try:
        import pythae.pipelines  # noqa: F401
    except ImportError as exc:
        return f"pythae is not installed ({exc}); pip install 'genzoo[bench-pythae]' beside this torch to compare"
    return None


def pythae_epochs(args: argparse.Namespace, train: TensorSplit, device: torch.device) -> dict[str, Any]:
    """pythae's VAE, the same MLP, BCE and Adam 1e-3, batch 100, through its own TrainingPipeline."""
    if args.no_pythae:
        return {"skipped": "--no-pythae"}
    if (missing := pythae_installed()) is not None:
        return {"skipped": missing}
    from benchmarks import pythae_vae

    images = train.images[: epoch_steps(args, len(train)) * args.batch_size].cpu()
    seconds = pythae_vae.train(images, images[:1000], args.epochs + 1, args.batch_size, device.type == "cuda")
    return {"epochs": args.epochs + 1, "seconds": seconds, "per_epoch_s": seconds / (args.epochs + 1),
            "note": "its own per-epoch evaluation (1,000 images) included, as its pipeline runs it"}


def whole_processes(count: int, pythae: bool) -> dict[str, dict[str, list[float]]]:
    """Wall seconds of whole 5-epoch processes, ``count`` of each, interleaved: ``genzoo train vae --latent 40``
    eager, fused with exact products, the default (fused, ``--fp32-precision auto``), compiled with a cold and a
    warm inductor cache; pythae's, when ``pythae``. Each genzoo run's final test −ELBO beside its seconds: what
    the faster settings cost in quality, measured in the same run."""
    genzoo = common.genzoo_command("train", "vae", "--latent", "40", "--epochs", "5")
    exact = [*genzoo, "--fp32-precision", "ieee"]
    settings = {"eager": [*exact, "--no-fused"], "fused, exact products": exact, "default": genzoo,
                "compiled, cold cache": [*genzoo, "--compile"], "compiled, warm cache": [*genzoo, "--compile"]}
    if pythae:
        settings["pythae"] = [sys.executable, str(Path(__file__).with_name("pythae_vae.py")), "--epochs", "5"]
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    nelbo: dict[str, list[float]] = {name: [] for name in settings if name != "pythae"}
    cache = tempfile.mkdtemp(prefix="genzoo-inductor-")
    try:
        for _ in range(count):
            for name, command in settings.items():
                if name.endswith("cold cache"):
                    shutil.rmtree(cache, ignore_errors=True)
                    os.mkdir(cache, 0o700)
                with tempfile.TemporaryDirectory(prefix="genzoo-process-") as out:
                    out_option = [] if name == "pythae" else ["--out", str(Path(out) / "run")]
                    started = time.perf_counter()
                    subprocess.run([*command, *out_option], check=True, capture_output=True,
                                   env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache})
                    seconds[name].append(time.perf_counter() - started)
                    if name in nelbo:
                        last = (Path(out) / "run" / "metrics.jsonl").read_text().splitlines()[-1]
                        nelbo[name].append(json.loads(last)["test_nelbo"])
                quality = f", test −ELBO {nelbo[name][-1]:.2f}" if name in nelbo else ""
                print(f"  {name}: {seconds[name][-1]:.1f} s{quality}", flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {name: {"seconds": values, **({"test_nelbo": nelbo[name]} if name in nelbo else {})}
            for name, values in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loads = [common.load_average()]
    threads = common.pin_threads(args.threads)
    device = select_device(args.device)
    train, _ = common.load_mnist(device)
    assert isinstance(train, TensorSplit)
    env = common.environment(device)
    peak, fast_peak = matmul_peak(device), matmul_peak(device, fast_precision(device))
    print(f"# {env['device']}, {threads} threads, torch {env['torch_version']}; batch {args.batch_size}; "
          f"fp32 matmul peak {peak / 1e9:.0f} GFLOP/s, {fast_precision(device)} products {fast_peak / 1e9:.0f}",
          flush=True)
    print("| model | floor s | eager s | fused s | fast s | compiled s | compile s | limit s | fast limit s | "
          "GFLOP/epoch |\n|" + "---|" * 10)
    rows = []
    for name in args.models.split(","):
        row = measure_model(name, args, device, train, peak, fast_peak)
        rows.append(row)
        cell = {k: f"{v:.2f}" for k, v in row["median_s"].items()}
        compile_s = "n/a" if row["compile_s"] is None else f"{row['compile_s']:.1f}"
        print(f"| {name} | {cell.get('floor', '—')} | {cell['eager']} | {cell['fused']} | {cell['fast']} | "
              f"{cell['compiled']} | {compile_s} | {row['limit_s']:.2f} | {row['fast_limit_s']:.2f} | "
              f"{row['flops_per_epoch'] / 1e9:.0f} |", flush=True)
    pythae = pythae_epochs(args, train, device)
    print(f"pythae: {pythae}", flush=True)
    processes = (whole_processes(args.processes, not args.no_pythae and pythae_installed() is None)
                 if args.processes else {})
    loads.append(common.load_average())
    print(f"1-min load average before and after: {loads[0]}, {loads[-1]}")
    if args.json:
        steps = epoch_steps(args, len(train))
        mode = f"{args.epochs} epochs" + (f" of {steps} steps" if steps * args.batch_size < len(train) else "")
        doc = {"environment": {**env, "mode": mode, "matmul_peak_flops": peak, "fast_matmul_peak_flops": fast_peak,
                               "batch_size": args.batch_size,
                               "epochs": args.epochs, "load_average_1min": loads},
               "datetime": datetime.now(timezone.utc).isoformat(),
               "models": rows, "pythae": pythae,
               "processes": {k: {**v, "median_s": statistics.median(v["seconds"])} for k, v in processes.items()}}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
