"""``genzoo latent``: the latent space drawn and measured.

Runs are tiny (fake MNIST from reliability_support: 120 training and 40 test images with
labels, one epoch, 16 hidden units), so the numbers mean nothing here; what is checked is
that each picture and number is made, made the same way twice, and made through the
Model interface, and that bad input is one line with nothing written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image
import pytest
import torch
from reliability_support import data_root, one_thread, run_main, snapshot  # noqa: F401 - fixtures

from genzoo.data import TensorSplit
from genzoo.evaluation.latent_space import (
    classifier_confidence,
    interpolate,
    interpolation_kind,
    project,
    random_pairs,
    split_labels,
    traversal_grid,
)
from genzoo.plugin_registry import registry

SHAPE = (1, 28, 28)


def train(data_root: Path, out: Path, capsys: pytest.CaptureFixture[str], model: str, latent: int) -> Path:
    code, _, err = run_main(["train", model, "--epochs", "1", "--latent", str(latent), "--hidden", "16",
                             "--batch-size", "40", "--data-root", str(data_root), "--no-download", "--out", str(out)],
                            capsys)
    assert code == 0, err
    return out


@pytest.fixture
def runs(data_root, tmp_path, capsys, monkeypatch):  # noqa: F811 - the fixture it uses
    """An AE and a VAE trained at latent 2, as the article trains them for its picture."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    return {model: train(data_root, tmp_path / model, capsys, model, 2) for model in ("ae", "vae")}


def latent(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_main(["latent", *args], capsys)


# -- the pictures and numbers, from tiny runs ----------------------------------------------


def test_latent_draws_an_ae_and_a_vae_side_by_side_and_measures_their_midpoints(runs, data_root, tmp_path,
                                                                                 capsys):
    out = tmp_path / "pictures"
    code, stdout, err = latent([str(runs["ae"]), str(runs["vae"]), "--pairs", "30", "--out", str(out),
                                "--data-root", str(data_root)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["interpolation.png", "latent.json", "latent.png",
                                                     "traversal.png"]
    for name in ("latent.png", "interpolation.png", "traversal.png"):
        image = matplotlib.image.imread(out / name)
        assert image.shape[1] > 1.5 * image.shape[0] / 2, name  # two panels side by side
        assert image[..., :3].std() > 0.05, name  # not blank
    result = json.loads((out / "latent.json").read_text())
    assert result["test_images"] == 40 and result["pairs"] == 30
    ae, vae = result["runs"]
    assert (ae["model"], ae["interpolation"], vae["model"], vae["interpolation"]) == ("ae", "linear", "vae",
                                                                                       "spherical")
    for entry in (ae, vae):
        assert entry["latent"] == 2 and entry["projection"] == ["z1", "z2"]  # the codes themselves
        metrics = entry["metrics"]
        assert metrics["midpoint_fid"]["features"] == "mnist" and metrics["midpoint_fid"]["samples"] == 30
        assert metrics["reconstruction_fid"]["samples"] == 40
        for key in ("midpoint_confidence", "reconstruction_confidence", "test_confidence"):
            assert 0.1 <= metrics[key] <= 1, (key, metrics[key])  # a mean largest probability of 10 classes
        assert math.isfinite(metrics["midpoint_fid"]["fid"]) and metrics["midpoint_fid"]["fid"] >= 0
        assert f"midpoint FID (mnist) {metrics['midpoint_fid']['fid']:.2f}" in stdout
    assert f"wrote {out}" in stdout


def test_latent_is_deterministic_under_its_seed(runs, data_root, tmp_path, capsys):
    results = []
    for name in ("first", "second"):
        code, _, err = latent([str(runs["vae"]), "--pairs", "10", "--seed", "3", "--out", str(tmp_path / name),
                               "--data-root", str(data_root)], capsys)
        assert code == 0, err
        result = json.loads((tmp_path / name / "latent.json").read_text())
        for entry in result["runs"]:
            entry.pop("seconds")
            entry["metrics"]["midpoint_fid"].pop("reference_cached")
            entry["metrics"]["reconstruction_fid"].pop("reference_cached")
        results.append(result)
    assert results[0] == results[1]
    for picture in ("latent.png", "interpolation.png", "traversal.png"):
        assert (tmp_path / "first" / picture).read_bytes() == (tmp_path / "second" / picture).read_bytes()


def test_latent_projects_a_larger_latent_on_its_principal_components_and_pictures_only_with_no_pairs(
        data_root, tmp_path, capsys):  # noqa: F811 - the fixture it uses
    run = train(data_root, tmp_path / "ae", capsys, "ae", 5)
    out = tmp_path / "pictures"
    code, stdout, err = latent([str(run), "--pairs", "0", "--out", str(out), "--data-root", str(data_root)], capsys)
    assert code == 0, err
    (entry,) = json.loads((out / "latent.json").read_text())["runs"]
    assert [axis.split(" ")[0] for axis in entry["projection"]] == ["PC1", "PC2"]
    assert entry["metrics"] is None and "FID" not in stdout
    assert len(entry["traversed_dimensions"]) == 5
    assert not (tmp_path / "cache").exists()  # no FID, so nothing cached


# -- bad input: one line, nothing written -------------------------------------------------


@pytest.fixture
def gan_run(data_root, tmp_path, capsys):  # noqa: F811 - the fixture it uses
    code, _, err = run_main(["train", "gan", "--epochs", "1", "--latent", "2", "--batch-size", "40", "--data-root",
                             str(data_root), "--no-download", "--out", str(tmp_path / "gan")], capsys)
    assert code == 0, err
    return tmp_path / "gan"


@pytest.mark.parametrize("case", ["cannot encode", "three runs", "one pair", "out holds files", "not a run"])
def test_latent_refuses_bad_input_in_one_line_and_writes_nothing(case, runs, gan_run, data_root, tmp_path, capsys):
    out = tmp_path / "out"
    args = {"cannot encode": [str(runs["vae"]), str(gan_run)],
            "three runs": [str(runs["ae"]), str(runs["vae"]), str(runs["ae"])],
            "one pair": [str(runs["ae"]), "--pairs", "1"],
            "out holds files": [str(runs["ae"])],
            "not a run": [str(tmp_path / "nowhere")]}[case]
    expected = {"cannot encode": "gan (run", "three runs": "one run, or two side by side; got 3",
                "one pair": "'--pairs': 1 is not in the range x=0 or 2<=x<=100000",
                "out holds files": "is not an empty folder",
                "not a run": "nowhere"}[case]
    if case == "out holds files":
        out.mkdir()
        (out / "latent.png").write_bytes(b"earlier picture")
    before = snapshot(tmp_path)
    code, stdout, err = latent([*args, "--out", str(out), "--data-root", str(data_root)], capsys)
    assert code == (2 if case == "one pair" else 1), err  # click refuses --pairs 1 (nineteenth hostile pass, M1)
    assert err.startswith("Error: ") and err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in err and stdout == ""
    assert snapshot(tmp_path) == before
    assert case == "out holds files" or not out.exists()


# -- the parts -----------------------------------------------------------------------------


def test_codes_of_latent_two_are_drawn_as_they_are_and_others_on_signed_principal_components():
    codes = torch.randn(50, 2)
    points, axes = project(codes)
    assert torch.equal(points, codes) and axes == ["z1", "z2"]
    # Codes along one direction (plus a little noise) put 99 % of the variance on PC1, whatever their sign.
    direction = torch.tensor([3.0, -4.0, 0.0, 0.0, 0.0]) / 5
    line = torch.linspace(-2, 2, 50)[:, None] * direction + 0.01 * torch.randn(50, 5)
    points, axes = project(line)
    assert axes[0].startswith("PC1 (100%") or axes[0].startswith("PC1 (99%"), axes
    assert points[:, 0].var() > 100 * points[:, 1].var()
    flipped, _ = project(-line)
    torch.testing.assert_close(flipped[:, 0], -points[:, 0])  # the same axis, turned the same way
    same_spread, _ = project(torch.zeros(10, 3))  # no variance at all: no division by zero
    assert torch.isfinite(same_spread).all()


def test_interpolation_is_spherical_for_a_gaussian_prior_and_linear_otherwise():
    vae = registry().build_model("vae", SHAPE, latent=3, hidden=8)
    ae = registry().build_model("ae", SHAPE, latent=3, hidden=8)
    assert (interpolation_kind(vae), interpolation_kind(ae)) == ("spherical", "linear")
    a, b = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    for model in (vae, ae):
        path = interpolate(model, a, b, 5)[0]
        torch.testing.assert_close(path[0], a[0])
        torch.testing.assert_close(path[-1], b[0])
    # Spherical: every point keeps the norm of the codes (the prior's shell); linear cuts the corner.
    torch.testing.assert_close(interpolate(vae, a, b, 5)[0].norm(dim=1), torch.full((5,), 2.0))
    torch.testing.assert_close(interpolate(ae, a, b, 3)[0, 1], torch.tensor([1.0, 1.0, 0.0]))
    # Codes of unequal norms in almost opposite directions: the norm goes linearly from one to the other
    # (slerp of the raw codes divided by a sine near 0 and threw the midpoint 2,000 units out).
    far = interpolate(vae, torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[-2.0, 0.001, 0.0]]), 5)[0]
    torch.testing.assert_close(far.norm(dim=1), torch.tensor([1.0, 1.25, 1.5, 1.75, 2.0]))
    # Parallel codes have no plane to turn in: the path is the straight one.
    torch.testing.assert_close(interpolate(vae, a, 2 * a, 3)[0, 1], torch.tensor([3.0, 0.0, 0.0]))


def test_labels_colour_the_codes_only_when_the_split_carries_them():
    images = torch.rand(4, *SHAPE)
    assert split_labels(TensorSplit(images)) is None
    assert torch.equal(split_labels(TensorSplit(images, torch.tensor([3, 1, 4, 1]))), torch.tensor([3, 1, 4, 1]))


def test_pairs_are_distinct_and_repeat_under_their_seed():
    first, second = random_pairs(5, 200, seed=1)
    assert (first != second).all() and first.max() < 5 and second.max() < 5
    again = random_pairs(5, 200, seed=1)
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])
    assert not torch.equal(first, random_pairs(5, 200, seed=2)[0])


def test_traversal_moves_one_dimension_at_a_time_along_those_that_spread_most():
    vae = registry().build_model("vae", SHAPE, latent=4, hidden=8)
    codes = torch.randn(100, 4) * torch.tensor([0.1, 3.0, 1.0, 0.01])
    images, dims = traversal_grid(vae, codes, dims=2, steps=4)
    assert dims == [1, 2] and images.shape == (8, *SHAPE)


def test_classifier_confidence_is_high_on_digits_and_lower_on_blends_of_two(mnist):
    """Why the midpoint confidence says something: a ghost of two digits is no digit to the classifier."""
    images, labels = mnist["test"].images[:400], mnist["test"].labels[:400]
    other = torch.roll(images, 1, dims=0)
    differ = labels != torch.roll(labels, 1)
    blends = ((images + other) / 2)[differ]
    digits = classifier_confidence(images)
    assert digits > 0.95
    assert classifier_confidence(blends) < digits - 0.15
