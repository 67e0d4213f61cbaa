"""A local download mirror on 127.0.0.1, standing in for the internet (tests and .ci/run).

It serves ``<folder>/MNIST/*.gz`` (and ``FashionMNIST/*.gz``) in the layout genzoo
expects of ``$GENZOO_MIRROR``, made from IDX files already on disk: the shared MNIST
folder, and Debian's Fashion-MNIST package when it is installed. Re-compressing changes
the ``.gz`` files' MD5s, so downloads from it are accepted by the canonical content's
SHA-256, which is the same check a re-compressing real mirror meets.

Run as ``python tests/mirror_support.py MNIST_RAW_DIR MIRROR_DIR``: it builds the
mirror, prints its URL on one line, and serves until stopped.
"""

from __future__ import annotations

import functools
import gzip
import shutil
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def build_mirror(folder: Path, mnist_raw: Path) -> Path:
    """Gzip (or copy) the four MNIST files into ``folder/MNIST``, and Fashion-MNIST's when installed."""
    (folder / "MNIST").mkdir(parents=True, exist_ok=True)
    for name in FILES:
        target = folder / "MNIST" / f"{name}.gz"
        if (mnist_raw / f"{name}.gz").is_file():
            shutil.copyfile(mnist_raw / f"{name}.gz", target)
        else:
            target.write_bytes(gzip.compress((mnist_raw / name).read_bytes(), compresslevel=1, mtime=0))
    if all((DEBIAN_FASHION / f"{name}.gz").is_file() for name in FILES):
        (folder / "FashionMNIST").mkdir(exist_ok=True)
        for name in FILES:
            shutil.copyfile(DEBIAN_FASHION / f"{name}.gz", folder / "FashionMNIST" / f"{name}.gz")
    return folder


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No line per request on stderr."""


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up early (a HEAD request's reader) is no error of the mirror's."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``folder`` on a free port of 127.0.0.1 from a daemon thread; the server and its URL."""
    server = QuietServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


if __name__ == "__main__":
    built = build_mirror(Path(sys.argv[2]), Path(sys.argv[1]))
    running, url = serve(built)
    print(url, flush=True)
    threading.Event().wait()
