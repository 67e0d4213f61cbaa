"""``benchmarks/report.py`` turns pytest-benchmark JSON into the expected Markdown tables.

The fixture is a hand-written miniature of a real results file (one CPU run, one GPU
run); the assertions check arithmetic and layout, never a speed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report() -> ModuleType:
    """Load the script by path: ``benchmarks/`` is not an installed package."""
    spec = importlib.util.spec_from_file_location("genzoo_bench_report", REPO / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def row(group: str, median: float, rounds: int = 3, **info: Any) -> dict[str, Any]:
    return {"group": group, "name": f"test[{info.get('variant') or info.get('model')}]",
            "stats": {"median": median, "mean": median, "rounds": rounds}, "extra_info": info}


CPU = {"device": "cpu (Test CPU)", "device_type": "cpu", "cpu": "Test CPU", "cores": 2, "torch_threads": 2,
       "torch_version": "2.0.0", "mode": "default"}
GPU = {**CPU, "device": "cuda (Test GPU)", "device_type": "cuda", "cores": 16, "torch_threads": 16,
       "load_average_1min": [0.25, 0.5]}


def epoch_row(variant: str, median: float, env: dict[str, Any]) -> dict[str, Any]:
    return row("epoch", median, kind="epoch", variant=variant, model="vae", steps=600, batch_size=100,
               images_per_s=60000 / median, **env)


def cpu_doc() -> dict[str, Any]:
    return {
        "machine_info": {"genzoo": CPU},
        "commit_info": {"id": "0123456789abcdef", "dirty": False},
        "datetime": "2025-01-02T03:04:05.678+00:00",
        "benchmarks": [
            epoch_row("reference_article_workers0", 5.0, CPU),
            epoch_row("reference_article_workers4", 10.0, CPU),
            epoch_row("genzoo_trainer", 4.0, CPU),
            epoch_row("floor", 3.2, CPU),
            row("train step: vae", 0.005, kind="train_step", model="vae", batch_size=100,
                images_per_s=20000.0, **CPU),
            row("train step: vae", 0.02, kind="train_step", model="vae", batch_size=1000,
                images_per_s=50000.0, **CPU),
            row("sample", 0.01, kind="sample", model="vae", batch_size=1000, images_per_s=100000.0, **CPU),
            row("q", 0.5, 1, kind="quality", metric="reconstruction", model="vae", budget="5 epochs",
                mse_per_pixel=0.0123, bce_nats_per_image=80.25, **CPU),
            row("q", 0.4, 1, kind="quality", metric="nelbo", model="vae", budget="5 epochs", nelbo=108.26, **CPU),
            row("q", 3.0, 1, kind="quality", metric="fid-mnist", model="vae", budget="5 epochs",
                fid=12.345, samples=10000, **CPU),
        ],
    }


def gpu_doc() -> dict[str, Any]:
    return {
        "machine_info": {"genzoo": GPU},
        "commit_info": {"id": "fedcba9876543210", "dirty": True},
        "datetime": "2025-01-03T00:00:00",
        "benchmarks": [
            row("train step: vae", 0.001, kind="train_step", model="vae", batch_size=100,
                images_per_s=100000.0, **GPU),
            epoch_row("genzoo_trainer", 1.0, GPU),
            epoch_row("floor", 0.9, GPU),
        ],
    }


def test_ratios_compare_rows_of_one_device(report: ModuleType) -> None:
    rows = cpu_doc()["benchmarks"] + gpu_doc()["benchmarks"]
    report.add_ratios(rows)
    trainer_cpu = rows[2]["extra_info"]
    assert trainer_cpu["speedup_vs_article_workers0"] == pytest.approx(1.25)
    assert trainer_cpu["speedup_vs_article_workers4"] == pytest.approx(2.5)
    assert trainer_cpu["floor_fraction"] == pytest.approx(0.8)
    assert trainer_cpu["time_vs_floor"] == pytest.approx(1.25)
    trainer_gpu = rows[-2]["extra_info"]
    assert trainer_gpu["floor_fraction"] == pytest.approx(0.9)
    assert "speedup_vs_article_workers0" not in trainer_gpu  # no article rows on that device


def test_report_tables(report: ModuleType, tmp_path: Path) -> None:
    cpu, gpu = tmp_path / "cpu.json", tmp_path / "gpu.json"
    cpu.write_text(json.dumps(cpu_doc()))
    gpu.write_text(json.dumps(gpu_doc()))
    out = tmp_path / "docs" / "benchmarks.md"
    assert report.main([str(cpu), str(gpu), "-o", str(out)]) == 0
    lines = out.read_text().splitlines()

    assert "| cpu.json | cpu (Test CPU) | Test CPU | 2 | 2 | 2.0.0 | default | n/a | 2025-01-02 03:04:05 | 0123456789 |" in lines
    assert "| gpu.json | cuda (Test GPU) | Test CPU | 16 | 16 | 2.0.0 | default | 0.50 | 2025-01-03 00:00:00 | fedcba9876 (dirty) |" in lines
    # throughput: one column per batch size, GPU as its own row
    assert "| model | device | batch 100 | batch 1000 |" in lines
    assert "| vae | cpu (Test CPU) | 20,000 | 50,000 |" in lines
    assert "| vae | cuda (Test GPU) | 100,000 | n/a |" in lines
    # scaling: ms/step, µs/image, relative to batch 100
    assert "| vae | cpu (Test CPU) | 1000 | 20.00 | 20.00 | 4.00× | 3 |" in lines
    # the side-by-side table, article rows first, floor last
    epoch = [l for l in lines if l.startswith("| article's") or l.startswith("| genzoo") or l.startswith("| compute")]
    assert epoch == [
        "| article's loop, num_workers=0 (reference) | cpu (Test CPU) | 600 × 100 | 3 | 5.000 | 12,000 | 5.000 | 1.00× | 2.00× | 64% |",
        "| article's loop, num_workers=4 (reference) | cpu (Test CPU) | 600 × 100 | 3 | 10.00 | 6,000 | 10.00 | 0.50× | 1.00× | 32% |",
        "| genzoo trainer (`Trainer.fit`, as `genzoo train`) | cpu (Test CPU) | 600 × 100 | 3 | 4.000 | 15,000 | 4.000 | 1.25× | 2.50× | 80% |",
        "| compute floor (plain PyTorch, data in memory) | cpu (Test CPU) | 600 × 100 | 3 | 3.200 | 18,750 | 3.200 | 1.56× | 3.12× | 100% |",
        "| genzoo trainer (`Trainer.fit`, as `genzoo train`) | cuda (Test GPU) | 600 × 100 | 3 | 1.000 | 60,000 | 1.000 | n/a | n/a | 90% |",
        "| compute floor (plain PyTorch, data in memory) | cuda (Test GPU) | 600 × 100 | 3 | 0.900 | 66,667 | 0.900 | n/a | n/a | 100% |",
    ]
    assert "| vae | cpu (Test CPU) | 1000 | 10.00 | 100,000 |" in lines
    # quality: metrics as recorded, n/a where the model was not measured
    assert ("| vae | cpu (Test CPU) | 5 epochs | 0.0123 | 80.25 | 108.3 | 12.35 (10000 samples) | n/a "
            "| fid-mnist 3.000, nelbo 0.400, reconstruction 0.500 |") in lines


def test_empty_sections_are_left_out(report: ModuleType) -> None:
    doc = gpu_doc()
    text = report.render([doc])
    assert "## Training throughput" in text
    assert "## Sampling" not in text and "## Quality" not in text


def test_per_epoch_table(report: ModuleType) -> None:
    """An ``epoch_time.py`` JSON becomes one row per epoch plus the medians."""
    cells = {"genzoo_train_s": 3.6, "genzoo_wall_s": 4.0, "genzoo_test_nelbo": 108.25, "floor_s": 3.0,
             "floor_test_nelbo": 108.5, "article_w0_s": 5.0, "article_w4_s": 10.0}
    doc = {"environment": CPU, "epochs": [{"epoch": 1, **cells}], "median": cells, "summary": {}}
    lines = report.render([doc]).splitlines()
    assert ("| device | epoch | genzoo train s | genzoo wall s | genzoo test −ELBO | floor s | floor test −ELBO "
            "| article w0 s | article w4 s | genzoo train ÷ floor |") in lines
    assert "| cpu (Test CPU) | 1 | 3.600 | 4.000 | 108.2 | 3.000 | 108.5 | 5.000 | 10.00 | 1.20× |" in lines
    assert "| cpu (Test CPU) | **median** | 3.600 | 4.000 | 108.2 | 3.000 | 108.5 | 5.000 | 10.00 | 1.20× |" in lines


def test_inception_speed_table(report: ModuleType) -> None:
    """An ``inception_speed.py`` JSON becomes one row: both speeds, the ratio and the FID check."""
    doc = {"source": "cpu-inception.json", "environment": {**CPU, "mode": "Inception, 1000 images"},
           "images": 1000, "batch": 50, "images_per_s": {"before": 4.0, "after": 9.0}, "speed_up": 2.25,
           "max_abs_feature_difference": 1.8e-5, "fid_train_vs_test": {"before": 20.5, "after": 20.5001},
           "fid_difference": 1e-4, "fid_test_before_vs_after": 2e-9}
    lines = report.render([doc]).splitlines()
    assert "## Inception feature pass, before and after" in lines
    assert ("| cpu-inception.json | 1000 | 50 | 4.000 | 9.000 | 2.25× | 1.8e-05 | 20.50 | 20.50 | 1.0e-04 "
            "| 2.0e-09 |") in lines
    assert "| cpu-inception.json | cpu (Test CPU) | Test CPU | 2 | 2 | 2.0.0 | Inception, 1000 images | n/a |  |  |" \
        in lines


def test_step_kinds_tables(report: ModuleType) -> None:
    """A ``step_kinds.py`` JSON: seconds per epoch by step kind against the floor and the limit; pythae; processes."""
    row = {"model": "vae", "images_per_epoch": 60_000,
           "median_s": {"floor": 3.2, "eager": 3.4, "fused": 2.8, "fast": 1.9, "compiled": 2.0},
           "compile_s": 15.0, "notes": {}, "fast_precision": "bf16", "flops_per_epoch": 243e9, "limit_s": 1.4,
           "fast_limit_s": 0.2}
    # A file from before the fast kind: its cells n/a.
    gan = {"model": "gan", "median_s": {"eager": 5.0, "fused": 4.0, "compiled": 4.0}, "compile_s": None,
           "notes": {"compiled": "steps its own optimisers: uncompiled"}, "flops_per_epoch": 1e12, "limit_s": 5.8}
    doc = {"environment": {**CPU, "matmul_peak_flops": 171e9, "batch_size": 100}, "models": [row, gan],
           "pythae": {"per_epoch_s": 4.4, "epochs": 4, "seconds": 17.6, "note": "with its evaluation"},
           "processes": {"eager": {"median_s": 20.0, "seconds": [20.0], "test_nelbo": [107.9, 107.7, 108.0]},
                         "fused": {"median_s": 18.0, "seconds": [18.0]},  # from before the −ELBO was kept
                         "pythae": {"median_s": 36.0, "seconds": [36.0]}}}
    lines = report.render([doc]).splitlines()
    assert ("| device | model | batch | floor s | eager s | fused s | fast s | compiled s | compile s | limit s "
            "| fast limit s | GFLOP/epoch | best ÷ floor | best images/s | pythae s |") in lines
    assert ("| cpu (Test CPU) | vae | 100 | 3.200 | 3.400 | 2.800 | 1.900 (bf16) | 2.000 | 15.00 | 1.400 | 0.200 | 243 "
            "| 0.59× | 31,579 | 4.400 |") in lines
    assert ("| cpu (Test CPU) | gan | 100 | n/a | 5.000 | 4.000 | n/a | 4.000 (steps its own optimisers: uncompiled) "
            "| n/a | 5.800 | n/a | 1000 | n/a | n/a | n/a |") in lines
    assert "| cpu (Test CPU) | eager | 20.00 | 1.00× | 1.80× | 107.90 |" in lines
    assert "| cpu (Test CPU) | fused | 18.00 | 0.90× | 2.00× | n/a |" in lines
    assert "| cpu (Test CPU) | pythae | 36.00 | 1.80× | 1.00× | n/a |" in lines


@pytest.mark.parametrize(("content", "says"), [
    ("not json", "could not be read as JSON"),
    ("[1]", "is no benchmark result"),
    ('{"benchmarks": [1]}', "is no benchmark result"),
    ('{"benchmarks": [{"stats": 3}]}', "is no benchmark result"),
    ("[" * 100_000, "could not be read as JSON"),
])
def test_a_file_that_is_no_benchmark_result_is_one_line(report: ModuleType, tmp_path: Path, content: str, says: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Fourteenth hostile pass M10. Before: ``JSONDecodeError`` and ``AttributeError: 'list' object has no attribute
    'setdefault'`` tracebacks. After: argparse's one line and exit 2; the -o file is not written."""
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    out = tmp_path / "report.md"
    with pytest.raises(SystemExit) as info:
        report.main([str(bad), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and says in err[-1] and str(bad) in err[-1], err
    assert not out.exists()


def test_start_time_table(report: ModuleType) -> None:
    """A ``start_time.py`` JSON: the tiny process beside torch's import and torch with its optimiser, and the gaps."""
    doc = {"environment": CPU, "start": {"median_s": {"torch": 1.5, "torch_optimiser": 2.75, "genzoo_train": 3.5}}}
    lines = report.render([doc]).splitlines()
    assert ("| device | import torch s | torch + Adam step s | genzoo train s | over torch s | over torch + Adam s |"
            in lines)
    assert "| cpu (Test CPU) | 1.500 | 2.750 | 3.500 | 2.000 | 0.750 |" in lines
