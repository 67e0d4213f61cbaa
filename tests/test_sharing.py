"""``genzoo sample`` and ``genzoo export``: samples on demand, weights as safetensors, no pickle on the way back."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from genzoo_plugins.ae import AE
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from reliability_support import one_thread, run_main, snapshot, write_fake_mnist  # noqa: F401 - a fixture
from safetensors.torch import load as load_safetensors
from test_security import assert_one_line_error, finished_run

import genzoo
from genzoo import figures, hookimpl
from genzoo.cli import sample


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished one-epoch VAE run, shared: every test here only reads it."""
    root = tmp_path_factory.mktemp("sharing")
    torch.set_num_threads(1)
    return finished_run(write_fake_mnist(root / "data"), root / "run")


@pytest.fixture(scope="module")
def exported(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "vae"
    genzoo_main(["export", str(run), "--format", "safetensors", "--out", str(out)])
    return out


def genzoo_main(args: list[str]) -> None:
    from genzoo.cli import main

    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0


def test_tensor_files_are_the_same_bytes_under_a_seed_and_read_without_pickle(run, tmp_path, capsys):
    for name in ("a.npz", "b.npz", "c.npz", "a.safetensors", "b.safetensors"):
        seed = "8" if name.startswith("c") else "7"
        code, out, err = run_main(["sample", str(run), "-n", "5", "--seed", seed, "--out", str(tmp_path / name)],
                                  capsys)
        assert code == 0 and out.strip() == f"wrote {tmp_path / name}", err
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "a.npz").read_bytes() != (tmp_path / "c.npz").read_bytes()
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    images = np.load(tmp_path / "a.npz", allow_pickle=False)["images"]
    assert images.shape == (5, 1, 28, 28) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
    tensor = load_safetensors((tmp_path / "a.safetensors").read_bytes())["images"]
    assert torch.equal(tensor, torch.from_numpy(images))


def test_a_png_grid_by_default_in_the_run_folder_drawn_as_samples_png_is(run, tmp_path, capsys):
    assert sample.params[2].default == figures.PICTURE_SEED  # the default seed draws samples.png's images
    code, out, err = run_main(["sample", str(run), "-n", "4"], capsys)
    assert code == 0, err
    path = run / f"samples-seed{figures.PICTURE_SEED}-n4.png"
    assert out.strip() == f"wrote {path}" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path.unlink()


@pytest.mark.parametrize("name, needle", [("s.jpg", "use one of .png, .npz, .safetensors"),
                                          ("kept.npz", "already exists; genzoo never overwrites it")])
def test_a_bad_or_existing_out_is_one_line_and_nothing_is_written(run, tmp_path, capsys, name, needle):
    (tmp_path / "kept.npz").write_bytes(b"mine")
    before = snapshot(tmp_path)
    code, _, err = run_main(["sample", str(run), "--out", str(tmp_path / name)], capsys)
    assert_one_line_error(code, err, needle)
    assert snapshot(tmp_path) == before


class NoSampling(AE):
    """No sampler of its own, and it names that one (``model``) as its default."""

    can_sample = False
    default_sampler = "model"


class NoSamplingPlugin:
    @hookimpl
    def register_models(self, register):
        register("no-sampling", NoSampling)


def test_a_model_that_cannot_sample_is_one_line(tmp_path, capsys, genzoo_register):
    genzoo_register(NoSamplingPlugin(), "no-sampling")
    run = finished_run(write_fake_mnist(tmp_path / "data"), tmp_path / "run", model="no-sampling", hidden=16)
    code, _, err = run_main(["sample", str(run), "--out", str(tmp_path / "s.npz")], capsys)
    assert_one_line_error(code, err, "sampler 'model' cannot draw from model 'no-sampling'",
                          "it has no sampler of its own")
    assert not (tmp_path / "s.npz").exists()


def test_an_export_loads_evaluates_and_samples_as_its_run_with_no_unpickler(run, exported, tmp_path, capsys,
                                                                           monkeypatch):
    assert sorted(p.name for p in exported.iterdir()) == ["config.json", "metrics.jsonl", "model.safetensors"]
    assert (exported / "config.json").read_bytes() == (run / "config.json").read_bytes()
    reference = genzoo.load_model(run).state_dict()
    code, _, err = run_main(["sample", str(run), "-n", "3", "--out", str(tmp_path / "run.npz")], capsys)
    assert code == 0, err

    def refuse(*args, **kwargs):
        raise AssertionError("an unpickler was used")

    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded = genzoo.load_model(exported).state_dict()
    assert reference.keys() == loaded.keys() and all(torch.equal(reference[k], loaded[k]) for k in reference)
    assert genzoo.open_run(exported).model().config.latent == 2
    code, _, err = run_main(["sample", str(exported), "-n", "3", "--out", str(tmp_path / "export.npz")], capsys)
    assert code == 0, err
    assert (tmp_path / "run.npz").read_bytes() == (tmp_path / "export.npz").read_bytes()
    code, out, err = run_main(["eval", str(exported), "--fid-samples", "0", "--iwae-k", "2", "--device", "cpu"],
                              capsys)
    assert code == 0 and (exported / "eval.json").is_file(), err
    (exported / "eval.json").unlink()


def test_an_export_cannot_be_resumed_and_says_why(exported, capsys):
    code, _, err = run_main(["resume", str(exported)], capsys)
    assert_one_line_error(code, err, "is an export", "no training state to resume")


def tamper_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))


def cut_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:20])


def forge_header(path: Path) -> None:
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    path.write_bytes(data[:8] + b"{" * size + data[8 + size:])


@pytest.mark.parametrize("damage, needle", [
    (tamper_last_byte, "do not match the sha256 in its header"),
    (cut_header, "truncated"),
    (forge_header, "its header is not valid JSON"),
])
def test_a_tampered_weights_file_is_one_line(exported, tmp_path, capsys, damage, needle):
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    damage(copy / "model.safetensors")
    for args in (["sample", str(copy), "--out", str(tmp_path / "s.npz")], ["eval", str(copy), "--fid-samples", "0"]):
        code, _, err = run_main(args, capsys)
        assert_one_line_error(code, err, "model.safetensors is not a genzoo weights file", needle)
    with pytest.raises(genzoo.GenzooError, match=needle):
        genzoo.load_model(copy)


def test_export_refuses_a_used_folder_and_an_unfinished_run(run, tmp_path, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("mine")
    code, _, err = run_main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "used")], capsys)
    assert_one_line_error(code, err, "already exists and is not an empty folder")
    assert [p.name for p in (tmp_path / "used").iterdir()] == ["mine.txt"]
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "checkpoint.pt").unlink()
    code, _, err = run_main(["export", str(unfinished), "--format", "safetensors", "--out", str(tmp_path / "e")],
                            capsys)
    assert_one_line_error(code, err, "no checkpoint at")
    assert not (tmp_path / "e").exists()


DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**31), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 2**31), st.just(0)),
    st.tuples(st.just("append"), st.integers(1, 64), st.just(0)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=DAMAGE)
def test_any_damage_to_a_weights_file_loads_the_same_weights_or_is_one_line(exported, tmp_path, damage):
    kind, where, mask = damage
    copy = tmp_path / "hypothesis"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(exported, copy)
    path = copy / "model.safetensors"
    data = bytearray(path.read_bytes())
    if kind == "flip":
        data[where % len(data)] ^= mask
    elif kind == "cut":
        del data[where % len(data):]
    else:
        data += b"\0" * where
    path.write_bytes(bytes(data))
    try:
        loaded = genzoo.load_model(copy).state_dict()
    except genzoo.GenzooError as exc:
        event("refused")
        assert "\n" not in str(exc) and str(exc)
        return
    event("loaded")
    reference = genzoo.load_model(exported).state_dict()
    assert all(torch.equal(reference[k], loaded[k]) for k in reference)


def test_samples_that_are_no_pixels_are_one_line_never_a_file():
    """Before (review): ``genzoo sample`` wrote NaN or out-of-range samples into .npz/.safetensors without a word."""
    import pytest
    import torch
    from test_hostile_fourth_results import OddVAE, VAEConfig

    from genzoo import GenzooError
    from genzoo.sharing import draw_samples

    model = OddVAE(VAEConfig(latent=2, hidden=16), (1, 28, 28))
    for fill in (float("nan"), 1000.0):
        model.fill = fill
        with pytest.raises(GenzooError, match=r"'oddvae' produced samples that are not pixels in \[0, 1\]"):
            draw_samples(model, 4, 0, "oddvae")
    model.fill = 0.5
    assert torch.equal(draw_samples(model, 4, 0, "oddvae"), torch.full((4, 1, 28, 28), 0.5))
