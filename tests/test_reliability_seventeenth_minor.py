"""Minor items of the fifteenth hostile pass fixed in the main line (docs/reliability.md, "Found by the sixteenth
look"). Each test failed before its fix."""

from __future__ import annotations

import json
import os
import subprocess
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    data_root,
    evaluate,
    one_thread,
    run_main,
    script_command,
    subprocess_env,
)

from genzoo import GenzooError, hookimpl
from genzoo.building import build_sampler
from genzoo.data import TensorSplit
from genzoo.plugin_registry import registry


class NumberedVAE(VAE):
    def sampling_description(self, short: bool = False) -> Any:
        return 42


class FlatReconstructVAE(VAE):
    """``reconstruct`` without the ``.view``: flat ``(n, 784)`` images."""

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return super().reconstruct(x).flatten(1)


@hookimpl
def register_models(register: Any) -> None:
    register("numbered17", NumberedVAE)
    register("flatrecon17", FlatReconstructVAE)


@pytest.fixture
def mistakes(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_models=register_models), "seventeenth-minor", "test-minor")


def test_a_sampler_that_cannot_describe_itself_costs_its_fid_not_every_number(mistakes: None, data_root: Path,
                                                                             tmp_path: Path, capsys: Any) -> None:
    """M12. Before: every metric was measured, then the whole evaluation was refused (``... returned int, not a
    string or None``) and no eval.json written. After: that sampler is n/a with the reason, as one that cannot fit,
    before its FID; the reconstruction, ELBO and IWAE are kept."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "numbered17", "--data-root", str(data_root), "--epochs", "1", "--batch-size",
                             "40", "--train-limit", "40", "--test-limit", "20", "--latent", "2", "--hidden", "16",
                             "--device", "cpu", "--out", str(run)], capsys)
    assert code == 0, err
    code, result, err = evaluate(run, data_root, "model", capsys)
    assert code == 0, err
    reason = "NumberedVAE.sampling_description (sampler 'model') returned int, not a string or None"
    assert result["unavailable"]["sampler model"] == reason and reason in result["unavailable"]["fid"]
    assert result["reconstruction"] and result["negative_elbo"] and result["iwae"]
    assert reason in err


def test_compare_sets_a_models_learning_rate_and_loss_as_train_takes_them(data_root: Path, tmp_path: Path,
                                                                          capsys: Any) -> None:
    """M13. Before: ``--set vae.lr=0.002`` and ``--set vae.loss=mse`` were refused as ``vae has no option 'lr'``,
    though train takes ``--lr`` and ``--loss`` for every model: a compare could never change them. After: they
    reach the model's config, and a bad value is named as typed."""
    out = tmp_path / "cmp"
    code, _, err = run_main(["compare", "vae", "--set", "vae.lr=0.002", "--set", "vae.loss=mse", "--epochs", "1",
                             "--latent", "2", "--batch-size", "20", "--device", "cpu", "--data-root", str(data_root),
                             "--train-limit", "40", "--test-limit", "20", "--fid-samples", "0", "--iwae-k", "2",
                             "--out", str(out)], capsys)
    assert code == 0, err
    config = json.loads((out / "runs" / "vae" / "config.json").read_text())["model_config"]
    assert config["lr"] == 0.002 and config["reconstruction_loss"] == "mse"
    for setting, says in (("vae.lr=-1", "--set 'vae.lr=-1': '-1' must be a finite number above 0"),
                          ("gan.loss=mse", "loss 'mse' is of kind 'reconstruction', not 'adversarial'")):
        code, _, err = run_main(["compare", "vae", "gan", "--set", setting, "--out", str(tmp_path / "no")], capsys)
        assert code == 1 and err.startswith("Error: ") and says in err and err.count("\n") == 1, err
    assert not (tmp_path / "no").exists()


def test_inception_weights_that_are_no_file_are_not_called_missing(tmp_path: Path) -> None:
    """M5. Before: ``--inception-weights /dev/zero`` (a device) and a folder said ``Inception weights not found at
    /dev/zero``: it is there. After: not a regular file; a missing path is still not found."""
    from genzoo import GenzooError
    from genzoo.evaluation.weights import inception_weights

    for path, says in (("/dev/zero", "not a regular file at /dev/zero"),
                       (str(tmp_path), f"not a regular file at {tmp_path}"),
                       (str(tmp_path / "none.pth"), f"not found at {tmp_path / 'none.pth'}")):
        with pytest.raises(GenzooError, match=f"^Inception weights {says}$"):
            inception_weights(path)


def test_resume_of_a_complete_compare_whose_run_is_gone_says_so(data_root: Path, tmp_path: Path,
                                                                 capsys: Any) -> None:
    """M10. Before: ``compare --resume OUT`` after ``mv OUT/runs/vae elsewhere`` said the compare was complete,
    exit 0, while its results and report named the run that was gone. After: one line naming the run and how to
    train it again; nothing written. Done as it says, the run is trained again and the compare finished."""
    out = tmp_path / "cmp"
    args = ["compare", "vae", "--epochs", "1", "--latent", "2", "--batch-size", "20", "--device", "cpu",
            "--data-root", str(data_root), "--train-limit", "40", "--test-limit", "20", "--fid-samples", "0",
            "--iwae-k", "2", "--out", str(out)]
    assert run_main(args, capsys)[0] == 0
    (out / "runs" / "vae").rename(tmp_path / "elsewhere")
    before = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"Error: the compare in {out} is complete, but its run(s) {out / 'runs' / 'vae'} are "
                          "gone") and f"move results.json away and run genzoo compare --resume {out}" in err
    assert sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file()) == before
    (out / "results.json").rename(tmp_path / "results.json")
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0, err
    assert (out / "runs" / "vae" / "checkpoint.pt").is_file() and (out / "results.json").is_file()


class FlatDecodeVAE(VAE):
    """``decode`` without its ``.view``: flat ``(n, 784)`` images."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_logits(z).sigmoid()


class RaisingDescriptionVAE(VAE):
    def sampling_description(self, short: bool = False) -> Any:
        return self.config.prior_name  # a field it does not have


SHAPE = (1, 28, 28)


@pytest.mark.parametrize("sampler", ["normal", "gmm"])
def test_a_decode_of_the_wrong_shape_is_the_models_not_the_built_in_samplers(sampler: str) -> None:
    """M4. Before: ``sampler 'normal' from plugin 'samplers' (distribution 'genzoo') returned shape (8, 784)``: the
    sampler blamed for the model's ``decode``. After: the model's ``decode`` is named."""
    model = registry().build_model("vae", SHAPE, latent=2, hidden=16)
    model.decode = types.MethodType(FlatDecodeVAE.decode, model)  # type: ignore[method-assign]
    train = TensorSplit(torch.rand(40, *SHAPE))
    built = build_sampler(model, "vae", sampler, lambda: train)
    with pytest.raises(GenzooError, match=r"^VAE.decode gave images of shape \(8, 784\) for 8 codes; it must give "
                                          r"\(8, 1, 28, 28\) images"):
        built.sample(8)


def test_a_sampling_description_that_raises_names_the_models_method() -> None:
    """M4. Before: ``sampler 'model' from plugin 'samplers' (distribution 'genzoo') failed while describing itself:
    AttributeError ...``. After: the model's ``sampling_description`` is named."""
    model = registry().build_model("vae", SHAPE, latent=2, hidden=16)
    model.sampling_description = types.MethodType(  # type: ignore[method-assign]
        RaisingDescriptionVAE.sampling_description, model)
    built = build_sampler(model, "vae", "model", lambda: pytest.fail("the model's sampler fits to nothing"))
    with pytest.raises(GenzooError, match=r"^VAE.sampling_description \(sampler 'model'\) failed while describing "
                                          r"itself: AttributeError"):
        built.description()


def test_flat_reconstructions_name_the_models_reconstruct_not_matplotlib(mistakes: None, data_root: Path,
                                                                        tmp_path: Path, capsys: Any) -> None:
    """M3. Before: ``matplotlib could not draw the picture (RuntimeError: stack expects each tensor to be equal
    size ...); no reconstructions.png is drawn``. After: the model's ``reconstruct`` and the shapes are named."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "flatrecon17", "--data-root", str(data_root), "--epochs", "1", "--batch-size",
                             "40", "--train-limit", "40", "--test-limit", "20", "--latent", "2", "--hidden", "16",
                             "--device", "cpu", "--out", str(run)], capsys)
    assert code == 0, err
    assert ("model 'flatrecon17' produced reconstructions of shape (20, 784) for images of shape (20, 1, 28, 28) "
            "(the Model contract: reconstruct returns (batch, *sample_shape)); no reconstructions.png is drawn") in err
    assert "matplotlib" not in err
    assert not (run / "reconstructions.png").exists() and (run / "loss.png").is_file()


def test_a_compiler_cache_torch_cannot_make_is_the_environments_fault_not_the_models(data_root: Path,
                                                                                     tmp_path: Path) -> None:
    """M7, and a misattribution the fifteenth pass's guard of ``configure_optimizers`` brought: building any torch
    optimiser imports torch's compiler, which makes ``TORCHINDUCTOR_CACHE_DIR``. Before: ``File exists:
    /dev/null``, naming neither, then ``VAE.configure_optimizers raised FileExistsError``. After: one line naming
    the variable, before any folder (a process of its own: this one imported the compiler long ago)."""
    done = subprocess.run([*script_command("train", "vae", "--epochs", "1", "--batch-size", "20", "--train-limit",
                                           "40", "--test-limit", "20", "--data-root", str(data_root),
                                           "--out", str(tmp_path / "run"))],
                          env=subprocess_env(TORCHINDUCTOR_CACHE_DIR="/dev/null"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("Error: torch could not make its compiler's cache folder /dev/null (File exists), "
                                  "which it makes whenever an optimiser is built; point TORCHINDUCTOR_CACHE_DIR at")
    assert not (tmp_path / "run").exists()


def test_a_fifo_where_a_cache_file_belongs_is_not_called_a_run_folder(tmp_path: Path) -> None:
    """M1. Before: ``... is not a regular file (a FIFO); genzoo reads only regular files in a run folder`` for a
    sampler-cache file. After: no folder is named that the file is not in."""
    from genzoo.files import open_regular

    fifo = tmp_path / "fit.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(GenzooError, match=r"is not a regular file \(a FIFO\); genzoo reads only regular files$"):
        with open_regular(fifo):
            pass


def test_loss_png_of_a_model_with_many_losses_draws_a_bounded_picture(tmp_path: Path) -> None:
    """M11. Before: one panel per loss: 4,000 statistics took minutes and a 58 MB loss.png (a 300-loss model here:
    a picture 1,500 inches wide). After: the first eight, the title saying how many there are."""
    import matplotlib.image

    from genzoo import figures

    names = [f"kl_{i}" for i in range(300)]
    records = [{"epoch": e, **{f"{split}_{n}": float(e) for n in names for split in ("train", "test")}}
               for e in (1, 2)]
    figures.save_loss_curves(records, names, tmp_path / "loss.png", "many")
    height, width = matplotlib.image.imread(tmp_path / "loss.png").shape[:2]
    assert width <= 5 * figures.MAX_LOSS_PANELS * 100 + 100 and height < 500
