"""Found by the fifteenth look (thirteenth hostile pass): a model's ``encode`` of the wrong shape (F4, and the gmm
sampler blamed for it), a ``sampling_description`` that is no string (the ``model`` sampler blamed for it), and a
relative ``MPLCONFIGDIR`` resolved against ``/``. Each test failed before its fix (docs/reliability.md, "Found by the
fourteenth look")."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    subprocess_env,
)

import genzoo
from genzoo import GenzooError, hookimpl
from genzoo.building import build_sampler, load_split
from genzoo.plugin_registry import registry

SHAPE = (1, 28, 28)


class KeptDimVAE(VAE):
    """Codes ``(batch, latent, 1)``: a ``keepdim`` left in."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return super().encode(x)[..., None]


class PairCodesVAE(VAE):
    """The posterior's ``(mu, logvar)`` pair where the codes belong."""

    def encode(self, x: torch.Tensor) -> Any:
        return tuple(self.posterior(x))


class NumberedVAE(VAE):
    def sampling_description(self, short: bool = False) -> Any:
        return 5


class LogitDecodeVAE(VAE):
    """``decode`` gives logits, not pixels: the sigmoid left out."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_logits(z).view(-1, *self.sample_shape)


@hookimpl
def register_models(register: Any) -> None:
    register("keptdim", KeptDimVAE)
    register("logitdecode", LogitDecodeVAE)
    register("paircodes", PairCodesVAE)
    register("numbered", NumberedVAE)


@pytest.fixture
def mistakes(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "fifteenth-misc", "test-fifteenth-misc")


def _train(model: str, data_root: Path, run: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code, _, err = run_main(["train", model, "--data-root", str(data_root), "--epochs", "1", "--batch-size", "40",
                             "--train-limit", "40", "--test-limit", "20", "--latent", "2", "--hidden", "16",
                             "--device", "cpu", "--out", str(run)], capsys)
    assert code == 0, err
    return err


# -- F4: encode of the wrong shape ---------------------------------------------------------------------------------


def test_eval_of_a_model_whose_codes_have_the_wrong_shape_says_why_reconstruction_is_na(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: training ended in a traceback (``mat1 and mat2 shapes cannot be multiplied``) when it drew the
    reconstructions, and so did ``eval``, with no eval.json. After: one warning and no reconstructions.png; eval
    writes its other metrics, and the reconstruction and interpolation are n/a with the reason naming the model's
    encode."""
    run = tmp_path / "run"
    err = _train("keptdim", data_root, run, capsys)
    reason = "KeptDimVAE.encode gave codes of shape (20, 2, 1) for 20 images; it must give (images, latent) codes"
    assert reason in err and "no reconstructions.png is drawn" in err, err
    assert not (run / "reconstructions.png").exists() and (run / "samples.png").exists()
    code, _, err = run_main(["eval", str(run), "--fid-samples", "10", "--features", "mnist", "--iwae-k", "2",
                             "--test-limit", "20", "--data-root", str(data_root), "--device", "cpu"], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    result = json.loads((run / "eval.json").read_text())
    assert result["reconstruction"] is None
    assert reason in result["unavailable"]["reconstruction"], result["unavailable"]
    assert result["interpolation"] is None
    assert "KeptDimVAE.encode gave codes of shape (20, 2, 1)" in result["unavailable"]["interpolation"]
    assert result["negative_elbo"] is not None and result["iwae"] is not None and result["fid"], result


@pytest.mark.parametrize(("model", "found"), [("keptdim", "codes of shape (40, 2, 1)"), ("paircodes", "a tuple")])
def test_the_gmm_sampler_is_not_blamed_for_the_models_codes(mistakes: None, data_root: Path, model: str,
                                                            found: str) -> None:
    """Before: ``sampler 'gmm' from plugin 'samplers' ... failed while fitting: ValueError: too many values to
    unpack (expected 2)``. After: the model's encode is named, and the sampler is not."""
    built = registry().build_model(model, SHAPE, latent=2, hidden=16)
    train = load_split("mnist", "train", str(data_root), 40, torch.device("cpu"))
    with pytest.raises(GenzooError) as info:
        build_sampler(built, model, "gmm", lambda: train)
    assert str(info.value).startswith(f"{type(built).__name__}.encode gave {found} for 40 images"), info.value
    assert "sampler" not in str(info.value)


def test_genzoo_sample_with_gmm_names_the_models_encode(mistakes: None, data_root: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    _train("keptdim", data_root, run, capsys)
    code, _, err = run_main(["sample", str(run), "--sampler", "gmm", "-n", "4", "--out", str(tmp_path / "s.png"),
                             "--data-root", str(data_root)], capsys)
    assert_one_line_error(code, err, "KeptDimVAE.encode gave codes of shape (40, 2, 1) for 40 images")
    assert not (tmp_path / "s.png").exists()


def test_genzoo_latent_names_the_models_encode(mistakes: None, data_root: Path) -> None:
    """``genzoo latent``'s codes come from the same check."""
    from genzoo.evaluation.latent_space import test_codes

    built = registry().build_model("paircodes", SHAPE, latent=2, hidden=16)
    test = load_split("mnist", "test", str(data_root), 20, torch.device("cpu"))
    with pytest.raises(GenzooError, match=r"^PairCodesVAE.encode gave a tuple for 20 images"):
        test_codes(built, test)


def test_genzoo_latent_names_the_models_decode_when_its_images_are_no_pixels(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fourteenth hostile pass M7. Before: ``model 'given as images' produced samples that are not pixels in [0, 1]
    (...; the Model contract: sample returns pixels in [0, 1])``, naming no model and blaming ``sample``."""
    run = tmp_path / "run"
    _train("logitdecode", data_root, run, capsys)
    code, _, err = run_main(["latent", str(run), "--pairs", "4", "--test-limit", "20", "--data-root", str(data_root),
                             "--device", "cpu", "--out", str(tmp_path / "latent")], capsys)
    assert_one_line_error(code, err, "model 'LogitDecodeVAE' produced decoded images that are not pixels in [0, 1]",
                          "decode returns pixels in [0, 1]")


# -- sampling_description that is no string ------------------------------------------------------------------------


def test_a_sampling_description_that_is_no_string_names_the_models_method(mistakes: None) -> None:
    """Before: ``sampler 'model' from plugin 'samplers' (distribution 'genzoo') described itself with int, not a
    string``. After: the model's ``sampling_description`` is named."""
    built = registry().build_model("numbered", SHAPE, latent=2, hidden=16)
    sampler = build_sampler(built, "numbered", "model", lambda: pytest.fail("the model's sampler fits to nothing"))
    with pytest.raises(GenzooError, match=r"^NumberedVAE.sampling_description \(sampler 'model'\) returned int, "
                                          r"not a string or None"):
        sampler.description()


# -- a relative MPLCONFIGDIR / XDG_CACHE_HOME ----------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["MPLCONFIGDIR", "XDG_CACHE_HOME"])
def test_a_relative_matplotlib_folder_is_the_users_own_not_one_under_root(variable: str, tmp_path: Path) -> None:
    """Before: ``MPLCONFIGDIR=relmpl`` made and used ``/relmpl`` (genzoo imports matplotlib from ``/``). After: the
    folder is ``./relmpl``, in the user's current folder, and nothing is made in ``/``."""
    name = f"genzoo-test-{uuid.uuid4().hex}"
    extra = {variable: name} if variable == "MPLCONFIGDIR" else {variable: name, "MPLCONFIGDIR": ""}
    done = subprocess.run([sys.executable, "-c", "import genzoo.figures, matplotlib; print(matplotlib.get_configdir())"],
                          env=subprocess_env(**extra, PYTHONPATH=str(Path(genzoo.__file__).parent.parent)),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    under_root = Path("/", name)
    made_under_root = under_root.exists()
    shutil.rmtree(under_root, ignore_errors=True)
    assert not made_under_root
    assert done.returncode == 0, done.stderr
    expected = tmp_path / name if variable == "MPLCONFIGDIR" else tmp_path / name / "matplotlib"
    assert done.stdout.strip() == str(expected), done.stdout
    assert expected.is_dir()


def test_compare_png_blanks_the_reconstructions_of_a_model_whose_codes_have_the_wrong_shape(
        mistakes: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: the traceback from ``decode`` after every model of a compare was trained and evaluated. After: a
    warning naming the model's encode, and ``compare.png`` drawn with that panel blank."""
    from genzoo.evaluation.report import compare_figure

    built = registry().build_model("keptdim", SHAPE, latent=2, hidden=16)
    compare_figure({"keptdim": built}, {"keptdim": "no samples here"}, torch.rand(4, *SHAPE),
                   tmp_path / "compare.png", seed=0)
    assert (tmp_path / "compare.png").stat().st_size > 0
    assert "KeptDimVAE.encode gave codes of shape (4, 2, 1) for 4 images" in capsys.readouterr().err


def test_compare_leaves_a_model_whose_codes_have_the_wrong_shape_out_of_latent_png(
        mistakes: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``compare`` ended on that model's codes after every model was trained and evaluated. After: its panel
    is left out (as a model that cannot encode), with a warning naming its encode; the others are drawn."""
    from genzoo.compare import _draw_latent

    test = load_split("mnist", "test", str(data_root), 20, torch.device("cpu"))
    models: Any = {label: (registry().build_model(label, SHAPE, latent=2, hidden=16), None, {})
                   for label in ("keptdim", "numbered")}
    assert _draw_latent(models, test, tmp_path, "mnist") == {"drawn": ["numbered"], "cannot_encode": ["keptdim"]}
    assert (tmp_path / "latent.png").stat().st_size > 0
    assert "KeptDimVAE.encode gave codes of shape (20, 2, 1) for 20 images" in capsys.readouterr().err


# -- what the commands print ------------------------------------------------------------------------------------------


def test_the_folders_genzoo_names_in_what_it_wrote_are_one_printable_line(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fourteenth hostile pass M11. Before: a folder named ``bad<0xff><newline>name`` was printed raw by ``run folder:``
    and the ``wrote`` lines of eval, sample and export: ``wrote .../bad\\udcff`` and the rest of it on a line of its
    own (a name can also hold escape sequences). After: such a name is escaped, as compare's labels are."""
    import os

    run = tmp_path / os.fsdecode(b"bad\xff\nname")
    commands = [["train", "vae", "--data-root", str(data_root), "--epochs", "1", "--batch-size", "40",
                 "--train-limit", "40", "--test-limit", "20", "--latent", "2", "--hidden", "16", "--device", "cpu",
                 "--out", str(run)],
                ["eval", str(run), "--fid-samples", "0", "--iwae-k", "2", "--test-limit", "20",
                 "--data-root", str(data_root), "--device", "cpu"],
                ["sample", str(run), "-n", "4"],
                ["export", str(run), "--format", "safetensors"]]
    for command in commands:
        code, out, err = run_main(command, capsys)
        assert code == 0, err
        said = [line for line in out.splitlines() if line.startswith(("run folder: ", "wrote "))]
        assert len(said) == 1 and "bad\\udcff\\nname" in said[0], out
        assert not any(line.startswith("name") for line in out.splitlines()), out
