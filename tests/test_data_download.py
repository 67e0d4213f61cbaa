"""``genzoo data``: downloads through ``genzoo.download_file`` from a mirror on 127.0.0.1, verified by checksum.

The mirror (tests/mirror_support.py) serves gz files made from the MNIST files the
session already has, so the whole download path runs with no internet.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest
from genzoo_plugins.datasets.mnist import MNIST, FashionMNIST
from mirror_support import DEBIAN_FASHION, FILES, build_mirror, serve
from reliability_support import run_main

from genzoo.data import resolve_data_root
from genzoo.evaluation import weights


@pytest.fixture(scope="session")
def mirror_files(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mirror's files, built once: MNIST from the session's data folder (Fashion-MNIST when installed)."""
    return build_mirror(tmp_path_factory.mktemp("mirror"), mnist_root / "MNIST" / "raw")


def serve_copy(files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **replace: bytes) -> Path:
    """Serve a copy of the mirror with some files replaced (``name=bytes``), as ``$GENZOO_MIRROR``."""
    folder = tmp_path / "mirror"
    shutil.copytree(files, folder, copy_function=lambda src, dst: Path(dst).symlink_to(src))
    for name, content in replace.items():
        (folder / "MNIST" / f"{name}.gz").unlink()
        (folder / "MNIST" / f"{name}.gz").write_bytes(content)
    server, url = serve(folder)
    monkeypatch.setenv("GENZOO_MIRROR", url)
    return folder


@pytest.fixture
def mirror(mirror_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return serve_copy(mirror_files, tmp_path, monkeypatch)


def test_download_from_the_mirror_is_verified_and_loads(mirror, tmp_path, capsys):
    code, out, err = run_main(["data", "download", "mnist", "--data-root", str(tmp_path / "data")], capsys)
    assert code == 0, err
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted([*FILES, *(f"{n}.gz" for n in FILES)])
    assert out.count("content matches the canonical sha256") == 4
    assert f"Downloading {os.environ['GENZOO_MIRROR']}MNIST/train-images-idx3-ubyte.gz" in err
    assert len(MNIST(tmp_path / "data", download=False).load("test")) == 10_000
    code, out, err = run_main(["data", "check", "--data-root", str(tmp_path / "data")], capsys)
    assert code == 0 and out.count("ok       mnist:") == 4


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
@pytest.mark.parametrize("damage", ["other content", "truncated"])
def test_a_corrupted_file_on_the_mirror_is_refused_with_one_line_and_not_kept(
        mirror_files, tmp_path, monkeypatch, capsys, name, damage):
    good = (mirror_files / "MNIST" / f"{name}.gz").read_bytes()
    if damage == "truncated":
        bad = good[: len(good) // 2]
    else:
        content = bytearray(gzip.decompress(good))
        content[-1] ^= 0xFF  # one pixel or label changed
        bad = gzip.compress(bytes(content), compresslevel=1)
    serve_copy(mirror_files, tmp_path, monkeypatch, **{name: bad})
    data = tmp_path / "data"
    code, out, err = run_main(["data", "download", "mnist", "--data-root", str(data)], capsys)
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(errors) == 1 and "failed the checksum" in errors[0] and "not kept" in errors[0]
    assert "Traceback" not in err
    if name == FILES[0]:  # the first file: nothing at all was written, not even a folder
        assert not data.exists()
    else:  # the files verified before it stay; the refused one left nothing, nor its staging folder
        raw = data / "MNIST" / "raw"
        assert sorted(p.name for p in raw.iterdir()) == sorted(
            [*(n for n in FILES if n != name), *(f"{n}.gz" for n in FILES if n != name)])


def test_offline_train_says_so_in_one_line_and_leaves_no_empty_data_folder(chdir_tmp, monkeypatch, capsys):
    monkeypatch.delenv("GENZOO_DATA", raising=False)
    monkeypatch.delenv("GENZOO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(chdir_tmp / "cache"))
    (chdir_tmp / "empty-mirror").mkdir()
    server, url = serve(chdir_tmp / "empty-mirror")
    server.shutdown()
    server.server_close()  # nothing listens there any more: a refused connection, as offline
    monkeypatch.setenv("GENZOO_MIRROR", url)
    for args in (["--data-root", "data"], []):
        code, out, err = run_main(["train", "vae", "--epochs", "1", "--out", "run", *args], capsys)
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert code == 1 and len(errors) == 1 and "download failed" in errors[0], err
        assert "GENZOO_DATA" in errors[0] and "Traceback" not in err
    assert not (chdir_tmp / "data").exists() and not (chdir_tmp / "cache" / "genzoo").exists()
    assert not (chdir_tmp / "run").exists()


def test_fashion_mnist_downloads_from_the_mirror(mirror, tmp_path, capsys, monkeypatch):
    if not (mirror / "FashionMNIST").is_dir():
        pytest.skip(f"Fashion-MNIST's files are not installed ({DEBIAN_FASHION}: apt-get install dataset-fashion-mnist)")
    monkeypatch.setattr(FashionMNIST, "system_dirs", ())  # from the mirror, not the system package
    code, out, err = run_main(["data", "download", "fashion-mnist", "--data-root", str(tmp_path)], capsys)
    assert code == 0, err
    assert out.count("content matches the canonical sha256") == 4
    assert len(FashionMNIST(tmp_path, download=False).load("test")) == 10_000


def test_inception_weights_that_fail_the_published_hash_are_refused_and_not_kept(mirror, tmp_path, monkeypatch,
                                                                                  capsys):
    (mirror / weights.INCEPTION_FILE).write_bytes(b"not the weights")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, out, err = run_main(["data", "download", "inception"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(errors) == 1, err
    assert "download failed (failed the checksum" in errors[0] and weights.INCEPTION_SHA256_PREFIX in errors[0]
    assert os.environ["GENZOO_MIRROR"] + weights.INCEPTION_FILE in errors[0]
    assert not (tmp_path / "torch").exists()


def test_check_names_a_file_that_fails_its_checksum(tmp_path, capsys):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\0")
    code, out, err = run_main(["data", "check", "--data-root", str(tmp_path)], capsys)
    assert code == 1 and "Error: a file failed its checksum" in err
    assert f"MISMATCH mnist: {raw / 't10k-labels-idx1-ubyte'}: content differs from the canonical sha256" in out
    assert f"-        mnist: {raw / 'train-images-idx3-ubyte'}: missing" in out


def test_where_lists_the_folders_in_precedence_order(chdir_tmp, monkeypatch, capsys):
    monkeypatch.delenv("GENZOO_DATA", raising=False)
    monkeypatch.delenv("GENZOO_MIRROR", raising=False)
    monkeypatch.delenv("GENZOO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(chdir_tmp / "cache"))
    cache = chdir_tmp / "cache" / "genzoo" / "data"
    assert resolve_data_root() == cache
    code, out, err = run_main(["data", "where"], capsys)
    assert code == 0 and f"user cache     {cache}  <- used" in out and "upstream (set $GENZOO_MIRROR)" in out
    (chdir_tmp / "data").mkdir()
    assert resolve_data_root() == Path("data")
    monkeypatch.setenv("GENZOO_DATA", "env")
    assert resolve_data_root() == Path("env") and resolve_data_root("given") == Path("given")
    monkeypatch.setenv("GENZOO_MIRROR", "http://mirror.example/files")
    code, out, err = run_main(["data", "where", "--data-root", "given"], capsys)
    lines = out.splitlines()
    assert lines[:4] == ["--data-root    given  <- used", "$GENZOO_DATA   env", "./data         data",
                         f"user cache     {cache}"]
    assert "http://mirror.example/files/  ($GENZOO_MIRROR)" in out
    assert f"http://mirror.example/files/{weights.INCEPTION_FILE}" in out


def test_an_unknown_name_is_refused_before_anything_is_downloaded(mirror, tmp_path, capsys):
    code, out, err = run_main(["data", "download", "mnist", "mnits", "--data-root", str(tmp_path / "data")], capsys)
    assert code == 1 and err.startswith("Error: unknown dataset 'mnits'; did you mean 'mnist'?") and err.count("\n") == 1
    assert not (tmp_path / "data").exists()


def test_a_dataset_folder_that_is_a_file_is_one_line(mirror, tmp_path, capsys):
    (tmp_path / "MNIST").write_text("not a folder")
    code, out, err = run_main(["data", "download", "mnist", "--data-root", str(tmp_path)], capsys)
    raw = tmp_path / "MNIST" / "raw"
    assert code == 1 and err.count("\n") == 1 and err.startswith(f"Error: cannot write into {raw}: "), err
    assert (tmp_path / "MNIST").read_text() == "not a folder"
