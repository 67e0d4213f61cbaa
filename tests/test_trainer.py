"""The shared trainer: test-split evaluation, seeding, metrics and checkpoints."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from reliability_support import (  # noqa: F401 - one_thread is a fixture
    SteeredPlugin,
    SteeredVAE,
    assert_same_run,
    one_thread,
    reset_steering,
    run_main,
    snapshot,
    write_fake_mnist,
)
from rich.console import Console

from genzoo import Dataset, GenzooError, Model, ModelConfig, TensorSplit, hookimpl
from genzoo.building import load_model
from genzoo.checkpoint import load_checkpoint
from genzoo.run_folder import read_metrics
from genzoo.train_config import TrainConfig
from genzoo.trainer import Trainer
from genzoo.training import start_run


class TwoFaced(Dataset):
    """Training images are all 0, test images all 1: any mix-up shows in the numbers."""

    name = "two-faced"
    sample_shape = (1, 4, 4)

    def load(self, split):
        value = 0.0 if split == "train" else 1.0
        return TensorSplit(torch.full((40, *self.sample_shape), value))


class Spy(Model):
    """Records the mean pixel of every batch it trains and evaluates on."""

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.trained_on: list[float] = []
        self.evaluated_on: list[float] = []

    automatic_optimization = False  # it only watches: no step

    def training_step(self, x, optimizers):
        self.trained_on.append(float(x.mean()))
        return {"loss": (self.w.detach() + 1).expand(x.shape[0])}

    def evaluate(self, x):
        self.evaluated_on.append(float(x.mean()))
        return {"loss": x.flatten(1).mean(1)}


class TwoFacedPlugin:
    @hookimpl
    def register_models(self, register):
        register("spy", Spy)

    @hookimpl
    def register_datasets(self, register):
        register("two-faced", TwoFaced)


def test_evaluation_runs_on_the_test_split(genzoo_register, chdir_tmp):
    """Regression: the article built its "test" loader on the training set."""
    genzoo_register(TwoFacedPlugin(), "two-faced")
    result = start_run(TrainConfig(model="spy", dataset="two-faced", epochs=2, batch_size=10))
    assert set(result.model.trained_on) == {0.0}
    assert set(result.model.evaluated_on) == {1.0}
    assert [r["test_loss"] for r in result.records] == [1.0, 1.0]


def small(model: str, **overrides) -> TrainConfig:
    return TrainConfig(**{"model": model, "epochs": 2, "train_limit": 500, "test_limit": 200, **overrides})


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_same_seed_gives_the_same_numbers(chdir_tmp):
    a = start_run(small("vae", seed=3), out="a")
    b = start_run(small("vae", seed=3), out="b")
    c = start_run(small("vae", seed=4), out="c")
    keys = ["train_nelbo", "test_nelbo", "test_kl"]
    assert [[r[k] for k in keys] for r in a.records] == [[r[k] for k in keys] for r in b.records]
    assert a.records[-1]["test_nelbo"] != c.records[-1]["test_nelbo"]


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_run_folder_records_metrics_per_epoch_and_pictures(chdir_tmp):
    result = start_run(small("vae"))
    run = result.run_dir
    assert run.parent.name == "runs" and run.name.startswith("vae-")
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2]
    for record in records:
        assert {"test_nelbo", "test_bce", "test_kl", "train_nelbo", "train_images_per_s"} <= set(record)
        assert abs(record["test_nelbo"] - record["test_bce"] - record["test_kl"]) < 1e-6 * record["test_nelbo"]
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "vae" and config["model_config"]["latent"] == 40
    assert config["train_config"]["batch_size"] == 100
    for picture in ("samples.png", "reconstructions.png", "loss.png"):
        assert (run / picture).stat().st_size > 1000


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_checkpoint_round_trips(chdir_tmp):
    result = start_run(small("ae", epochs=1), {"latent": 12})
    state = load_checkpoint(result.run_dir)
    assert state["model"] == "ae" and state["position"]["epoch"] == 1
    assert set(state["optimizers"]) == {"adam"} and state["optimizers"]["adam"]["state"]
    loaded = load_model(result.run_dir)
    original = result.model.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(loaded.reconstruct(x), result.model.eval().reconstruct(x))
    assert not any(key.startswith("prior.") for key in state["model_state"])  # the mixture is the gmm sampler's


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_gan_checkpoints_both_optimisers_and_draws_no_reconstructions(chdir_tmp):
    result = start_run(small("gan", epochs=1))
    state = load_checkpoint(result.run_dir)
    assert set(state["optimizers"]) == {"discriminator", "generator"}
    assert {"test_loss_d", "test_loss_g"} <= set(result.records[0])
    assert (result.run_dir / "samples.png").exists()
    assert not (result.run_dir / "reconstructions.png").exists()


class StepTimesPixel(Model):
    """Each image's loss is its mean pixel times the global step number: known without training.

    It depends on which images share a step, so it follows the shuffled order, the batch
    sizes (the last batch is partial) and the step count across epochs.
    """

    steps = 0
    automatic_optimization = False  # its loss is known without a step

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.w = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, x, optimizers):
        self.steps += 1
        pixels = x.flatten(1).mean(1)
        return {"loss": pixels * self.steps, "pixels": pixels}

    def evaluate(self, x):
        pixels = x.flatten(1).mean(1)
        return {"loss": pixels, "pixels": pixels}


def test_train_metrics_equal_a_hand_computation_over_a_partial_last_batch(tmp_path):
    images = torch.arange(1, 11, dtype=torch.float32).div(10).view(10, 1, 1, 1).expand(10, 1, 2, 2)
    split = TensorSplit(images.contiguous())
    config = TrainConfig(model="step-times-pixel", epochs=2, batch_size=4, seed=5, device="cpu")
    model = StepTimesPixel(ModelConfig(), (1, 2, 2))
    Trainer(model, split, split, config, tmp_path, Console(file=io.StringIO())).fit()

    # By hand: the trainer's shuffle generator, seeded alike, gives each epoch's order;
    # batches of 4, 4 and 2 images are steps 1-3, then 4-6.
    generator = torch.Generator().manual_seed(5)
    pixel = [(i + 1) / 10 for i in range(10)]
    expected, step = [], 0
    for _ in range(2):
        order = torch.randperm(10, generator=generator).tolist()
        loss = unweighted = 0.0
        for start in range(0, 10, 4):
            step += 1
            batch = order[start:start + 4]
            loss += sum(pixel[i] * step for i in batch)
            unweighted += sum(pixel[i] * step for i in batch) / len(batch) / 3
        expected.append({"train_loss": loss / 10, "train_pixels": sum(pixel) / 10})
        assert not math.isclose(loss / 10, unweighted, rel_tol=1e-3)  # the partial batch matters

    records = read_metrics(tmp_path)
    assert [r["epoch"] for r in records] == [1, 2]
    for record, want in zip(records, expected):
        for key, value in want.items():
            assert math.isclose(record[key], value, rel_tol=1e-6), (record["epoch"], key, record[key], value)


def test_resume_reads_data_that_moved_from_data_root(genzoo_register, tmp_path, capsys):
    """The documented way to finish a run whose data folder moved: resume --data-root NEW."""
    reset_steering()
    genzoo_register(SteeredPlugin(), "steered")
    data, moved, run = tmp_path / "data", tmp_path / "moved", tmp_path / "run"
    write_fake_mnist(data)
    train = ["train", "steered-vae", "--latent", "2", "--hidden", "16", "--epochs", "2", "--batch-size", "10",
             "--device", "cpu", "--test-limit", "20"]
    SteeredVAE.interrupt_at = 5
    code, _, err = run_main([*train, "--data-root", str(data), "--out", str(run)], capsys)
    assert code == 130, err
    reset_steering()  # no more interrupts; count the steps the resume takes
    data.rename(moved)
    before = snapshot(run)

    code, _, err = run_main(["resume", str(run), "--device", "cpu", "--no-download"], capsys)
    assert code != 0 and len(err.strip().splitlines()) == 1 and err.startswith("Error: "), err
    assert str(data) in err and "downloading is off" in err
    if not torch.cuda.is_available():  # --device reaches the resumed session: a missing GPU is refused
        code, _, err = run_main(["resume", str(run), "--data-root", str(moved), "--device", "cuda"], capsys)
        assert code != 0 and err.strip() == "Error: --device cuda was requested but no CUDA GPU is available"
    assert snapshot(run) == before  # refused resumes touch nothing

    code, _, err = run_main(["resume", str(run), "--data-root", str(moved), "--device", "cpu", "--no-download"],
                            capsys)
    assert code == 0, err
    assert SteeredVAE.steps == 2 * 12 - 5  # only the missing steps, from the moved data
    reset_steering()
    code, _, err = run_main([*train, "--data-root", str(moved), "--out", str(tmp_path / "reference")], capsys)
    assert code == 0, err
    assert_same_run(run, tmp_path / "reference")


class BatchMeanLoss(Model):
    """Reduces its own loss over the batch: under the per-image convention the trainer would miscount it."""

    def __init__(self, config, sample_shape):
        super().__init__(config, sample_shape)
        self.w = torch.nn.Parameter(torch.zeros(()))

    def loss(self, x):
        return {"loss": ((x.flatten(1).mean(1) - self.w) ** 2).mean()}


class TwoOptimisersAutomatic(BatchMeanLoss):
    """Two optimisers but automatic optimisation: the trainer would not know which to step."""

    def loss(self, x):
        return {"loss": (x.flatten(1).mean(1) - self.w) ** 2}

    def configure_optimizers(self):
        return {"a": torch.optim.SGD([self.w], lr=0.1), "b": torch.optim.SGD([self.w], lr=0.1)}


@pytest.mark.parametrize("model_cls,message", [
    (BatchMeanLoss, r"^BatchMeanLoss.loss returned 'loss' of shape \(\), not one value per image \(4,\)$"),
    (TwoOptimisersAutomatic, r"^TwoOptimisersAutomatic has 2 optimisers: automatic optimisation steps one; "
                             r"a model with several sets automatic_optimization = False"),
])
def test_a_model_breaking_the_per_image_interface_is_one_line_before_any_step(tmp_path, model_cls, message):
    split = TensorSplit(torch.rand(8, 1, 2, 2))
    model = model_cls(ModelConfig(), (1, 2, 2))
    before = model.w.detach().clone()
    with pytest.raises(GenzooError, match=message):  # two optimisers: when the trainer is built
        Trainer(model, split, split, TrainConfig(model="x", epochs=1, batch_size=4, device="cpu"), tmp_path,
                Console(file=io.StringIO())).fit()
    assert torch.equal(model.w.detach(), before) and not any(tmp_path.iterdir())
