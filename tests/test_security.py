"""Security: checkpoints never run code, mismatched checkpoints are named, paths stay put."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    SteeredPlugin,
    SteeredVAE,
    assert_one_line_error,
    data_root,
    one_thread,
    reset_steering,
    run_main,
    snapshot,
)

from genzoo import GenzooError
from genzoo.building import load_model
from genzoo.checkpoint import FILENAME, FORMAT, VERSION, load_checkpoint
from genzoo.run_folder import METRICS, append_metrics, read_metrics
from genzoo.train_config import TrainConfig
from genzoo.trainer import Interrupted
from genzoo.training import resume_run, start_run


def finished_run(data_root: Path, out: Path, model: str = "vae", batch_size: int = 10, **options: Any) -> Path:
    """A one-epoch run on the fake data, small enough to take a second."""
    options = {"latent": 2, "hidden": 16, **options}
    config = TrainConfig(model=model, epochs=1, batch_size=batch_size, device="cpu",
                         data_root=str(data_root), test_limit=20)
    return start_run(config, options, out=out).run_dir


# -- checkpoints that would run code -------------------------------------------------


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``: code run by merely loading a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("kind", ["torch-zip", "raw-pickle"])
def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / FILENAME
    evil = {"format": FORMAT, "version": VERSION, "model_state": Payload(marker)}
    if kind == "torch-zip":
        torch.save(evil, path)
    else:
        path.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(GenzooError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"refusing to load {path}: ") and "could run code" in message
    assert "\n" not in message
    assert not marker.exists()
    # The payload is live: an unsafe load (which genzoo never does) would have run it.
    if kind == "torch-zip":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.is_dir()


def test_resume_and_load_model_refuse_a_booby_trapped_checkpoint(data_root, tmp_path, capsys):
    run = finished_run(data_root, tmp_path / "run")
    marker = tmp_path / "pwned"
    torch.save({"format": FORMAT, "version": VERSION, "model": "vae", "model_state": Payload(marker)},
               run / FILENAME)
    before = snapshot(tmp_path)
    code, out, err = run_main(["resume", str(run)], capsys)
    line = assert_one_line_error(code, err, "refusing to load", "posix.mkdir", "could run code")
    assert "weights_only=False" not in line  # no advice to load it unsafely
    with pytest.raises(GenzooError, match="refusing to load"):
        load_model(run)
    assert not marker.exists()
    assert snapshot(tmp_path) == before


# -- checkpoints for something else --------------------------------------------------


def test_a_checkpoint_of_another_latent_size_names_the_difference(data_root, tmp_path, capsys):
    two = finished_run(data_root, tmp_path / "two", latent=2)
    three = finished_run(data_root, tmp_path / "three", latent=3)
    shutil.copy(two / FILENAME, three / FILENAME)
    code, out, err = run_main(["resume", str(three)], capsys)
    assert_one_line_error(code, err, "was saved with another vae config", "latent 2 vs 3")
    with pytest.raises(GenzooError, match="latent 2 vs 3"):
        load_model(three)


def test_a_checkpoint_of_another_model_names_both(data_root, tmp_path, capsys):
    ae = finished_run(data_root, tmp_path / "ae", model="ae", prior_components=2)
    vae = finished_run(data_root, tmp_path / "vae")
    shutil.copy(ae / FILENAME, vae / FILENAME)
    code, out, err = run_main(["resume", str(vae)], capsys)
    assert_one_line_error(code, err, "holds a 'ae' model, not 'vae'")
    with pytest.raises(GenzooError, match="holds a 'ae' model, not 'vae'"):
        load_model(vae)


def test_a_checkpoint_of_another_format_version_names_both_versions(data_root, tmp_path, capsys):
    run = finished_run(data_root, tmp_path / "run")
    state = torch.load(run / FILENAME, weights_only=True)
    state.update(version=VERSION + 98)
    torch.save(state, run / FILENAME)
    code, out, err = run_main(["resume", str(run)], capsys)
    assert_one_line_error(code, err, f"format version {VERSION + 98}", f"this genzoo reads version {VERSION}")


def test_a_checkpoint_from_other_training_settings_is_not_resumed(data_root, tmp_path, capsys):
    """Its position (step 7 of an epoch) means nothing under another batch size."""
    ten = finished_run(data_root, tmp_path / "ten", batch_size=10)
    twenty = finished_run(data_root, tmp_path / "twenty", batch_size=20)
    shutil.copy(ten / FILENAME, twenty / FILENAME)
    code, out, err = run_main(["resume", str(twenty)], capsys)
    assert_one_line_error(code, err, "other training settings", "batch_size 10 vs 20")


def test_a_plain_state_dict_is_not_a_genzoo_checkpoint(data_root, tmp_path, capsys):
    run = finished_run(data_root, tmp_path / "run")
    torch.save(load_model(run).state_dict(), run / FILENAME)
    code, out, err = run_main(["resume", str(run)], capsys)
    assert_one_line_error(code, err, "is not a genzoo checkpoint")


# -- paths -----------------------------------------------------------------------------


def test_an_existing_run_folder_or_file_is_never_overwritten(data_root, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "checkpoint.pt").write_bytes(b"someone's weeks of training")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    before = snapshot(tmp_path)
    for out in (taken, a_file):
        code, _, err = run_main(["train", "vae", "--epochs", "1", "--batch-size", "10", "--data-root",
                                 str(data_root), "--out", str(out)], capsys)
        assert_one_line_error(code, err, f"{out} already exists and is not an empty folder")
    assert snapshot(tmp_path) == before


def test_default_run_folders_never_collide(data_root, chdir_tmp, monkeypatch):
    monkeypatch.setattr("genzoo.run_folder.time.strftime", lambda fmt: "20990101-000000")
    first = finished_run(data_root, None)
    mark = snapshot(first)
    second = finished_run(data_root, None)
    assert (first, second) == (Path("runs/vae-20990101-000000"), Path("runs/vae-20990101-000000-1"))
    assert snapshot(first) == mark


def test_paths_are_used_as_given(data_root, chdir_tmp, capsys):
    """No ``~`` or variable expansion, no resolving elsewhere: the folder named is the folder used."""
    code, out, err = run_main(["train", "vae", "--latent", "2", "--epochs", "1", "--batch-size", "10",
                               "--data-root", str(data_root), "--test-limit", "20",
                               "--out", "~nobody/$HOME/run"], capsys)
    assert code == 0, err
    assert (chdir_tmp / "~nobody" / "$HOME" / "run" / FILENAME).is_file()
    assert "run folder: ~nobody/$HOME/run" in out


def test_resume_writes_nothing_outside_its_run_folder(data_root, tmp_path, genzoo_register):
    reset_steering()
    genzoo_register(SteeredPlugin(), "steered")
    SteeredVAE.interrupt_at = 4
    config = TrainConfig(model="steered-vae", epochs=2, batch_size=10, device="cpu",
                         data_root=str(data_root), test_limit=20)
    with pytest.raises(Interrupted):
        start_run(config, {"latent": 2, "hidden": 16}, out=tmp_path / "run")
    reset_steering()
    (tmp_path / "elsewhere.txt").write_text("untouched")
    outside = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("run/")}
    resume_run(tmp_path / "run")
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("run/")} == outside
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2]


def test_a_symlinked_metrics_file_is_refused_not_followed(data_root, tmp_path, capsys):
    """A run folder from someone else could point metrics.jsonl at a file of yours."""
    run = finished_run(data_root, tmp_path / "run")
    precious = tmp_path / "bashrc"
    precious.write_text("export PATH=...\n")
    (run / METRICS).unlink()
    (run / METRICS).symlink_to(precious)
    with pytest.raises(GenzooError, match="cannot append to .*metrics.jsonl"):
        append_metrics(run, {"epoch": 9})
    code, out, err = run_main(["resume", str(run)], capsys)
    assert_one_line_error(code, err, "is a symbolic link")
    assert precious.read_text() == "export PATH=...\n"
