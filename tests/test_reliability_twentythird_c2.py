"""Found by the twentieth hostile pass (files: F4, M1-M4): a number of other feature weights taken, and lines untrue.

F4: ``benchmarks/leaderboard.py`` took an FID that ``eval.json`` held from other extractor weights (another
Inception file, another ``$TORCH_HOME``, an older genzoo's MNIST classifier) as one it measured itself: it now
compares the record's extractor, weights digest included, with the one it measures with and measures again when
they differ. M1: ``GENZOO_CACHE=RUN/new/..`` (``new`` missing) left an empty ``fid/`` in ``RUN`` and refused the
cache: the variable is taken without its ``..`` (``files.plain_path``), as every ``--out`` is. M2: a ``.gz`` that
holds less than its IDX header declares was unpacked and the short file left beside it, blamed on the unpacked
file; a ``.gz`` that is no gzip was a failed write. M3: ``genzoo data check`` called a FIFO at a data ``.gz`` or
at the Inception weights' path "missing". M4: an upper-case ``run_id`` was "not 32 hexadecimal digits". Each test
failed before its fix.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_support import (  # noqa: F401 - data_root is a fixture
    assert_one_line_error,
    data_root,
    run_main,
)

TINY = ["--epochs", "1", "--batch-size", "20", "--device", "cpu", "--latent", "2", "--hidden", "16"]
EVAL = ["--test-limit", "20", "--iwae-k", "2", "--device", "cpu"]
LEADERBOARD = Path(__file__).resolve().parent.parent / "benchmarks" / "leaderboard.py"
IMAGES, LABELS = "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def trained(data_root: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A tiny finished VAE run on the fake MNIST."""
    code, _, err = run_main(["train", "vae", *TINY, "--data-root", str(data_root), "--out", str(out)], capsys)
    assert code == 0, err
    return out


# -- F4: the leaderboard and an FID of other extractor weights ------------------------------------------------


def leaderboard(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LEADERBOARD), "--out", str(out), "--markdown", f"{out}.md",
                           "--only", "vae+normal,vae/rec", "--epochs", "1", "--train-limit", "200", "--test-limit",
                           "100", "--features", "mnist", "--fid-samples", "20", "--iwae-k", "2"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


@pytest.mark.usefixtures("mnist_root")
def test_the_leaderboard_measures_again_an_fid_of_other_extractor_weights(tmp_path: Path) -> None:
    """Before: an ``eval.json`` FID whose extractor names other weights (here an older classifier's digest; in the
    report another Inception file through ``--inception-weights``) was taken as the leaderboard's own, exit 0."""
    out = tmp_path / "lb"
    first = leaderboard(out)
    assert first.returncode == 0, first.stderr[-3000:]
    path = out / "runs" / "vae" / "eval.json"
    evaluation = json.loads(path.read_text())
    records = (evaluation["fid"]["mnist/normal"], evaluation["interpolation"]["reconstruction_fid"])
    ours = records[0]["extractor"]
    assert ours.endswith(f"weights sha256 {ours[-12:]}") and records[1]["extractor"] == ours
    for record in records:  # as a genzoo with other classifier weights would have written them
        record["extractor"], record["fid"] = ours[:-12] + "0123456789ab", 1.5
    path.write_text(json.dumps(evaluation))
    again = leaderboard(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("$ genzoo eval") == 1
    assert "vae+normal: trained before, FID measured:" in again.stdout
    measured = json.loads(path.read_text())
    assert measured["fid"]["mnist/normal"]["extractor"] == ours
    assert measured["interpolation"]["reconstruction_fid"]["extractor"] == ours
    rows = json.loads((out / "leaderboard.json").read_text())["entries"]
    assert rows["vae+normal"]["fid"] == measured["fid"]["mnist/normal"]["fid"] != 1.5
    assert rows["vae/rec"]["fid"] == measured["interpolation"]["reconstruction_fid"]["fid"] != 1.5


# -- M1: GENZOO_CACHE with a `..` after a missing folder ------------------------------------------------------


def test_a_cache_through_dotdot_after_a_missing_folder_is_that_folder_and_nothing_else_is_made(
        data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: the cache folder was made where the kernel resolves ``victim/new/..`` (``victim/fid``), then the probe
    went through the path as given, which the kernel refuses while ``new`` is missing: exit 1, ``victim/fid`` left."""
    run = trained(data_root, tmp_path / "run", capsys)
    victim = tmp_path / "victim"
    victim.mkdir()
    monkeypatch.setenv("GENZOO_CACHE", f"{victim}/new/..")
    code, _, err = run_main(["eval", str(run), "--fid-samples", "20", "--features", "mnist",
                             "--data-root", str(data_root), *EVAL], capsys)
    assert code == 0, err
    assert sorted(p.name for p in victim.iterdir()) == ["fid"]  # the cache, where the user said; no `new`
    assert list((victim / "fid").rglob("*.npz"))


# -- M2: a truncated or broken .gz beside a missing IDX file --------------------------------------------------


def packed_only(data_root: Path, name: str, content: bytes) -> Path:
    """``name`` replaced by a ``.gz`` of ``content`` (the unpacked file removed, as a manual download leaves it)."""
    raw = data_root / "MNIST" / "raw"
    (raw / name).unlink()
    (raw / f"{name}.gz").write_bytes(content)
    return raw


def test_a_gz_cut_short_is_refused_by_its_name_and_nothing_is_unpacked(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``Error: .../train-images-idx3-ubyte is truncated: ...``, the short unpacked file left in the data
    folder, and every later command said the same without looking at the ``.gz``."""
    whole = (data_root / "MNIST" / "raw" / IMAGES).read_bytes()
    raw = packed_only(data_root, IMAGES, gzip.compress(whole[:16 + 784 * 50], mtime=0))
    before = sorted(os.listdir(raw))
    for _ in range(2):  # the same line again: nothing was left to be read instead
        code, _, err = run_main(["train", "vae", *TINY, "--data-root", str(data_root), "--no-download",
                                 "--out", str(tmp_path / "run")], capsys)
        assert_one_line_error(code, err, f"Error: {raw / IMAGES}.gz holds {16 + 784 * 50:,} of the "
                              f"{len(whole):,} bytes its IDX header declares (cut short); delete it or replace it "
                              "with a complete download")
        assert sorted(os.listdir(raw)) == before
    assert not (tmp_path / "run").exists()


def _crc_broken(content: bytes) -> bytes:
    packed = bytearray(gzip.compress(content, mtime=0))
    packed[-6] ^= 0xFF
    return bytes(packed)


@pytest.mark.parametrize(("broken", "reason"), [
    (lambda content: content, "Not a gzipped file"),
    (lambda content: gzip.compress(content, mtime=0) + b"garbage after the gzip stream", "Not a gzipped file"),
    (_crc_broken, "CRC check failed"),
], ids=["not-gzip", "trailing-junk", "bad-crc"])
def test_a_gz_that_is_no_sound_gzip_is_named_as_the_archive_not_as_a_failed_write(
        broken, reason: str, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``could not write .../t10k-labels-idx1-ubyte: Not a gzipped file (b'ga'); the previous version, if
    any, is intact``: ``atomic_write`` read the writer's own line, raised while handling ``gzip.BadGzipFile`` (an
    ``OSError``), as a disk fault."""
    raw = data_root / "MNIST" / "raw"
    raw = packed_only(data_root, LABELS, broken((raw / LABELS).read_bytes()))
    before = sorted(os.listdir(raw))
    code, _, err = run_main(["train", "vae", *TINY, "--data-root", str(data_root), "--no-download",
                             "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, f"Error: cannot unpack {raw / LABELS}.gz: {reason}",
                          "; delete it or replace it with a complete download")
    assert sorted(os.listdir(raw)) == before  # nothing unpacked, no temporary left


# -- M3: `genzoo data check` and a FIFO --------------------------------------------------------------------------


def test_data_check_names_a_fifo_at_a_data_file_or_its_gz_as_not_a_regular_file(
        data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``-        mnist: .../train-labels-idx1-ubyte: missing``, where ``train`` says the ``.gz`` is not a
    regular file (a FIFO)."""
    raw = data_root / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").unlink()
    os.mkfifo(raw / "train-labels-idx1-ubyte.gz")
    (raw / LABELS).unlink()
    os.mkfifo(raw / LABELS)
    code, out, err = run_main(["data", "check", "--data-root", str(data_root)], capsys)
    assert f"mnist: {raw / 'train-labels-idx1-ubyte'}: train-labels-idx1-ubyte.gz is not a regular file (a FIFO)" \
        in out, out
    assert f"mnist: {raw / LABELS}: not a regular file (a FIFO)" in out, out
    assert ": missing" not in "".join(line for line in out.splitlines() if line.split()[1:2] == ["mnist:"])


def test_data_check_names_a_link_to_a_fifo_at_the_inception_weights_as_not_a_regular_file(
        data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``-        inception: .../weights-inception-2015-12-05-6726825d.pth: missing``, where ``eval`` says
    ``Inception weights not a regular file at ... (a link to a FIFO)``."""
    from genzoo.evaluation.weights import inception_target

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    target = inception_target()
    target.parent.mkdir(parents=True)
    os.mkfifo(tmp_path / "fifo")
    target.symlink_to(tmp_path / "fifo")
    code, out, err = run_main(["data", "check", "--data-root", str(data_root)], capsys)
    assert f"inception: {target}: not a regular file (a link to a FIFO)" in out, out
    assert "missing" not in out.splitlines()[-1]


# -- M4: an upper-case run_id ---------------------------------------------------------------------------------


def test_an_upper_case_run_id_is_refused_as_not_lower_case(data_root: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``run_id is 'ACF9...', not 32 hexadecimal digits``, which it is."""
    run = trained(data_root, tmp_path / "run", capsys)
    config = json.loads((run / "config.json").read_text())
    config["run_id"] = config["run_id"].upper()
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", *EVAL], capsys)
    assert_one_line_error(code, err, f"run_id is {config['run_id']!r}, not 32 lower-case hexadecimal digits")

