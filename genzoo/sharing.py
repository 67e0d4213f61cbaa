"""A finished run's model taken outside genzoo: samples as a picture or a tensor file, weights as safetensors.

Neither changes the run (a sample picture is written beside its files by default) and neither overwrites
anything: an existing output is refused.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from genzoo import figures
from genzoo.building import build_sampler, finished_checkpoint, load_model, run_training_split
from genzoo.checkpoint import WEIGHTS_FILENAME, save_weights
from genzoo.checks import check_pixels, kept_copy, printable
from genzoo.errors import GenzooError, warn
from genzoo.files import atomic_write, cannot_write, others_can_change, plain_path
from genzoo.model import Model
from genzoo.run_folder import lost_metrics, metric_lines, read_run, staged_run_dir, write_config, write_metrics
from genzoo.sampler import Sampler, drawn_by
from genzoo.seeding import seeded

#: What ``genzoo sample --out`` can write, by the file's suffix.
SAMPLE_FORMATS = (".png", ".npz", ".safetensors")
#: An export's format; safetensors is the one there is.
EXPORT_FORMATS = ("safetensors",)


def _npz(images: np.ndarray) -> bytes:
    """``images`` as an ``.npz`` holding ``images.npy``, byte for byte the same for the same array.

    ``numpy.savez`` stamps the zip entry with the time; here it is fixed, and no pickle is written.
    """
    array = io.BytesIO()
    np.lib.format.write_array(array, images, allow_pickle=False)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(zipfile.ZipInfo("images.npy", date_time=(1980, 1, 1, 0, 0, 0)), array.getvalue())
    return out.getvalue()


def sample_run(run_dir: str | Path, n: int, seed: int, out: str | Path | None = None,
               sampler: str | None = None, data_root: str | None = None) -> Path:
    """Draw ``n`` samples of the finished run's model under ``seed`` into ``out``; return its path.

    ``sampler`` names a registered sampler (default: the model's ``default_sampler``); one that fits
    to the training codes (``gmm``) loads the run's training split (``data_root`` or the run's own).

    ``out`` ends in ``.png`` (a grid), ``.npz`` (``images``, float32 ``(n, C, H, W)`` in [0, 1]) or
    ``.safetensors`` (the same tensor as ``images``); by default it is ``RUN/samples-seedS-nN.png``.
    The same seed gives the same bytes in a tensor file.
    """
    run_dir = Path(run_dir)
    path = plain_path(out) if out is not None else run_dir / f"samples-seed{seed}-n{n}.png"
    if path.suffix not in SAMPLE_FORMATS:
        raise GenzooError(f"{path}: the output's suffix says its format; use one of {', '.join(SAMPLE_FORMATS)}")
    if os.path.lexists(path):
        raise GenzooError(f"{path} already exists; genzoo never overwrites it: choose another --out")
    problem = others_can_change(path.parent)  # the rule of every other --out: they could swap the file later
    if problem is not None:
        raise GenzooError(f"samples file {path} {problem}, so another user could replace it; choose a folder "
                          "only you can write (--out)")
    run = read_run(run_dir)
    problem = cannot_write(path.parent)  # before drawing (and fitting), not after: the samples would be lost
    if problem is not None:
        where = "the run folder, where the samples go by default" if out is None else "folder"
        raise GenzooError(f"cannot write {path.name} into {where} {printable(str(path.parent))} ({problem}); "
                          "give --out a file in a folder you can write")
    model = load_model(run_dir, description=run.raw)
    drawer = build_sampler(model, run.model, sampler,
                           lambda: run_training_split(run_dir, run.raw, model.device, data_root))
    name = sampler or model.default_sampler
    images = draw_samples(drawer, n, seed, run.model)
    if path.suffix == ".png":
        figures.save_samples(images, path, f"{run.model}: {n} samples ({name}), seed {seed}")
    elif path.suffix == ".npz":
        data = _npz(images.numpy())
        atomic_write(path, lambda f: f.write(data))
    else:
        from safetensors.torch import save

        # One metadata key: safetensors writes several in no fixed order, which would change the bytes.
        data = save({"images": images},
                    metadata={"genzoo": json.dumps({"model": run.model, "sampler": name, "seed": seed})})
        atomic_write(path, lambda f: f.write(data))
    return path


def draw_samples(sampler: Sampler | Model, n: int, seed: int, who: str) -> torch.Tensor:
    """``n`` samples under ``seed``, as float32 on the CPU; samples that are no pixels are one line, never a file."""
    with seeded(sampler.device, seed), torch.no_grad():
        return check_pixels(kept_copy(sampler.sample(n)).contiguous(), who, drawn_by(sampler))


def export_run(run_dir: str | Path, format: str = "safetensors", out: str | Path | None = None) -> Path:
    """Copy the finished run's weights (as safetensors), ``config.json`` and ``metrics.jsonl`` into ``out``.

    The folder is a run folder without training state: ``load_model``, ``genzoo eval`` and
    ``genzoo sample`` read it as they read the run, and nothing on that path unpickles.
    ``out`` defaults to ``RUN-export`` beside the run and must be new or an empty folder.
    The files are written into a temporary folder beside ``out`` and renamed onto it when
    all are written, so a failure (a full disk, Ctrl-C) leaves neither a half-written
    export nor a folder it created.
    """
    if format not in EXPORT_FORMATS:
        raise GenzooError(f"unknown export format {format!r} (available: {', '.join(EXPORT_FORMATS)})")
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    lines = metric_lines(run_dir, run.run_id)  # as written: each names its run
    state = finished_checkpoint(run_dir, run, lines)  # only a finished run, checked, is exported
    lost = lost_metrics(run_dir, lines, run.raw["train_config"]["epochs"])
    if lost:  # the copy holds what is left, as eval and resume say (twenty-fourth pass, files M6)
        warn(lost.replace("genzoo goes on from it", "the export holds its weights"))
    wanted = Path(out) if out is not None else _beside(run_dir, "-export")

    def write(staging: Path) -> None:
        write_config(staging, run.raw)
        write_metrics(staging, lines)
        save_weights(staging / WEIGHTS_FILENAME, state)

    return staged_run_dir(run.model, wanted, "export", write, what="export folder")


def _beside(run_dir: Path, suffix: str) -> Path:
    """The folder beside the run folder named as it is with ``suffix``; a RUN_DIR that names no folder of its own
    (``.``, ``RUN/sub/..``) is the folder it leads to (``genzoo export .`` was a ``ValueError`` traceback)."""
    run = plain_path(run_dir)
    if not run.name:
        run = Path(os.path.realpath(run))
    return run.with_name(run.name + suffix)
