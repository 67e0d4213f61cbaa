"""Found by the fifth look (fourth hostile pass): downloads that never end, export digests and folders, data digests.

Each test failed before its fix (see docs/reliability.md, "Found by the fifth look").
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

import pytest
from reliability_support import run_main

import genzoo.data
from genzoo.evaluation import weights

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
