"""Set up and carry out a training run: data, model, run folder, trainer, pictures."""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

import genzoo
from genzoo import figures
from genzoo.checkpoint import FILENAME, check_finite_weights, check_matches, load_checkpoint
from genzoo.data import Split, resolve_data_root
from genzoo.errors import GenzooError, warn
from genzoo.evaluation.cost import parameter_count
from genzoo.model import Model
from genzoo.plugins import registry
from genzoo.runfiles import RunDescription, lost_metrics, read_run
from genzoo.runs import (
    CONFIG,
    METRICS,
    keep_metrics_through,
    locked,
    new_run_dir,
    read_metrics,
    write_config,
)
from genzoo.seeding import seeded
from genzoo.trainer import Position, Trainer, TrainConfig, check_batch_size, select_device

#: ``atomic_write``'s temporary names: ``.`` + the file's name + ``.`` + mkstemp's 8 characters + ``.tmp``.
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


@dataclass
class RunResult:
    run_dir: Path
    model: Model
    records: list[dict[str, Any]]


def load_split(dataset: str, split: str, data_root: str | None, limit: int | None,
               device: torch.device, download: bool = True) -> Split:
    """One split of a registered dataset, cut to its first ``limit`` images, on ``device``.

    Its images must have the shape the dataset declares: models are built from that
    shape, so other images would fail only inside the first step, after the run began.
    """
    data = registry().dataset(dataset)(resolve_data_root(data_root), download=download)
    loaded = data.load(split)
    first = next(iter(loaded.batches(1)), None)
    if first is not None and tuple(first.shape[1:]) != tuple(data.sample_shape):
        raise GenzooError(f"dataset {dataset!r} gave {split} images of shape {tuple(first.shape[1:])}, "
                          f"but it declares {tuple(data.sample_shape)}")
    if limit is not None:
        loaded = loaded.take(limit)
    return loaded.to(device)


def load_splits(config: TrainConfig, device: torch.device, download: bool = True) -> tuple[Split, Split]:
    """Load the train and test splits once, cut to the requested subsets, onto ``device``."""
    train = load_split(config.dataset, "train", config.data_root, config.train_limit, device, download)
    test = load_split(config.dataset, "test", config.data_root, config.test_limit, device, download)
    return train, test


def data_sha256(train: Split, test: Split) -> dict[str, str]:
    """The sha256 of each split's pixels as trained on (float32, in order, after the limits).

    Recorded in ``config.json`` at the start and checked on resume, so a resume whose
    ``--data-root`` holds other data is refused instead of training on it. Full MNIST
    (70,000 images, 220 MB of float32) takes about 0.3 s on the development CPU.
    """
    def digest(split: Split) -> str:
        h = hashlib.sha256()
        for x in split.batches(10_000):
            h.update(x.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()

    return {"train": digest(train), "test": digest(test)}


def check_data(run: RunDescription, train: Split, test: Split, run_dir: Path) -> None:
    """Refuse data other than the run trained on; a run from before digests were recorded has none to check."""
    if run.data_sha256 is None:
        return
    found = data_sha256(train, test)
    differ = [split for split in ("train", "test") if found[split] != run.data_sha256[split]]
    if differ:
        raise GenzooError(f"the {' and '.join(differ)} data found now differ from those run {run_dir} was trained "
                          f"on (sha256 recorded in its {CONFIG}); point --data-root (or GENZOO_DATA) at the data "
                          "it was trained on")


def _describe_run(config: TrainConfig, model: Model, device: torch.device, shape: tuple[int, ...],
                  data: dict[str, str]) -> dict[str, Any]:
    return {
        "model": config.model,
        "model_config": model.config.to_dict(),
        "train_config": config.to_dict(),
        "sample_shape": list(shape),
        "data_sha256": data,
        "device": str(device),
        "genzoo_version": genzoo.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "parameters": parameter_count(model),
    }


def start_run(
    config: TrainConfig,
    model_options: dict[str, Any] | None = None,
    out: str | Path | None = None,
    download: bool = True,
    console: Console | None = None,
) -> RunResult:
    """Train a new model as ``config`` says and leave a complete run folder behind.

    Every check that can fail on bad input (names, options, device, data, batch
    size) runs before the run folder is created, so a refused run writes nothing.
    """
    reg = registry()
    reg.entry("model", config.model)  # fail on an unknown name before touching data
    dataset_cls = reg.dataset(config.dataset)
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    shape = tuple(dataset_cls.sample_shape)
    model = reg.build_model(config.model, shape, **(model_options or {}))
    model = model.to(device)
    train, test = load_splits(config, device, download)
    check_batch_size(config, len(train), model)
    data = data_sha256(train, test)
    run_dir = new_run_dir(config.model, out)
    with locked(run_dir):
        description = _describe_run(config, model, device, shape, data)
        write_config(run_dir, description)
        trainer = Trainer(model, train, test, config, run_dir, console, checkpoint_extra=_identity(description))
        records = trainer.fit()
        save_pictures(model, test, run_dir, records)  # a new folder: these are all its records
    return RunResult(run_dir, model, records)


def _identity(description: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint records about itself, to refuse a mismatched resume or load."""
    keys = ("model", "model_config", "train_config", "sample_shape")
    return {key: description[key] for key in keys}


def _train_config(run: RunDescription, **overrides: Any) -> TrainConfig:
    """The run's ``TrainConfig`` from its checked ``config.json``, with this session's overrides."""
    return dataclasses.replace(run.train_config, **{k: v for k, v in overrides.items() if v is not None})


def _refuse_links(run_dir: Path) -> None:
    """Refuse a run folder whose files are symbolic links: writing them would reach outside it."""
    for name in (CONFIG, METRICS, FILENAME):
        if (run_dir / name).is_symlink():
            raise GenzooError(
                f"{run_dir / name} is a symbolic link; genzoo only writes regular files "
                "inside a run folder"
            )


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the half-written temporary files a killed run left (``.NAME.*.tmp``).

    Only names that :func:`genzoo.files.atomic_write` makes, and only in this run
    folder, which the caller has locked: nothing else can be writing them.
    """
    for path in run_dir.glob(".*.tmp"):
        if _TEMPORARY.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            path.unlink()


def resume_run(
    run_dir: str | Path,
    download: bool = True,
    console: Console | None = None,
    device: str | None = None,
    data_root: str | None = None,
) -> RunResult:
    """Continue the run in ``run_dir`` from its last checkpoint.

    Model, optimisers, position in the epoch and RNG states come back from the
    checkpoint and metric lines written after it are dropped (that work is redone), so
    on CPU the finished run equals one never interrupted. ``device`` and ``data_root``
    override where this session trains and reads data, nothing else.
    """
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    _refuse_links(run_dir)
    source = run_dir / FILENAME
    state = load_checkpoint(source)
    check_matches(state, run.model, run.model_config, source, train_config=run.train_config.to_dict(),
                  sample_shape=list(run.sample_shape))
    config = _train_config(run, device=device, data_root=data_root)
    reg = registry()
    dataset_cls = reg.dataset(config.dataset)
    device_ = select_device(config.device)
    model = reg.build_model(config.model, tuple(dataset_cls.sample_shape), **run.model_config)
    model = model.to(device_)
    train, test = load_splits(config, device_, download)
    check_data(run, train, test, run_dir)
    with locked(run_dir):
        trainer = Trainer(model, train, test, config, run_dir, console, checkpoint_extra=_identity(run.raw))
        # Every check comes before the first file is touched: the checkpoint's fields...
        trainer.restore(state, source)
        done = trainer.position.epoch
        # ... and the metric lines, which must be this run's.
        records = read_metrics(run_dir)
        for record in records:
            if record["epoch"] <= done and record["step"] != record["epoch"] * trainer.steps_per_epoch:
                raise GenzooError(
                    f"{run_dir / METRICS} ends epoch {record['epoch']} at step {record['step']}, but an epoch of "
                    f"this run has {trainer.steps_per_epoch} steps: the file is not this run's"
                )
        for record in records:
            if trainer.position.step and record["epoch"] == done:
                _check_sums_of(record, trainer.position.sums, source)
        lost = lost_metrics(run_dir, records, done)
        if lost:
            warn(lost)
        _remove_stale_temporaries(run_dir)
        keep_metrics_through(run_dir, done)
        records = trainer.fit()
        save_pictures(model, test, run_dir, read_metrics(run_dir))
    return RunResult(run_dir, model, records)


def _check_sums_of(record: dict[str, Any], sums: dict[str, float], source: Path) -> None:
    """Mid-epoch sums must be of the names the last epoch's metric line reports (``train_*``)."""
    names = {key[len("train_"):] for key in record if key.startswith("train_")} - {"seconds", "images_per_s"}
    if set(sums) != names:
        raise GenzooError(f"{source} holds epoch sums of {sorted(sums)}, but epoch {record['epoch']} of this run "
                          f"reported {sorted(names)}; it is damaged or not from this run")


def finished_checkpoint(run_dir: Path, run: RunDescription, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint of the finished run in ``run_dir``, or an error saying how to finish it.

    A finished run's checkpoint holds its planned last epoch at step 0, and its
    position agrees with ``metrics.jsonl``: a crash between an epoch's metric line
    and its checkpoint leaves a checkpoint one epoch behind, which must not be
    reported as the finished run. Metric lines that are missing while the checkpoint
    is finished are lost, not unfinished work (see :func:`genzoo.runfiles.lost_metrics`).
    """
    source = run_dir / FILENAME
    state = load_checkpoint(source)
    check_matches(state, run.model, run.model_config, source, train_config=run.train_config.to_dict(),
                  sample_shape=list(run.sample_shape))
    check_finite_weights(state, source)
    planned = run.train_config.epochs
    position = Position.from_checkpoint(state.get("position"), planned, source)
    finish = f"finish it first (genzoo resume {run_dir})"
    listed = records[-1]["epoch"] if records else 0
    if listed > planned:
        raise GenzooError(f"{run_dir / METRICS} lists epoch {listed} of a {planned}-epoch run: "
                          "it is not this run's")
    if listed > position.epoch:
        raise GenzooError(f"run {run_dir} stopped before its last work was saved: its checkpoint holds epoch "
                          f"{position.epoch}, step {position.step}, but {METRICS} lists epoch {listed}; {finish}")
    if position.epoch < planned:
        raise GenzooError(f"run {run_dir} has finished {position.epoch} of {planned} epochs (its checkpoint "
                          f"holds epoch {position.epoch}, step {position.step}); {finish}")
    steps, uneven = divmod(position.global_step, planned)  # every epoch has the same number of steps
    if uneven:
        raise GenzooError(f"{source} holds an impossible training position ({planned} epochs in "
                          f"{position.global_step} steps); it is damaged or not from this run")
    for record in records:
        if record["step"] != record["epoch"] * steps:
            raise GenzooError(f"{source} holds {planned} epochs in {position.global_step} steps, but "
                              f"{run_dir / METRICS} ends epoch {record['epoch']} at step {record['step']}: "
                              "they are not of one run")
    return state


def load_model(run_dir: str | Path, device: str = "cpu", description: dict[str, Any] | None = None) -> Model:
    """The trained model of a finished run, from its checkpoint (loaded weights-only).

    ``description`` is the run's ``config.json`` when the caller has already read it.
    The checkpoint must hold the run's last epoch (:func:`finished_checkpoint`).
    """
    target = select_device(device)  # a bad device is refused before any file is read
    run_dir = Path(run_dir)
    run = read_run(run_dir) if description is None else RunDescription.from_json(description, run_dir / CONFIG)
    state = finished_checkpoint(run_dir, run, read_metrics(run_dir))
    model = registry().build_model(run.model, run.sample_shape, **run.model_config)
    try:
        model.load_state_dict(state["model_state"])
    except (KeyError, RuntimeError, TypeError, AttributeError) as exc:
        raise GenzooError(f"{run_dir / FILENAME} does not fit its model: {exc}".splitlines()[0]) from exc
    return model.to(target).eval()


def picture_names(model: type[Model]) -> list[str]:
    """The pictures :func:`save_pictures` draws for a finished run of ``model`` (so a missing one is noticed)."""
    return [*(["samples.png"] if model.can_sample else []),
            *(["reconstructions.png"] if model.can_reconstruct else []), "loss.png"]


def save_pictures(model: Model, test: Split, run_dir: Path, records: list[dict[str, Any]]) -> None:
    """``samples.png``, ``reconstructions.png`` and ``loss.png``, as the model allows."""
    name = type(model).__name__
    model.eval()
    with seeded(model.device, figures.PICTURE_SEED), torch.no_grad():
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
