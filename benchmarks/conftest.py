"""Benchmark suite settings: quick mode, device, thread pinning, machine info, ratios.

Run it explicitly (``pytest`` alone runs ``tests/`` only, see ``testpaths``)::

    pytest benchmarks --benchmark-only                      # default set, <= ~10 min on 2 CPU cores
    pytest benchmarks --benchmark-only --quick              # CI smoke run, < 2 min
    pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results/cpu.json
    python benchmarks/report.py benchmarks/results/cpu.json -o docs/benchmarks.md

Benchmarks measure and record; they never assert a speed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch

from benchmarks import common, report
from genzoo.building import select_device


@dataclass(frozen=True)
class Settings:
    """How big this run is; recorded in the JSON so a reader knows what was measured."""

    quick: bool
    device: torch.device
    #: Seconds of timed rounds per step benchmark (after warm-up).
    step_budget_s: float
    #: Steps of batch 100 the epoch comparison runs per round (600 = one MNIST epoch).
    epoch_steps: int
    epoch_rounds: int
    #: Fixed training budget of the quality benchmarks.
    quality_epochs: int
    quality_train_images: int | None
    #: Test images the quality metrics use (None: the whole test split).
    quality_test_images: int | None
    fid_samples: int
    inception: bool
    inception_samples: int
    batch_sizes: tuple[int, ...] = (32, 100, 316, 1000)
    sample_batch: int = 1000

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "quick" if self.quick else "default",
            "step_budget_s": self.step_budget_s,
            "epoch_steps": self.epoch_steps,
            "epoch_rounds": self.epoch_rounds,
            "quality_epochs": self.quality_epochs,
            "quality_train_images": self.quality_train_images or 60000,
            "quality_test_images": self.quality_test_images or 10000,
            "fid_samples": self.fid_samples,
            "inception": self.inception,
            "inception_samples": self.inception_samples if self.inception else None,
        }


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("genzoo benchmarks")
    group.addoption("--quick", action="store_true", default=None,
                    help=f"small CI run (< 2 min); also ${common.QUICK_ENV}=1")
    group.addoption("--bench-device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="device to benchmark on (auto: CUDA when present)")
    group.addoption("--bench-models", default=None, metavar="NAMES",
                    help=f"comma-separated models to benchmark, or all; also ${common.MODELS_ENV} "
                         f"[default: all but {','.join(common.HEAVY_MODELS)}]")
    group.addoption("--inception", action="store_true", default=False,
                    help="also compute FID with Inception features (minutes to an hour on CPU)")
    group.addoption("--inception-samples", type=int, default=None,
                    help="samples (and reference images) for Inception FID; default 10000, quick 500")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "inception: Inception-feature FID, opt-in with --inception")
    quick = config.getoption("--quick", default=None)
    if quick is None:
        quick = os.environ.get(common.QUICK_ENV, "") not in ("", "0", "false", "no")
    device = select_device(config.getoption("--bench-device", default="auto"))
    inception = bool(config.getoption("--inception", default=False))
    inception_samples = config.getoption("--inception-samples", default=None) or (500 if quick else 10_000)
    chosen = config.getoption("--bench-models", default=None)
    if chosen:  # read where the tests are parametrised, at collection
        os.environ[common.MODELS_ENV] = chosen
    try:
        common.bench_models()  # an unknown name stops the run before anything is measured
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    common.pin_threads()
    config._genzoo_bench = Settings(  # type: ignore[attr-defined]
        quick=quick,
        device=device,
        step_budget_s=0.3 if quick else 2.0,
        epoch_steps=30 if quick else 600,
        epoch_rounds=1 if quick else 5,
        quality_epochs=1 if quick else 5,
        quality_train_images=3000 if quick else None,
        quality_test_images=2000 if quick else None,
        fid_samples=1000 if quick else 10_000,
        inception=inception,
        inception_samples=inception_samples,
        batch_sizes=(100, 1000) if quick else (32, 100, 316, 1000),
    )
    config._genzoo_rows = []  # type: ignore[attr-defined]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config._genzoo_bench.inception:  # type: ignore[attr-defined]
        return
    skip = pytest.mark.skip(reason="Inception FID is opt-in: pass --inception")
    for item in items:
        if "inception" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> Settings:
    return pytestconfig._genzoo_bench  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def device(settings: Settings) -> torch.device:
    return settings.device


@pytest.fixture(scope="session")
def mnist(device: torch.device) -> dict[str, Any]:
    """The MNIST splits, loaded once through genzoo's dataset plugin, on the device."""
    train, test = common.load_mnist(device)
    return {"train": train, "test": test}


@pytest.fixture
def record(request: pytest.FixtureRequest, benchmark: Any, settings: Settings) -> Callable[..., None]:
    """Call after ``benchmark.pedantic``: stores ``extra_info`` and throughput.

    ``images`` is how many images one timed round handles; images/s is computed from
    the median round, which noise from other processes moves least.
    """

    load_before = common.load_average()

    def store(kind: str, images: int | None = None, **extra: Any) -> None:
        info = benchmark.extra_info
        info.update(kind=kind, **extra, **common.environment(settings.device), mode=settings.describe()["mode"],
                    load_average_1min=[load_before, common.load_average()])
        stats = getattr(benchmark, "stats", None)
        if stats is None:  # --benchmark-disable: ran once, nothing timed
            return
        median = stats.stats.median
        if images is not None:
            info["images_per_round"] = images
            info["images_per_s"] = images / median if median > 0 else None
        request.config._genzoo_rows.append(  # type: ignore[attr-defined]
            {"name": benchmark.name, "group": benchmark.group, "extra_info": info,
             "stats": {k: getattr(stats.stats, k) for k in ("median", "mean", "min", "max", "stddev", "rounds")}}
        )

    return store


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Torch version, threads, cores and device travel with every JSON."""
    bench: Settings = config._genzoo_bench  # type: ignore[attr-defined]
    machine_info["genzoo"] = {**common.environment(bench.device), **bench.describe()}


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    """Write the epoch comparison's ratios into each row's ``extra_info``."""
    report.add_ratios(output_json["benchmarks"])


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print images/s, ratios and quality numbers, which pytest-benchmark's table does not show."""
    rows = getattr(config, "_genzoo_rows", [])
    if not rows:
        return
    bench: Settings = config._genzoo_bench  # type: ignore[attr-defined]
    report.add_ratios(rows)
    doc = {"machine_info": {"genzoo": {**common.environment(bench.device), **bench.describe()}},
           "benchmarks": rows}
    terminalreporter.write_sep("=", "genzoo benchmark summary")
    terminalreporter.write_line(report.render([doc], title=None, notes=False))
