"""The cache of sampler fits: the gmm mixture is fitted once per model and data, read back as safetensors.

Before, every ``genzoo sample``, ``eval`` and ``compare`` of an AE run fitted its mixture again
(about two minutes on the full training split).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from genzoo_plugins.samplers import GMMSampler
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from reliability_support import one_thread, run_main, write_fake_mnist  # noqa: F401 - a fixture
from test_security import Payload, finished_run

from genzoo import GenzooError, sampler_cache
from genzoo.building import build_sampler, load_model, load_split, pixels_sha256
from genzoo.sampler_cache import fit_bytes, fit_cache, fit_key, read_fit, state_sha256


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_mnist(tmp_path_factory.mktemp("fits") / "data")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty $GENZOO_CACHE for this test, and the unwritable-cache warning not given yet."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sampler_cache, "_warned", set())
    return tmp_path / "cache"


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the gmm sampler's fits."""
    calls: list[int] = []
    fit = GMMSampler.fit

    def counted(self: GMMSampler, train: object) -> None:
        calls.append(1)
        fit(self, train)  # type: ignore[arg-type]

    monkeypatch.setattr(GMMSampler, "fit", counted)
    return calls


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, bytes]:
    """A finished AE run, and the fit its training's end (samples.png) cached: its file's name and bytes."""
    root = tmp_path_factory.mktemp("trained")
    threads = torch.get_num_threads()
    # One thread, as the tests (one_thread): the fit's float rounding depends on the thread count.
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("GENZOO_CACHE", str(root / "cache"))
            run = finished_run(data, root / "run", model="ae", prior_components=3)
    finally:
        torch.set_num_threads(threads)
    fit = the_fit(root / "cache")
    return run, fit.name, fit.read_bytes()


@pytest.fixture
def ae_run(trained: tuple[Path, str, bytes], cache: Path) -> Path:
    """The run, with the fit of its training's end in this test's cache."""
    run, name, fit = trained
    (cache / "samplers").mkdir(parents=True)
    (cache / "samplers" / name).write_bytes(fit)
    return run


def sample(run: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[np.ndarray, str]:
    code, _, err = run_main(["sample", str(run), "-n", "6", "--seed", "7", "--out", str(out)], capsys)
    assert code == 0, err
    return np.load(out, allow_pickle=False)["images"], err


def the_fit(cache: Path) -> Path:
    files = list((cache / "samplers").iterdir())
    assert len(files) == 1, files
    return files[0]


def test_a_second_command_reads_the_fit_and_draws_what_a_fresh_fit_draws(ae_run, cache, fits, tmp_path, capsys,
                                                                         monkeypatch):
    """Before: each sample call fitted again. After: training's end fits once; later commands read the fit."""
    fit_file = the_fit(cache)
    assert fit_file.name == fit_file.stem + ".safetensors" and len(fit_file.stem) == 64
    cached_first, err = sample(ae_run, tmp_path / "a.npz", capsys)
    cached_second, _ = sample(ae_run, tmp_path / "b.npz", capsys)
    assert fits == [] and err == ""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "fresh"))
    fresh, _ = sample(ae_run, tmp_path / "c.npz", capsys)
    assert fits == [1]  # an empty cache: fitted, and kept
    assert np.array_equal(cached_first, fresh) and np.array_equal(cached_second, fresh)
    from safetensors.torch import load

    kept, earlier = load(the_fit(tmp_path / "fresh").read_bytes()), load(fit_file.read_bytes())
    assert the_fit(tmp_path / "fresh").name == fit_file.name
    assert kept.keys() == earlier.keys() and all(torch.equal(kept[k], earlier[k]) for k in kept)


def test_the_key_changes_with_the_weights_the_data_the_options_and_the_fit_version(ae_run, data, monkeypatch):
    model = load_model(ae_run)
    train = load_split("mnist", "train", str(data), None, model.device)
    digest = pixels_sha256(train)

    def key(sampler_options: dict[str, int] | None = None, train_sha: str = digest) -> str:
        gmm = GMMSampler(GMMSampler.Config.from_dict(sampler_options or {"components": 3}), model)
        return fit_key("gmm", gmm, train_sha)  # the key needs no fit

    first = key()
    assert key() == first  # the same model, data and options: the same name
    assert key(train_sha=pixels_sha256(train.take(100))) != first  # other training data
    assert key({"components": 4}) != first
    monkeypatch.setattr(GMMSampler, "fit_version", "2")
    assert key() != first
    monkeypatch.undo()
    with torch.no_grad():
        weight = next(model.parameters())
        weight.view(-1)[0] += 1e-6
    assert key() != first  # one weight changed by 1e-6


def test_the_digest_of_tensors_covers_names_shapes_and_dtypes():
    x = torch.arange(6, dtype=torch.float32)
    base = state_sha256({"a": x})
    assert state_sha256({"b": x}) != base
    assert state_sha256({"a": x.view(2, 3)}) != base
    assert state_sha256({"a": x.double()}) != base
    assert state_sha256({"a": x.clone()}) == base


def forged(fit_file: Path, **change: torch.Tensor) -> bytes:
    """The fit with tensors replaced, its digest recomputed: damage the digests cannot see."""
    from safetensors.torch import load

    data = fit_file.read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    return fit_bytes({**load(data), **change}, "gmm", header["key"])


CORRUPTIONS = {
    "a pickle that runs os.mkdir": lambda path, marker: pickle.dumps(Payload(marker)),
    "a byte of its tensors changed": lambda path, marker: path.read_bytes()[:-1] + bytes([path.read_bytes()[-1] ^ 1]),
    "cut short": lambda path, marker: path.read_bytes()[:100],
    "empty": lambda path, marker: b"",
    "another key (a fit copied from elsewhere)": lambda path, marker: fit_bytes(
        {"log_weights": torch.zeros(3)}, "gmm", "0" * 64),
    "NaN means with a recomputed digest": lambda path, marker: forged(path, means=torch.full((3, 2), float("nan"))),
    "a scale_tril that is no Cholesky factor": lambda path, marker: forged(path, scale_tril=-torch.ones(3, 2, 2)),
    "a tensor missing": lambda path, marker: fit_bytes({}, "gmm", json.loads(
        path.read_bytes()[8:8 + int.from_bytes(path.read_bytes()[:8], "little")])["__metadata__"]["key"]),
}


@pytest.mark.parametrize("damage", list(CORRUPTIONS))
def test_a_damaged_or_planted_fit_is_warned_about_ignored_and_left_as_it_is(damage, ae_run, cache, fits, tmp_path,
                                                                           capsys):
    """The cache only saves time: a bad file gives one warning line, a fresh fit, the same samples, exit 0."""
    fit_file = the_fit(cache)
    expected, _ = sample(ae_run, tmp_path / "before.npz", capsys)
    marker = tmp_path / "pwned"
    bad = CORRUPTIONS[damage](fit_file, marker)
    fit_file.write_bytes(bad)
    images, err = sample(ae_run, tmp_path / "after.npz", capsys)
    assert np.array_equal(images, expected)
    assert fits == [1]  # fitted again
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genzoo: warning: sampler cache file ") and \
        str(fit_file) in lines[0] and "delete it" in lines[0] and "Traceback" not in err, err
    assert fit_file.read_bytes() == bad and not marker.exists()


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_folder_or_fifo_where_the_fit_goes_is_warned_about_without_hanging(kind, ae_run, cache, fits, tmp_path,
                                                                            capsys):
    fit_file = the_fit(cache)
    fit_file.unlink()
    if kind == "directory":
        fit_file.mkdir()
    else:
        os.mkfifo(fit_file)
    _, err = sample(ae_run, tmp_path / "s.npz", capsys)
    assert fits == [1] and "not a regular file" in err and len(err.strip().splitlines()) == 1, err


def test_an_unwritable_cache_warns_once_and_the_command_goes_on(ae_run, cache, fits, tmp_path, capsys,
                                                                monkeypatch):
    """Before there was no cache to write. After: a cache folder inside a regular file is one warning per process."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    monkeypatch.setenv("GENZOO_CACHE", str(blocker / "cache"))
    images, err = sample(ae_run, tmp_path / "a.npz", capsys)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "the sampler cache" in lines[0] and "cannot keep fits" in lines[0] and \
        "GENZOO_CACHE" in lines[0], err
    _, err = sample(ae_run, tmp_path / "b.npz", capsys)
    assert err == "" and fits == [1, 1]  # fitted each time, warned once
    assert blocker.read_text() == "mine"
    monkeypatch.setenv("GENZOO_CACHE", str(cache))
    assert np.array_equal(images, sample(ae_run, tmp_path / "c.npz", capsys)[0])


def test_no_unpickler_reads_or_writes_a_fit(ae_run, data, cache, fits, monkeypatch):
    model = load_model(ae_run)
    train = load_split("mnist", "train", str(data), None, model.device)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unpickler was used")

    for name in ("Unpickler", "load", "loads"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    build_sampler(model, "ae", None, lambda: train)  # read from the cache
    assert fits == []
    the_fit(cache).unlink()
    build_sampler(model, "ae", None, lambda: train)  # fitted and written
    assert fits == [1] and fit_cache() == cache / "samplers"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draw=st.data())
def test_any_damage_to_a_fit_file_reads_the_intact_fit_or_is_refused(trained, tmp_path, draw):
    """A byte flipped anywhere, a cut or trailing bytes: exactly the intact fit, or one GenzooError (then a refit)."""
    from safetensors.torch import load

    run, name, intact = trained
    kind = draw.draw(st.sampled_from(["flip", "cut", "append"]))
    if kind == "flip":
        at = draw.draw(st.integers(0, len(intact) - 1))
        damaged = intact[:at] + bytes([intact[at] ^ draw.draw(st.integers(1, 255))]) + intact[at + 1:]
    elif kind == "cut":
        damaged = intact[:draw.draw(st.integers(0, len(intact) - 1))]
    else:
        damaged = intact + draw.draw(st.binary(min_size=1, max_size=16))
    path = tmp_path / name
    path.write_bytes(damaged)
    sampler = GMMSampler(GMMSampler.Config.from_dict({"components": 3}), load_model(run))
    try:
        sampler.load_fitted_state(read_fit(path, name.removesuffix(".safetensors")))
    except GenzooError:
        event(f"{kind}: refused")
        return
    event(f"{kind}: read")
    expected = load(intact)
    assert all(torch.equal(sampler.fitted_state()[k].cpu(), expected[k]) for k in expected)
