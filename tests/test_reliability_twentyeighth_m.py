"""Plugins that differ from one process to the next (twenty-sixth hostile pass, plugins F9, F10, F14): weight names
made from ``hash()``, a dataset ordered through a set, an optimiser given ``list(set(self.parameters()))``. Each run
trained to exit 0 and could never be loaded again, and the refusal blamed the checkpoint file or the user's data
folder. The refusals now name what the plugin does (genzoo cannot check a run against another process's build)."""

from __future__ import annotations

import types
from pathlib import Path

import torch
from reliability_support import assert_one_line_error, data_root, register_model, run_main  # noqa: F401

from genzoo import TensorSplit, hookimpl

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2"]
EVAL = ["--fid-samples", "0", "--iwae-k", "2", "--test-limit", "20", "--device", "cpu"]


def test_weight_names_that_differ_per_process_are_said_as_such(genzoo_register, capsys, data_root,
                                                              tmp_path: Path) -> None:  # noqa: F811
    from genzoo_plugins.vae.model import VAE

    class Salted(VAE):
        salt = 1

        def __init__(self, config, sample_shape) -> None:
            super().__init__(config, sample_shape)
            self.scales = torch.nn.ParameterDict({f"s{Salted.salt}": torch.nn.Parameter(torch.ones(1))})

    register_model(genzoo_register, "salted28", Salted)
    run = tmp_path / "run"
    code, _, err = run_main(["train", "salted28", *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 0, err
    Salted.salt = 2  # another process's hash()
    code, _, err = run_main(["eval", str(run), *EVAL, "--data-root", str(data_root)], capsys)
    assert_one_line_error(code, err, "does not fit its model", "Salted names 1 of its weights otherwise than the "
                          "checkpoint does (scales.s2, saved as scales.s1): weight names made from hash() or the "
                          "process id differ from one process to the next")
    code, _, err = run_main(["resume", str(run), "--data-root", str(data_root)], capsys)
    assert_one_line_error(code, err, "Salted names 1 of its weights otherwise than the checkpoint does")


def test_an_optimiser_given_its_parameters_in_another_order_is_said_as_such(genzoo_register, capsys, data_root,
                                                                            tmp_path: Path) -> None:  # noqa: F811
    from genzoo_plugins.vae.model import VAE

    class Unordered(VAE):
        backwards = False

        def configure_optimizers(self):
            params = list(self.parameters())
            return {"adam": torch.optim.Adam(params[::-1] if Unordered.backwards else params, lr=self.config.lr)}

    register_model(genzoo_register, "unordered28", Unordered)
    run = tmp_path / "run"
    code, _, err = run_main(["train", "unordered28", *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 0, err
    Unordered.backwards = True  # another process's set
    code, _, err = run_main(["resume", str(run), "--data-root", str(data_root)], capsys)
    assert_one_line_error(code, err, "holds an optimiser state that does not fit this run", "or the model's "
                          "configure_optimizers lists its parameters in another order than when it was saved")


def test_a_plugin_dataset_whose_images_differ_per_process_is_named(genzoo_register, capsys, data_root,
                                                                   tmp_path: Path) -> None:  # noqa: F811
    from genzoo_plugins.datasets.mnist import MNIST

    class Shuffled(MNIST):
        name = "shuffled28"
        backwards = False

        def load(self, split):
            images = MNIST.load(self, split).images
            return TensorSplit(images.flip(0) if Shuffled.backwards else images)

    @hookimpl
    def register_datasets(register) -> None:
        register("shuffled28", Shuffled)

    genzoo_register(types.SimpleNamespace(register_datasets=register_datasets), "shuffled28", "genzoo-shuffled28")
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", *TINY, "--dataset", "shuffled28", "--data-root", str(data_root),
                             "--out", str(run)], capsys)
    assert code == 0, err
    Shuffled.backwards = True
    code, _, err = run_main(["eval", str(run), *EVAL, "--data-root", str(data_root)], capsys)
    assert_one_line_error(code, err, "data found now differ", "if they are, dataset 'shuffled28' from plugin "
                          "'shuffled28' (distribution 'genzoo-shuffled28') gives other images from one process to "
                          "the next")
