"""Set up and carry out a training run: data, model, run folder, trainer, pictures."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

import genzoo
from genzoo import figures
from genzoo.checkpoint import check_matches, load_checkpoint
from genzoo.data import Split, resolve_data_root
from genzoo.errors import GenzooError
from genzoo.model import Model
from genzoo.plugins import registry
from genzoo.runs import keep_metrics_through, new_run_dir, read_config, read_metrics, write_config
from genzoo.trainer import Trainer, TrainConfig, select_device

PICTURE_SEED = 1234


@dataclass
class RunResult:
    run_dir: Path
    model: Model
    records: list[dict[str, Any]]


def load_splits(config: TrainConfig, device: torch.device, download: bool = True) -> tuple[Split, Split, tuple[int, ...]]:
    """Load the train and test splits once, cut to the requested subsets, onto ``device``."""
    dataset_cls = registry().dataset(config.dataset)
    dataset = dataset_cls(resolve_data_root(config.data_root), download=download)
    train, test = dataset.load("train"), dataset.load("test")
    if config.train_limit is not None:
        train = train.take(config.train_limit)
    if config.test_limit is not None:
        test = test.take(config.test_limit)
    return train.to(device), test.to(device), tuple(dataset_cls.sample_shape)


def _describe_run(config: TrainConfig, model: Model, device: torch.device, shape: tuple[int, ...]) -> dict[str, Any]:
    return {
        "model": config.model,
        "model_config": model.config.to_dict(),
        "train_config": config.to_dict(),
        "sample_shape": list(shape),
        "device": str(device),
        "genzoo_version": genzoo.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def start_run(
    config: TrainConfig,
    model_options: dict[str, Any] | None = None,
    out: str | Path | None = None,
    download: bool = True,
    console: Console | None = None,
) -> RunResult:
    """Train a new model as ``config`` says and leave a complete run folder behind."""
    reg = registry()
    reg.entry("model", config.model)  # fail on an unknown name before touching data
    device = select_device(config.device)
    train, test, shape = load_splits(config, device, download)
    torch.manual_seed(config.seed)
    model = reg.build_model(config.model, shape, **(model_options or {})).to(device)
    run_dir = new_run_dir(config.model, out)
    description = _describe_run(config, model, device, shape)
    write_config(run_dir, description)
    trainer = Trainer(model, train, test, config, run_dir, console, checkpoint_extra=_identity(description))
    records = trainer.fit()
    save_pictures(model, test, run_dir, read_metrics(run_dir))
    return RunResult(run_dir, model, records)


def _identity(description: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint records about itself, to refuse a mismatched resume or load."""
    keys = ("model", "model_config", "train_config", "sample_shape")
    return {key: description[key] for key in keys}


def resume_run(run_dir: str | Path, download: bool = True, console: Console | None = None) -> RunResult:
    """Continue the run in ``run_dir`` from its last checkpoint."""
    run_dir = Path(run_dir)
    description = read_config(run_dir)
    state = load_checkpoint(run_dir)
    check_matches(state, description["model"], description["model_config"], run_dir)
    config = TrainConfig(**description["train_config"])
    device = select_device(config.device)
    train, test, shape = load_splits(config, device, download)
    model = registry().build_model(config.model, shape, **description["model_config"]).to(device)
    trainer = Trainer(model, train, test, config, run_dir, console, checkpoint_extra=_identity(description))
    trainer.restore(state)
    keep_metrics_through(run_dir, trainer.position.epoch)
    records = trainer.fit()
    save_pictures(model, test, run_dir, read_metrics(run_dir))
    return RunResult(run_dir, model, records)


def load_model(run_dir: str | Path, device: str = "cpu") -> Model:
    """The trained model of a finished run, from its checkpoint (loaded weights-only)."""
    run_dir = Path(run_dir)
    description = read_config(run_dir)
    state = load_checkpoint(run_dir)
    check_matches(state, description["model"], description["model_config"], run_dir)
    model = registry().build_model(description["model"], tuple(description["sample_shape"]),
                                   **description["model_config"])
    try:
        model.load_state_dict(state["model_state"])
    except (KeyError, RuntimeError) as exc:
        raise GenzooError(f"checkpoint in {run_dir} does not fit its model: {exc}".splitlines()[0]) from exc
    return model.to(select_device(device)).eval()


def save_pictures(model: Model, test: Split, run_dir: Path, records: list[dict[str, Any]]) -> None:
    """``samples.png``, ``reconstructions.png`` and ``loss.png``, as the model allows."""
    name = type(model).__name__
    model.eval()
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(PICTURE_SEED)
        if model.can_sample:
            figures.save_samples(model.sample(64), run_dir / "samples.png", f"{name}: 64 samples")
        if model.can_reconstruct:
            x = next(iter(test.batches(32)))
            figures.save_reconstructions(
                x, model.reconstruct(x), run_dir / "reconstructions.png",
                f"{name}: test images (left) and reconstructions (right)",
            )
    if records:
        figures.save_loss_curves(records, model.loss_names, run_dir / "loss.png", f"{name} losses per epoch")
