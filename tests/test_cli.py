"""`genzoo train` end to end on a small subset, and its one-line errors."""

from __future__ import annotations

import json

import pytest

from genzoo.cli import main


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_train_writes_a_complete_run_folder(chdir_tmp, capsys):
    code, out, err = run_cli(
        ["train", "vae", "--latent", "8", "--epochs", "2", "--train-limit", "600",
         "--test-limit", "200", "--seed", "5", "--out", "myrun"], capsys)
    assert code == 0, err
    run = chdir_tmp / "myrun"
    assert "run folder: myrun" in out and "final test metrics (epoch 2" in out
    assert "nelbo" in out
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "samples.png", "reconstructions.png", "loss.png"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["model_config"]["latent"] == 8 and config["train_config"]["seed"] == 5
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert "epoch 2/2" in err  # the progress bar went to stderr


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_train_never_reuses_an_existing_run_folder(chdir_tmp, capsys):
    (chdir_tmp / "taken").mkdir()
    (chdir_tmp / "taken" / "notes.txt").write_text("mine")
    code, out, err = run_cli(["train", "ae", "--epochs", "1", "--train-limit", "200", "--out", "taken"], capsys)
    assert code != 0
    assert err.startswith("Error: ") and "already exists" in err
    assert (chdir_tmp / "taken" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (chdir_tmp / "taken").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "vea"], "did you mean 'vae'"),
        (["train", "vae", "--latent", "0"], "--latent"),
        (["train", "vae", "--latent", "four"], "--latent"),
        (["train", "vae", "--lr", "nan"], "--lr"),
        (["train", "vae", "--dataset", "mnits"], "did you mean 'mnist'"),
        (["train", "vae", "--device", "tpu"], "unknown device"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(args, needle, chdir_tmp, capsys):
    code, out, err = run_cli(args, capsys)
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("Error: ") and needle in err
    assert "Traceback" not in err
    assert not (chdir_tmp / "runs").exists()


def test_missing_data_names_the_folder_and_how_to_point_at_files(chdir_tmp, capsys):
    code, out, err = run_cli(["train", "vae", "--data-root", "nowhere", "--no-download"], capsys)
    assert code != 0
    assert len(err.strip().splitlines()) == 1, err
    assert "nowhere/MNIST/raw" in err and "--data-root" in err and "GENZOO_DATA" in err
    assert not (chdir_tmp / "runs").exists()
