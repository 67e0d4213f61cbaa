"""Sixth look (fifth hostile pass), F1: downloads that trickle, never end, or declare too much.

Each server is a local socket thread; the bounds (``DOWNLOAD_GRACE``, ``DOWNLOAD_MIN_RATE``,
the size caps) are patched small so that each test ends in about a second.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest
from reliability_support import run_main

import genzoo.data
from genzoo.evaluation import weights

HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"


def trickle(connection: socket.socket) -> None:
    """Declares 1,000 bytes, then sends one every 0.1 s: never silent, never done."""
    connection.sendall(HEADERS + b"Content-Length: 1000\r\n\r\n")
    for _ in range(1000):
        connection.sendall(b"\x1f")
        time.sleep(0.1)


def trickled_headers(connection: socket.socket) -> None:
    """Sends its status line and headers one byte every 0.1 s: never silent, never a body."""
    for byte in HEADERS * 100:
        connection.sendall(bytes([byte]))
        time.sleep(0.1)


def endless(connection: socket.socket) -> None:
    """No Content-Length, 64 KiB after 64 KiB for ever."""
    connection.sendall(HEADERS + b"\r\n")
    while True:
        connection.sendall(b"\0" * 65536)


def oversized(connection: socket.socket) -> None:
    """Declares a terabyte; sends a little and keeps the connection open."""
    connection.sendall(HEADERS + b"Content-Length: 1000000000000\r\n\r\n" + b"\0" * 1000)
    time.sleep(5)


def serve(behaviour: Callable[[socket.socket], None]) -> str:
    """A server on 127.0.0.1 that answers every request with ``behaviour``; its URL."""
    listener = socket.create_server(("127.0.0.1", 0))

    def handle(connection: socket.socket) -> None:
        try:
            connection.recv(65536)
            behaviour(connection)
        except OSError:
            pass
        finally:
            connection.close()

    def accept() -> None:
        while True:
            connection, _ = listener.accept()
            threading.Thread(target=handle, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/"


@pytest.fixture
def bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rate check after 0.5 s, at 1,000 bytes/s; a silence timeout long beside it."""
    monkeypatch.setattr(genzoo.data, "DOWNLOAD_GRACE", 0.5)
    monkeypatch.setattr(genzoo.data, "DOWNLOAD_MIN_RATE", 1000.0)
    monkeypatch.setattr(genzoo.data, "DOWNLOAD_TIMEOUT", 10.0)
    monkeypatch.setattr(genzoo.data, "DOWNLOAD_HEADER_DEADLINE", 1.0)


def failed(code: int, err: str, *words: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(errors) == 1, err
    assert "Traceback" not in err
    assert "the download failed" in errors[0] and all(w in errors[0] for w in words), errors[0]
    return errors[0]


@pytest.mark.usefixtures("bounds")
def test_a_trickling_dataset_download_is_given_up_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENZOO_MIRROR", serve(trickle))
    data = tmp_path / "data"
    code, _, err = run_main(["data", "download", "mnist", "--data-root", str(data)], capsys)
    failed(code, err, "too slow", "bytes/s")
    assert not data.exists()


@pytest.mark.usefixtures("bounds")
def test_a_trickling_inception_download_is_given_up_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENZOO_MIRROR", serve(trickle))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, _, err = run_main(["data", "download", "inception"], capsys)
    failed(code, err, "Inception weights", "too slow")
    assert not (tmp_path / "torch").exists()


@pytest.mark.usefixtures("bounds")
def test_an_endless_dataset_download_stops_at_the_cap_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENZOO_MIRROR", serve(endless))
    data = tmp_path / "data"
    code, _, err = run_main(["data", "download", "mnist", "--data-root", str(data)], capsys)
    failed(code, err, "more than the", "cut off")
    assert not data.exists()


@pytest.mark.usefixtures("bounds")
def test_an_endless_inception_download_stops_at_the_cap(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(weights, "INCEPTION_MAX_BYTES", 1_000_000)
    monkeypatch.setenv("GENZOO_MIRROR", serve(endless))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, _, err = run_main(["data", "download", "inception"], capsys)
    failed(code, err, "Inception weights", "1,000,000", "cut off")
    assert not (tmp_path / "torch").exists()


@pytest.mark.usefixtures("bounds")
@pytest.mark.parametrize("what", ["mnist", "inception"])
def test_a_declared_length_over_the_cap_is_refused_before_reading(what, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENZOO_MIRROR", serve(oversized))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    data = tmp_path / "data"
    code, _, err = run_main(["data", "download", what, "--data-root", str(data)], capsys)
    failed(code, err, "1,000,000,000,000 bytes", "nothing was read")
    assert not data.exists() and not (tmp_path / "torch").exists()


def test_a_short_download_or_a_wrong_checksum_is_not_kept(tmp_path):
    url = serve(lambda c: c.sendall(HEADERS + b"Content-Length: 10\r\n\r\nabcd"))
    with pytest.raises(genzoo.GenzooError, match="closed after 4 of the 10 bytes"):
        genzoo.data.download_file(url, tmp_path / "f", 100)
    url = serve(lambda c: c.sendall(HEADERS + b"Content-Length: 4\r\n\r\nabcd"))
    with pytest.raises(genzoo.GenzooError, match="failed the checksum"):
        genzoo.data.download_file(url, tmp_path / "f", 100, sha256_prefix="00000000")
    assert not any(tmp_path.iterdir())
    genzoo.data.download_file(url, tmp_path / "f", 100, sha256_prefix="88d4266f")  # sha256("abcd")
    assert (tmp_path / "f").read_bytes() == b"abcd" and [p.name for p in tmp_path.iterdir()] == ["f"]


@pytest.mark.usefixtures("bounds")
def test_a_download_whose_headers_trickle_is_given_up_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """Found after the fifth pass's fix: the rate check starts with the body, so trickled headers hung."""
    monkeypatch.setenv("GENZOO_MIRROR", serve(trickled_headers))
    data = tmp_path / "data"
    code, _, err = run_main(["data", "download", "mnist", "--data-root", str(data)], capsys)
    failed(code, err, "no complete response headers within 1 s")
    assert not data.exists()
