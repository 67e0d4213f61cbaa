"""FID security: no cached statistics and no feature-extractor weights ever reach a full unpickler.

Every crafted file here would run ``os.mkdir(marker)`` if fully unpickled (each test shows
the payload is live); genzoo must refuse it with one line, and the marker must never appear.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from reliability_support import assert_one_line_error, data_root, one_thread, run_main  # noqa: F401 - fixtures
from test_security import Payload, finished_run

from genzoo import GenzooError
from genzoo.data import TensorSplit
from genzoo.evaluation import EvalConfig, fid, frechet, mnist_classifier, weights
from genzoo.evaluation.run_evaluation import load_test_split


def payload_file(path: Path, marker: Path) -> Path:
    """A torch file whose unpickling calls ``os.mkdir(marker)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"mu": Payload(marker)}, path)
    return path


def assert_live(path: Path, marker: Path) -> None:
    """The payload really runs under a full unpickle (which genzoo never does)."""
    assert not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.is_dir()


def noise(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def eval_args(run: Path, *extra: str) -> list[str]:
    return ["eval", str(run), "--fid-samples", "20", "--iwae-k", "2", "--test-limit", "20",
            "--features", "mnist", *extra]


@pytest.fixture
def run(data_root, tmp_path, monkeypatch):
    """A finished one-epoch run on the fake data, with the FID cache in ``tmp_path/cache``."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    return finished_run(data_root, tmp_path / "run")


# -- the statistics cache -------------------------------------------------------------


def test_a_pickle_planted_in_the_fid_cache_never_runs_through_genzoo_eval(run, data_root, tmp_path, capsys):
    marker = tmp_path / "pwned"
    test = load_test_split("mnist", str(data_root), 20, torch.device("cpu"))
    # Where torch-fidelity's cache used to be read from (with a full unpickle) ...
    legacy = (tmp_path / "cache" / "fid" / f"mnist-{weights.file_digest(mnist_classifier.WEIGHTS)}" /
              f"{frechet.reference_cache_name('mnist', test)}-{mnist_classifier.EXTRACTOR_NAME}-stat-fid-128.pt")
    payload_file(legacy, marker)
    code, out, err = run_main(eval_args(run), capsys)
    assert code == 0, err
    assert not marker.exists()  # ... is never opened: genzoo keeps its own statistics
    stored = frechet.reference_path(test, "mnist", dataset="mnist")
    assert stored.suffix == ".npz" and stored.is_file()

    # ... and a pickle under genzoo's own name is refused, not unpickled.
    payload_file(stored, marker)
    code, out, err = run_main(eval_args(run), capsys)
    assert code == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]  # after the progress bars of the phases before FID
    assert last.startswith(f"Error: FID cache file {stored} ") and "delete it" in last
    assert not marker.exists()
    assert_live(stored, marker)


@pytest.fixture
def cached(tmp_path, mnist):
    """A reference of 200 test digits whose statistics are cached in ``tmp_path/cache``."""
    reference = mnist["test"].take(200)
    fid(noise(20), reference, "mnist", cache=tmp_path / "cache")
    return reference, frechet.reference_path(reference, "mnist", cache=tmp_path / "cache")


def rewrite(path: Path, **changes: np.ndarray) -> None:
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update(changes)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def object_array(path: Path, marker: Path) -> None:
    rewrite(path, mu=np.array([Payload(marker)], dtype=object))


def edited_arrays(path: Path, marker: Path) -> None:
    with np.load(path) as data:
        rewrite(path, mu=data["mu"] + 1)


def other_reference(path: Path, marker: Path) -> None:
    with np.load(path) as data:
        rewrite(path, reference=np.array("0" * 64 + data["reference"].item()[64:]))


def truncated(path: Path, marker: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def raw_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"mu": Payload(marker)}))


def extra_member(path: Path, marker: Path) -> None:
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("bomb.npy", b"\0" * 100)


def rezip(path: Path, replace: dict[str, bytes]) -> None:
    """Rewrite the archive with some members' bytes replaced."""
    with zipfile.ZipFile(path) as z:
        members = {info.filename: z.read(info) for info in z.infolist()}
    members.update(replace)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def encrypted_member(path: Path, marker: Path) -> None:
    """Set the 'encrypted' bit of the first member in the central directory (zipfile: RuntimeError)."""
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")
    data[entry + 8] |= 0x1
    path.write_bytes(bytes(data))


def huge_declared_shape(path: Path, marker: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**6, 10**6)})
    rezip(path, {"sigma.npy": header.getvalue() + b"\0" * 64})  # 8 TB declared, 64 bytes given


@pytest.mark.parametrize("corrupt, reason", [
    (payload_file, "unexpected contents"),  # torch's own zip format
    (raw_pickle, "not a numpy archive"),
    (object_array, "holds objects"),
    (edited_arrays, "do not match their digest"),
    (other_reference, "other reference data"),
    (truncated, "not a numpy archive"),
    (extra_member, "unexpected contents"),
    (encrypted_member, "not a numpy archive"),
    (huge_declared_shape, "not float64 of shapes (128,) and (128, 128)"),
], ids=lambda value: getattr(value, "__name__", None))
def test_a_tampered_statistics_file_is_refused_with_one_line_and_never_unpickled(cached, tmp_path, corrupt, reason):
    reference, path = cached
    marker = tmp_path / "pwned"
    corrupt(path, marker)
    with pytest.raises(GenzooError) as info:
        fid(noise(20), reference, "mnist", cache=tmp_path / "cache")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"FID cache file {path}")
    assert reason in message and "delete it" in message
    assert not marker.exists()


def test_statistics_written_for_other_weights_are_refused(cached, tmp_path):
    """Copied into the folder of another extractor's weights, a file says whose it is."""
    reference, path = cached
    rewrite(path, weights=np.array("f" * 64))
    with pytest.raises(GenzooError, match="other extractor weights"):
        fid(noise(20), reference, "mnist", cache=tmp_path / "cache")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edit=st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("cut"), st.integers(min_value=0)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
))
def test_any_damage_to_a_statistics_file_gives_the_same_fid_or_one_line(cached, tmp_path, edit):
    """A byte flipped anywhere, a cut or trailing bytes: either the file still verifies and
    gives exactly the FID of the intact file, or it is refused with one line; nothing else."""
    reference, path = cached
    intact = path.read_bytes()  # every example starts from the intact file (restored below)
    expected = fid(noise(20), reference, "mnist", cache=tmp_path / "cache")["fid"]
    data = bytearray(intact)
    kind, *args = edit
    if kind == "flip":
        data[args[0] % len(data)] ^= args[1]
    elif kind == "cut":
        data = data[:args[0] % len(data)]
    else:
        data += args[0]
    path.write_bytes(bytes(data))
    try:
        value = fid(noise(20), reference, "mnist", cache=tmp_path / "cache")["fid"]
    except GenzooError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(f"FID cache file {path}")
        event(f"refused: {str(exc).split(': ', 1)[1].split(';')[0].split(' (')[0]}")
    else:
        assert value == expected
        event("still verifies, same FID")
    finally:
        path.write_bytes(intact)


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_statistics_path_that_is_not_a_regular_file_is_refused_without_hanging(mnist, tmp_path, kind):
    reference = mnist["test"].take(50)
    path = frechet.reference_path(reference, "mnist", cache=tmp_path / "cache")
    path.parent.mkdir(parents=True)
    path.mkdir() if kind == "directory" else os.mkfifo(path)
    with pytest.raises(GenzooError, match="not a regular file"):
        fid(noise(20), reference, "mnist", cache=tmp_path / "cache")


def test_the_statistics_file_is_plain_arrays_with_its_digests_inside(cached):
    reference, path = cached
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"format", "mu", "sigma", "reference", "weights", "extractor", "digest"}
        assert data["mu"].dtype == np.float64 and data["sigma"].shape == (128, 128)
        assert data["weights"].item().startswith(weights.file_digest(mnist_classifier.WEIGHTS))
        assert frechet.split_digest(reference) in data["reference"].item()
    assert frechet.split_digest(reference) in path.name


# -- feature-extractor weights --------------------------------------------------------


def test_crafted_inception_weights_given_on_the_command_line_are_refused_and_never_run(run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = payload_file(tmp_path / "evil.pth", marker)
    code, out, err = run_main(eval_args(run, "--features", "inception", "--inception-weights", str(evil)), capsys)
    assert_one_line_error(code, err, "refusing to load", str(evil), "posix.mkdir", "could run code")
    assert not marker.exists() and not (run / "eval.json").exists()
    assert_live(evil, marker)


def test_crafted_inception_weights_in_the_torch_hub_folder_are_refused_and_never_run(run, tmp_path, capsys,
                                                                                     monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    evil = payload_file(tmp_path / "torch" / "hub" / "checkpoints" / weights.INCEPTION_FILE, marker)
    code, out, err = run_main(eval_args(run, "--features", "inception"), capsys)
    assert_one_line_error(code, err, "refusing to load", str(evil), "could run code")
    assert not marker.exists()
    with pytest.raises(GenzooError, match="refusing to load"):  # the API refuses it too
        fid(noise(4), TensorSplit(noise(4, seed=1)), "inception", cache=tmp_path / "cache")
    assert not marker.exists()
    assert_live(evil, marker)


@pytest.mark.parametrize("content, reason", [
    (b"# genzoo\nA zoo of generative models.\n", "not a weights file"),
    (b"", "not a weights file"),
    ("state-dict-of-something-else", "does not hold Inception weights"),
], ids=["text", "empty", "other-state-dict"])
def test_junk_inception_weights_give_one_line(run, tmp_path, capsys, content, reason):
    junk = tmp_path / "README.md"
    if isinstance(content, bytes):
        junk.write_bytes(content)
    else:
        torch.save({"layer.weight": torch.zeros(3)}, junk)
    code, out, err = run_main(eval_args(run, "--features", "inception", "--inception-weights", str(junk)), capsys)
    line = assert_one_line_error(code, err, str(junk), reason)
    assert "Unpickling" not in line


def test_the_mnist_classifier_weights_are_loaded_weights_only(tmp_path):
    marker = tmp_path / "pwned"
    evil = payload_file(tmp_path / "classifier.pt", marker)
    with pytest.raises(GenzooError, match="refusing to load"):
        mnist_classifier.load_classifier(evil)
    assert not marker.exists()
    junk = tmp_path / "junk.pt"
    junk.write_text("not weights")
    with pytest.raises(GenzooError, match="not a weights file"):
        mnist_classifier.load_classifier(junk)


# -- an FID cache that cannot be written ----------------------------------------------


def test_an_unwritable_fid_cache_is_named_before_any_evaluation(run, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("GENZOO_CACHE", str(blocker / "cache"))
    code, out, err = run_main(eval_args(run), capsys)
    assert_one_line_error(code, err, "FID cache", str(blocker / "cache"), "GENZOO_CACHE", "Not a directory")
    assert "reconstruction" not in err and not (run / "eval.json").exists()
    # Without FID the cache is not needed.
    code, out, err = run_main(eval_args(run, "--fid-samples", "0"), capsys)
    assert code == 0, err


def test_an_unwritable_fid_cache_stops_compare_before_it_trains(data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    monkeypatch.setenv("GENZOO_CACHE", "notes.txt/cache")
    code, out, err = run_main(["compare", "vae", "--epochs", "1", "--latent", "2", "--data-root", str(data_root),
                               "--fid-samples", "20", "--iwae-k", "2", "--out", "cmp"], capsys)
    assert_one_line_error(code, err, "FID cache", "GENZOO_CACHE")
    assert not (tmp_path / "cmp").exists()


def test_a_full_fid_cache_is_named_before_any_evaluation(run, tmp_path, capsys, monkeypatch):
    import shutil

    full = shutil.disk_usage(tmp_path)._replace(free=4096)
    monkeypatch.setattr(frechet.shutil, "disk_usage", lambda path: full)
    code, out, err = run_main(eval_args(run), capsys)
    assert_one_line_error(code, err, "FID cache", "GENZOO_CACHE", "free")
    assert not (run / "eval.json").exists()


def test_the_cache_check_is_part_of_eval_config_check(tmp_path, monkeypatch):
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "fresh" / "cache"))
    assert EvalConfig(features="mnist").check(torch.device("cpu")) == ["mnist"]
    assert (tmp_path / "fresh" / "cache" / "fid").is_dir()
    assert list((tmp_path / "fresh" / "cache" / "fid").iterdir()) == []  # the probe left nothing
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "file"))
    with pytest.raises(GenzooError, match="FID cache"):
        EvalConfig(features="mnist").check(torch.device("cpu"))
    assert EvalConfig(features="mnist", fid_samples=0).check(torch.device("cpu")) == []
