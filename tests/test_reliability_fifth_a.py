"""Found by the fifth look (fourth hostile pass): downloads that never end, export digests and folders, data digests.

Each test failed before its fix (see docs/reliability.md, "Found by the fifth look").
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from reliability_support import assert_one_line_error, idx_bytes, run_main, snapshot, write_fake_mnist
from safetensors.torch import load, save
from test_security import finished_run

import genzoo
import genzoo.data
from genzoo.checkpoint import TENSORS_SHA256, WEIGHTS_FILENAME
from genzoo.evaluation import weights

EVAL = ["--fid-samples", "0", "--iwae-k", "2", "--device", "cpu"]
#: How long the silent server holds a connection before it hangs up: long beside the
#: timeouts the tests set, so only a timeout ends a download first.
HOLD_SECONDS = 20.0


def silent_server() -> str:
    """A server on 127.0.0.1 that accepts every connection and never answers (it hangs up after HOLD_SECONDS)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            connection, _ = listener.accept()
            timer = threading.Timer(HOLD_SECONDS, connection.close)
            timer.daemon = True
            timer.start()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/"


@pytest.fixture
def silent_mirror(monkeypatch: pytest.MonkeyPatch) -> str:
    """``$GENZOO_MIRROR`` that never answers, and a download timeout of half a second."""
    url = silent_server()
    monkeypatch.setenv("GENZOO_MIRROR", url)
    monkeypatch.setattr(genzoo.data, "DOWNLOAD_TIMEOUT", 0.5)
    return url


def timed_out(code: int, err: str) -> str:
    """The one ``Error:`` line of a download that timed out (progress lines before it are allowed)."""
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(errors) == 1, err
    assert "Traceback" not in err
    assert "download" in errors[0] and "timed out" in errors[0], errors[0]
    return errors[0]


# -- F1: a download that never answers ------------------------------------------------------


def test_a_dataset_download_that_never_answers_times_out_in_one_line(silent_mirror, tmp_path, capsys):
    data = tmp_path / "data"
    code, _, err = run_main(["data", "download", "mnist", "--data-root", str(data)], capsys)
    timed_out(code, err)
    assert not data.exists()


def test_train_whose_data_download_never_answers_times_out_and_makes_no_run(silent_mirror, tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--data-root", str(data), "--train-limit", "20", "--test-limit", "10",
                             "--epochs", "1", "--batch-size", "10", "--out", str(out)], capsys)
    assert "mnist files not found" in timed_out(code, err)
    assert not data.exists() and not out.exists()


def test_an_inception_download_that_never_answers_times_out_and_leaves_no_folder(silent_mirror, tmp_path,
                                                                                 monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, _, err = run_main(["data", "download", "inception"], capsys)
    assert "Inception weights" in timed_out(code, err)
    assert not (tmp_path / "torch").exists()


def test_sigterm_during_the_inception_download_leaves_no_folder(silent_mirror, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(genzoo.data, "DOWNLOAD_TIMEOUT", HOLD_SECONDS)  # the signal comes first
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    target = weights.inception_target

    def target_then_stop() -> Path:  # once the download is about to start, a SIGTERM in half a second
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()
        return target()

    monkeypatch.setattr(weights, "inception_target", target_then_stop)
    code, _, err = run_main(["data", "download", "inception"], capsys)
    assert code == 128 + signal.SIGTERM and err.rstrip().endswith("Aborted."), err
    assert "Traceback" not in err
    assert not (tmp_path / "torch").exists()


# -- F2: an export's digest binds each tensor's name to its bytes -----------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch VAE run on fake data, exported: every test here reads a copy."""
    root = tmp_path_factory.mktemp("fifth-export")
    torch.set_num_threads(1)
    run = finished_run(write_fake_mnist(root / "data"), root / "run")
    code = export_code(["export", str(run), "--format", "safetensors", "--out", str(root / "export")])
    assert code == 0
    return root / "export"


def export_code(args: list[str]) -> int:
    from genzoo.cli import main

    with pytest.raises(SystemExit) as info:
        main(args)
    return int(info.value.code or 0)


def header_of(path: Path) -> tuple[dict[str, Any], bytes]:
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + size]), data[8 + size:]


def write_header(path: Path, header: dict[str, Any], body: bytes) -> None:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + body)


def swap_heads(path: Path) -> None:
    """The hostile pass's edit: mu_head's and logvar_head's byte ranges swapped in the header, bytes untouched."""
    header, body = header_of(path)
    for part in ("weight", "bias"):
        a, b = header[f"mu_head.{part}"], header[f"logvar_head.{part}"]
        a["data_offsets"], b["data_offsets"] = b["data_offsets"], a["data_offsets"]
    write_header(path, header, body)


def test_an_export_whose_header_swaps_two_tensors_is_refused_in_one_line(exported, tmp_path, capsys):
    copy = tmp_path / "swapped"
    shutil.copytree(exported, copy)
    swap_heads(copy / "model.safetensors")
    for args in (["eval", str(copy), "--fid-samples", "0", "--device", "cpu"],
                 ["sample", str(copy), "--out", str(tmp_path / "s.npz")]):
        code, _, err = run_main(args, capsys)
        assert_one_line_error(code, err, "model.safetensors is not a genzoo weights file", "damaged or changed")
    assert not (copy / "eval.json").exists() and not (tmp_path / "s.npz").exists()
    with pytest.raises(genzoo.GenzooError, match="damaged or changed"):
        genzoo.load_model(copy)


def test_an_export_from_before_the_tensor_table_was_digested_is_refused_with_how_to_export_again(
        exported, tmp_path, capsys):
    copy = tmp_path / "older"
    shutil.copytree(exported, copy)
    path = copy / "model.safetensors"
    header, body = header_of(path)
    metadata = {k: v for k, v in header["__metadata__"].items() if k != TENSORS_SHA256}
    metadata["sha256"] = hashlib.sha256(body).hexdigest()  # what genzoo wrote before: the bytes only
    path.write_bytes(save(load(path.read_bytes()), metadata=metadata))
    code, _, err = run_main(["sample", str(copy), "--out", str(tmp_path / "s.npz")], capsys)
    assert_one_line_error(code, err, "older genzoo", "export the run again")


# -- an export that fails halfway leaves nothing ----------------------------------------------


@pytest.mark.parametrize("given", ["new folder", "empty folder"])
def test_an_export_whose_weights_cannot_be_written_leaves_nothing(exported, tmp_path, monkeypatch, capsys, given):
    run = exported.parent / "run"
    out = tmp_path / "missing" / "export" if given == "new folder" else tmp_path / "empty"
    if given == "empty folder":
        out.mkdir()
    real_fsync = os.fsync

    def disk_full_at_the_weights(fd: int) -> None:
        if WEIGHTS_FILENAME in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full_at_the_weights)
    code, _, err = run_main(["export", str(run), "--format", "safetensors", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "No space left on device", WEIGHTS_FILENAME)
    if given == "empty folder":  # the user's folder stays, as empty as it was
        assert list(tmp_path.iterdir()) == [out] and list(out.iterdir()) == []
    else:
        assert list(tmp_path.iterdir()) == []


# -- one policy for data other than the run's ------------------------------------------------


@pytest.fixture(scope="module")
def other_data(exported: Path) -> Path:
    """A data folder like the run's whose test images differ (the train images are the same)."""
    other = Path(shutil.copytree(exported.parent / "data", exported.parent / "other"))
    images = torch.randint(0, 256, (40, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    (other / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    return other


@pytest.mark.parametrize("command", [["eval", *EVAL], ["eval", *EVAL, "--test-limit", "5"], ["resume"]])
def test_eval_and_resume_refuse_test_data_other_than_the_run_s_alike(exported, other_data, tmp_path, capsys,
                                                                     command):
    run = Path(shutil.copytree(exported.parent / "run", tmp_path / "run"))
    (run / "eval.json").unlink(missing_ok=True)
    before = snapshot(run)
    code, _, err = run_main([command[0], str(run), "--data-root", str(other_data), *command[1:]], capsys)
    assert_one_line_error(code, err, f"the test data found now differ from those run {run} was trained and tested on",
                          "config.json", "--data-root")
    assert snapshot(run) == before


def test_eval_of_a_run_from_before_data_digests_measures_whatever_test_data_it_finds(exported, other_data, tmp_path,
                                                                                    capsys):
    run = Path(shutil.copytree(exported.parent / "run", tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    del config["data_sha256"]
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_main(["eval", str(run), "--data-root", str(other_data), *EVAL], capsys)
    assert code == 0 and (run / "eval.json").is_file(), err
