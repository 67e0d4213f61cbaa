"""Left by the eighteenth hostile pass's fixes ("Not fixed yet"), fixed before the nineteenth pass's rows.

A kept evaluation was tied to its run by the settings and the training data's digest, not by the weights: an
``eval.json`` of other weights with the same settings (another run's checkpoint copied over this one's, or a
second run of one setting on a GPU, where runs differ) was kept as this run's measurement. Each test failed
before its fix (docs/reliability.md, the rows of the nineteenth hostile pass).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from reliability_support import (  # noqa: F401 - data_root, one_thread and steered are fixtures
    SteeredVAE,
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    snapshot,
    steered,
)

from genzoo.checkpoint import FILENAME, load_checkpoint, save_checkpoint

TINY = ["--epochs", "1", "--batch-size", "20", "--device", "cpu", "--latent", "2", "--hidden", "16",
        "--train-limit", "100", "--test-limit", "20"]
EVAL = ["--test-limit", "20", "--iwae-k", "2", "--device", "cpu"]
FID = ["--fid-samples", "10", "--features", "mnist", "--sampler", "normal"]


def other_weights(run: Path) -> None:
    """The checkpoint of ``run`` with one weight changed: a run of the same settings that came out otherwise."""
    state = load_checkpoint(run / FILENAME)
    name = next(k for k, v in state["model_state"].items() if v.is_floating_point())
    state["model_state"][name] = state["model_state"][name] + 0.5
    save_checkpoint(run / FILENAME, {k: v for k, v in state.items() if k not in ("format", "version")})


@pytest.fixture
def evaluated(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A run with an FID in its ``eval.json``, and a copy of it whose checkpoint holds other weights."""
    a = tmp_path / "A"
    assert run_main(["train", "vae", *TINY, "--out", str(a), "--data-root", str(data_root)], capsys)[0] == 0
    assert run_main(["eval", str(a), *FID, *EVAL], capsys)[0] == 0
    shutil.copytree(a, tmp_path / "B")
    other_weights(tmp_path / "B")
    return a, tmp_path / "B"


def test_an_eval_json_of_other_weights_with_the_same_settings_is_replaced_not_kept(evaluated, capsys):
    a, b = evaluated
    code, _, err = run_main(["eval", str(b), "--fid-samples", "0", *EVAL], capsys)
    assert code == 0, err
    assert f"genzoo: warning: {b / 'eval.json'} held an evaluation of other weights than this run's checkpoint; " \
           "it is replaced" in err
    assert "kept from the earlier" not in err
    result = json.loads((b / "eval.json").read_text())
    assert result["fid"] == {} and "kept" not in result
    assert result["run_config"]["weights_sha256"] != json.loads((a / "eval.json").read_text())["run_config"][
        "weights_sha256"]


def test_an_eval_json_of_the_same_weights_keeps_its_fid(evaluated, capsys):
    a, _ = evaluated
    before = json.loads((a / "eval.json").read_text())
    code, _, err = run_main(["eval", str(a), "--fid-samples", "0", *EVAL], capsys)
    assert code == 0, err
    assert "kept from the earlier" in err and "replaced" not in err
    assert json.loads((a / "eval.json").read_text())["fid"] == before["fid"]


def test_an_eval_json_from_before_run_config_named_the_weights_keeps_its_fid(evaluated, capsys):
    _, b = evaluated
    older = json.loads((b / "eval.json").read_text())
    del older["run_config"]["weights_sha256"]  # as genzoo wrote it before
    (b / "eval.json").write_text(json.dumps(older))
    code, _, err = run_main(["eval", str(b), "--fid-samples", "0", *EVAL], capsys)
    assert code == 0, err
    assert "kept from the earlier" in err
    assert json.loads((b / "eval.json").read_text())["fid"] == older["fid"]


def test_the_weights_digest_is_of_the_checkpoint_not_of_the_settings(evaluated):
    a, b = evaluated
    from genzoo import load_model
    from genzoo.evaluation.run_evaluation import model_weights_sha256

    recorded = json.loads((a / "eval.json").read_text())["run_config"]["weights_sha256"]
    assert model_weights_sha256(load_model(a)) == recorded != model_weights_sha256(load_model(b))


def test_the_leaderboard_measures_again_an_fid_of_other_weights_than_the_checkpoints(evaluated):
    import argparse

    from test_leaderboard import load_script

    a, b = evaluated
    script = load_script()
    args = argparse.Namespace(fid_samples=10, features="mnist", test_limit=20)
    entry = script.ENTRIES["vae+normal"]
    kept = script.fid_record(a, entry, args)
    assert kept == json.loads((a / "eval.json").read_text())["fid"]["mnist/normal"]
    assert script.fid_record(b, entry, args) is None  # B's eval.json is A's: measured on A's weights


# -- compare.json records the data its compare started on ------------------------------------------------


@pytest.fixture
def stopped_compare(steered, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A compare of the steered AE and VAE stopped by Ctrl-C at its third training step."""
    from test_reliability_twentyfirst_a import compare_args, on

    out = tmp_path / "cmp"
    SteeredVAE.interrupt_at = 3
    assert on(data_root, compare_args(out, "steered-ae", "steered-vae"), capsys)[0] == 130
    SteeredVAE.interrupt_at = None
    return out


def edit_compare_json(out: Path, edit) -> None:
    saved = json.loads((out / "compare.json").read_text())
    edit(saved["config"])
    (out / "compare.json").write_text(json.dumps(saved))


def test_compare_resume_with_every_run_moved_away_refuses_other_data_before_training(stopped_compare, data_root,
                                                                                      tmp_path, capsys):
    from test_reliability_twentyfirst_a import reversed_training_data

    out, other = stopped_compare, reversed_training_data(data_root, tmp_path / "data2")
    assert set(json.loads((out / "compare.json").read_text())["config"]["data_sha256"]) == {"train", "test"}
    shutil.rmtree(out / "runs")  # every run moved away: only compare.json says what the compare started on
    before = snapshot(out)
    code, _, err = run_main(["compare", "--resume", str(out), "--data-root", str(other)], capsys)
    assert_one_line_error(code, err, f"the train data found now differ from those the compare in {out} started on "
                                     "(sha256 recorded in its compare.json)")
    assert snapshot(out) == before and SteeredVAE.steps == 3  # nothing trained, nothing written
    code, _, err = run_main(["compare", "--resume", str(out), "--data-root", str(data_root)], capsys)
    assert code == 0, err


def test_a_compare_json_from_before_it_recorded_the_data_still_resumes(stopped_compare, data_root, capsys):
    out = stopped_compare
    edit_compare_json(out, lambda config: config.pop("data_sha256"))  # as genzoo wrote it before
    code, _, err = run_main(["compare", "--resume", str(out), "--data-root", str(data_root)], capsys)
    assert code == 0, err
    assert json.loads((out / "results.json").read_text())["config"]["data_sha256"] is None


def test_a_compare_json_whose_data_digest_is_not_one_is_one_line(stopped_compare, capsys):
    out = stopped_compare
    edit_compare_json(out, lambda config: config.update(data_sha256={"train": "x"}))
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert_one_line_error(code, err, f"{out / 'compare.json'} is not a usable genzoo compare file: config field "
                                     "data_sha256 must be the sha256 of its train and test data, or null")


# -- a run folder moved away while training ---------------------------------------------------------------


class MovingVAE(SteeredVAE):
    """Moves its run folder away (``mv x x-old && mkdir x``) once it has taken ``move_at`` steps."""

    move_at = 0
    folder: Path | None = None

    def stepped(self) -> None:
        super().stepped()
        if type(self).steps == self.move_at and self.folder is not None:
            self.folder.rename(self.folder.with_name(self.folder.name + "-old"))
            self.folder.mkdir()


class MovingPlugin:
    from genzoo import hookimpl

    @hookimpl
    def register_models(self, register):
        register("moving-vae", MovingVAE)


@pytest.mark.parametrize("steps", [3, 9])  # in the first epoch; in the second, after a checkpoint was written
def test_a_run_folder_moved_away_while_training_gets_nothing_more_written_into_its_old_path(
        steps, genzoo_register, data_root, tmp_path, capsys):
    genzoo_register(MovingPlugin(), "moving")
    run = tmp_path / "x"
    MovingVAE.steps, MovingVAE.move_at, MovingVAE.folder = 0, steps, run
    code, _, err = run_main(["train", "moving-vae", "--epochs", "2", "--batch-size", "20", "--device", "cpu",
                             "--latent", "2", "--hidden", "16", "--test-limit", "20", "--data-root", str(data_root),
                             "--out", str(run)], capsys)
    moved = tmp_path / "x-old"
    assert code == 1 and "Traceback" not in err
    then = f"; carry on there with: genzoo resume {moved}" if steps == 9 else ", and it holds no checkpoint yet"
    assert err.strip().splitlines()[-1] == (f"Error: run folder {run} was moved or replaced while genzoo was writing "
                                            f"into it (it is now {moved}); nothing more was written{then}")
    assert list(run.iterdir()) == []  # the new folder at the old path: nothing of the run
    assert (moved / "config.json").is_file()
    if steps == 9:  # the first epoch's line and checkpoint went with the folder: it resumes there
        assert len((moved / "metrics.jsonl").read_text().splitlines()) == 1
        code, _, err = run_main(["resume", str(moved)], capsys)
        assert code == 0, err
        assert len((moved / "metrics.jsonl").read_text().splitlines()) == 2


def test_an_eval_whose_run_folder_was_moved_away_writes_no_eval_json_into_its_old_path(evaluated):
    from genzoo.errors import GenzooError
    from genzoo.evaluation.run_evaluation import EvalConfig, evaluate_run

    a, _ = evaluated
    moved = a.with_name("A-old")

    def move(result: dict) -> None:  # once measured, before eval.json is written
        a.rename(moved)
        a.mkdir()

    with pytest.raises(GenzooError) as info:
        evaluate_run(a, EvalConfig(fid_samples=0, iwae_k=2), test_limit=20, device="cpu", report=move)
    assert str(info.value) == (f"run folder {a} was moved or replaced while genzoo was writing into it (it is now "
                               f"{moved}); nothing more was written; carry on there with: genzoo eval {moved}")
    assert list(a.iterdir()) == []


# -- a kept interpolation is tied to its evaluation's first extractor ----------------------------------------


@pytest.mark.parametrize("features", ["inception", "all", "auto"])
def test_a_kept_interpolation_is_tied_to_its_evaluations_first_extractor(features, evaluated, capsys):
    a, _ = evaluated
    value = json.loads((a / "eval.json").read_text())
    assert value["interpolation"]["midpoint_fid"]["features"] == "mnist"
    value["eval_config"]["features"] = features  # filed under settings whose first extractor is another
    value["fid"] = {}
    (a / "eval.json").write_text(json.dumps(value))
    code, _, err = run_main(["eval", str(a), "--fid-samples", "0", *EVAL], capsys)
    if features == "inception":
        assert_one_line_error(code, err, f"{a / 'eval.json'} does not hold each measurement with the settings it was "
                                         "measured under (interpolation records midpoint_fid.features 'mnist', its "
                                         "settings say 'inception')")
    else:  # mnist is all's first extractor, and auto's on some devices
        assert code == 0, err
        assert json.loads((a / "eval.json").read_text())["interpolation"] == value["interpolation"]


# -- files F4: another run's FID curve -------------------------------------------------------------------------


@pytest.fixture
def seeded_curves(data_root: Path, tmp_path: Path) -> Path:
    """Two finished 2-epoch VAE runs with an FID curve, alike but for the training seed: ``s0`` and ``s1``."""
    from genzoo.evaluation.fid_curve import measure_epoch
    from genzoo.train_config import TrainConfig
    from genzoo.training import start_run

    for seed in (0, 1):
        config = TrainConfig(model="vae", epochs=2, batch_size=20, train_limit=100, test_limit=20, fid_curve=10,
                             seed=seed, data_root=str(data_root), device="cpu")
        start_run(config, {"latent": 2, "hidden": 16}, out=tmp_path / f"s{seed}", after_epoch=measure_epoch)
    return tmp_path


CURVE_COMPARE = ["--epochs", "2", "--batch-size", "20", "--train-limit", "100", "--test-limit", "20",
                 "--fid-samples", "0", "--iwae-k", "2", "--fid-curve", "10", "--device", "cpu"]


def test_compare_leaves_out_a_curve_copied_from_another_run(seeded_curves, capsys):
    from genzoo.evaluation.fid_curve import CURVE_FILE

    root = seeded_curves
    run_id = json.loads((root / "s0" / "config.json").read_text())["run_id"]
    other = json.loads((root / "s1" / "config.json").read_text())["run_id"]
    assert all(json.loads(line)["run"] == run_id for line in (root / "s0" / CURVE_FILE).read_text().splitlines())
    for name in ("copied", "unnamed"):
        shutil.copytree(root / "s0", root / name)
    shutil.copy(root / "s1" / CURVE_FILE, root / "copied" / CURVE_FILE)  # the seed-1 run's curve in a seed-0 run
    (root / "unnamed" / CURVE_FILE).write_text("".join(  # its own numbers, the run's name cut out
        json.dumps({k: v for k, v in json.loads(line).items() if k != "run"}) + "\n"
        for line in (root / "s0" / CURVE_FILE).read_text().splitlines()))
    runs = [arg for name in ("s0", "copied", "unnamed") for arg in ("--from-runs", str(root / name))]
    code, _, err = run_main(["compare", *runs, *CURVE_COMPARE, "--out", str(root / "cmp")], capsys)
    assert code == 0, err
    assert f"vae (copied)'s FID curve is left out: {root / 'copied' / CURVE_FILE} line 1 was measured by run " \
           f"'{other}', not by this run ({run_id}): it is not this run's curve" in err
    assert f"vae (unnamed)'s FID curve is left out: {root / 'unnamed' / CURVE_FILE} line 1 names no run, but this " \
           f"run ({run_id}) names itself on every line it writes: it is not this run's curve" in err
    assert list(json.loads((root / "cmp" / "results.json").read_text())["fid_curve"]["curves"]) == ["vae (s0)"]


def test_a_curve_of_a_run_from_before_runs_named_themselves_is_still_read(seeded_curves, capsys):
    from genzoo.evaluation.fid_curve import CURVE_FILE

    run = seeded_curves / "s0"
    config = json.loads((run / "config.json").read_text())
    del config["run_id"]  # as genzoo wrote both before
    (run / "config.json").write_text(json.dumps(config))
    (run / CURVE_FILE).write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "run"})
                                          + "\n" for line in (run / CURVE_FILE).read_text().splitlines()))
    code, _, err = run_main(["compare", "--from-runs", str(run), *CURVE_COMPARE, "--out", str(run.parent / "cmp")],
                            capsys)
    assert code == 0, err
    assert "left out" not in err
    assert [p["epoch"] for p in json.loads((run.parent / "cmp" / "results.json").read_text())["fid_curve"]["curves"]
            ["vae"]] == [1, 2]


@pytest.mark.parametrize("run_id", ["x" * 32, "A" * 32, "a" * 31, 5, ["a" * 32]])
def test_a_config_json_whose_run_id_is_not_one_is_one_line(run_id, evaluated, capsys):
    a, _ = evaluated
    config = json.loads((a / "config.json").read_text())
    config["run_id"] = run_id
    (a / "config.json").write_text(json.dumps(config))
    code, _, err = run_main(["eval", str(a), "--fid-samples", "0", *EVAL], capsys)
    assert_one_line_error(code, err, f"{a / 'config.json'} is not a genzoo run configuration: run_id is ",
                          "not 32 lower-case hexadecimal digits")


# -- plugins F1: state whose effect starts after the first step -----------------------------------------------


class CountingBCE:
    """A reconstruction loss that counts its calls with gradients on and weighs more after 8 of them."""

    name, kind, description = "counting-bce", "reconstruction", "bce weighing more with each call"
    negative_log_likelihood = False

    warm_up = 8

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, logits, x):
        import torch

        if torch.is_grad_enabled():
            self.calls += 1
        weight = 1.0 + 0.05 * max(0, self.calls - self.warm_up)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits.flatten(1), x.flatten(1), reduction="none")
        return weight * bce.sum(dim=1)


class WarmVAE(SteeredVAE):
    """A KL warm-up counted in a plain attribute: the KL weighs nothing for 8 steps."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.n = 0

    def loss(self, x):
        import torch

        stats = dict(super().loss(x))
        if torch.is_grad_enabled():
            self.n += 1
        stats["nelbo"] = stats["bce"] + min(1.0, max(0, self.n - 8) / 10) * stats["kl"]
        return stats


class DelayedStatePlugin:
    from genzoo import hookimpl

    @hookimpl
    def register_losses(self, register):
        from genzoo.loss import Loss

        register("counting-bce", type("CountingBCELoss", (CountingBCE, Loss), {})())

    @hookimpl
    def register_models(self, register):
        register("warm-vae", WarmVAE)


@pytest.mark.parametrize("args, who, why", [
    (["warm-vae"], "WarmVAE", "compute loss differently (they differ in n, a plain attribute)"),
    (["vae", "--loss", "counting-bce"], "VAE", "compute loss differently (they differ in "
                                               "losses.reconstruction_loss.calls, a plain attribute of its loss "
                                               "'counting-bce')"),
])
def test_state_whose_effect_starts_after_the_first_step_is_refused_at_the_next_checkpoint(
        args, who, why, genzoo_register, data_root, tmp_path, capsys):
    genzoo_register(DelayedStatePlugin(), "delayed")
    run = tmp_path / "run"
    code, _, err = run_main(["train", *args, "--epochs", "3", "--batch-size", "20", "--train-limit", "100",
                             "--test-limit", "20", "--device", "cpu", "--latent", "2", "--hidden", "16",
                             "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 1 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"Error: {who} computes with state its state_dict does not hold: a {who} after step 10 "
                           f"of the run and a fresh {who} given its state_dict (running each method first, as after "
                           f"a load) {why}"), line
    assert line.endswith(f"the last good checkpoint is kept at {run / 'checkpoint.pt'}, and what followed it is "
                         f"trained again once the model is mended: resume with: genzoo resume {run}"), line
    from genzoo.checkpoint import load_checkpoint

    assert load_checkpoint(run / "checkpoint.pt")["position"]["global_step"] == 5  # epoch 1's, before the warm-up


def test_each_model_is_handed_its_own_copy_of_a_registered_loss(genzoo_register):
    genzoo_register(DelayedStatePlugin(), "delayed")
    from genzoo.plugin_registry import registry

    first, second = (registry().build_model("vae", (1, 28, 28), reconstruction_loss="counting-bce")
                     for _ in range(2))
    assert first.losses["reconstruction_loss"] is not second.losses["reconstruction_loss"]
    assert first.losses["reconstruction_loss"] is not registry().loss("counting-bce")


def test_a_loss_keeping_state_from_its_first_call_is_named_before_the_run_folder(genzoo_register, data_root,
                                                                                  tmp_path, capsys):
    """M5: the state check before the run folder blamed the model alone for its loss plugin's state."""
    genzoo_register(DelayedStatePlugin(), "delayed")
    CountingBCE.warm_up = 0
    try:
        code, _, err = run_main(["train", "vae", "--loss", "counting-bce", "--epochs", "1", "--batch-size", "20",
                                 "--train-limit", "100", "--test-limit", "20", "--device", "cpu",
                                 "--data-root", str(data_root), "--out", str(tmp_path / "run")], capsys)
    finally:
        CountingBCE.warm_up = 8
    assert_one_line_error(code, err, "(they differ in losses.reconstruction_loss.calls, a plain attribute of its "
                                     "loss 'counting-bce')")
    assert not (tmp_path / "run").exists()


# -- plugins M1: codes holding NaN -----------------------------------------------------------------------------


class NaNCodeVAE(SteeredVAE):
    """Encodes every test image well but the third, whose code holds a NaN (in eval mode only: it trains)."""

    def encode(self, x):
        codes = super().encode(x).clone()
        if not self.training and len(codes) > 2:
            codes[2, 0] = float("nan")
        return codes


class NaNCodePlugin:
    from genzoo import hookimpl

    @hookimpl
    def register_models(self, register):
        register("nan-code-vae", NaNCodeVAE)


def test_codes_holding_nan_are_said_to_hold_nan_not_to_be_of_another_shape(genzoo_register, data_root, tmp_path,
                                                                              capsys):
    genzoo_register(NaNCodePlugin(), "nan-code")
    run = tmp_path / "run"
    assert run_main(["train", "nan-code-vae", *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)[0] == 0
    code, _, err = run_main(["latent", str(run), "--pairs", "0", "--test-limit", "20", "--device", "cpu",
                             "--out", str(tmp_path / "lat")], capsys)
    assert_one_line_error(code, err, "NaNCodeVAE.encode gave codes holding NaN or infinite values for 1 of 20 test "
                                     "images; it must give finite codes")


# -- the review after the merges ----------------------------------------------------------------------------------


def test_a_stop_while_a_fresh_copy_is_used_closes_the_copies_cleanly():
    """A second Ctrl-C during the state check before a checkpoint closed ``_fresh_copies`` at its yield, inside an
    ``except PLUGIN_FAULTS`` that now catches ``GeneratorExit``: it built one more model and Python said
    ``generator ignored GeneratorExit``."""
    import torch

    from genzoo.building import _fresh_copies
    from genzoo.plugin_registry import registry

    model = registry().build_model("vae", (1, 28, 28), latent=2, hidden=16)
    copies = _fresh_copies(model, model.state_dict(), torch.device("cpu"), 3)
    next(copies)
    copies.close()  # before: RuntimeError: generator ignored GeneratorExit


class LateScaleVAE(SteeredVAE):
    """Sets a sampling scale in a plain attribute in ``after_training``, on more images than the check before the
    run folder gives it (64): only the state check before the final checkpoint can see it."""

    scale = 1.0

    def after_training(self, train):
        if len(train) > 64:
            self.scale = 3.0

    def sample(self, n):
        import torch

        with torch.no_grad():
            return torch.sigmoid(self.decode_logits(torch.randn(n, self.config.latent) * self.scale))


class LateScalePlugin:
    from genzoo import hookimpl

    @hookimpl
    def register_models(self, register):
        register("late-scale-vae", LateScaleVAE)


def test_a_resume_that_takes_no_step_still_checks_its_final_checkpoint(genzoo_register, data_root, tmp_path, capsys):
    genzoo_register(LateScalePlugin(), "late-scale")
    run = tmp_path / "run"
    LateScaleVAE.steps, LateScaleVAE.interrupt_at = 0, 5  # the epoch's last step: the resume takes none
    try:
        code, _, err = run_main(["train", "late-scale-vae", *TINY, "--data-root", str(data_root), "--out", str(run)],
                                capsys)
    finally:
        LateScaleVAE.interrupt_at = None
    assert code == 130, err
    code, _, err = run_main(["resume", str(run)], capsys)
    assert code == 1 and "Traceback" not in err
    assert "LateScaleVAE computes with state its state_dict does not hold: a LateScaleVAE after step 5 of the run" \
           in err and "they differ in scale, a plain attribute" in err, err


def test_the_digests_take_conjugate_and_negative_views_as_their_values():
    """A buffer kept as a conjugate view (``x.conj()``) made the checkpoint digest raise (``view(torch.uint8)`` of
    a conjugate view) at the run's first checkpoint, where torch.save takes it."""
    import torch

    from genzoo.checkpoint import contents_sha256

    z = torch.tensor([1 + 2j, 3 - 1j])
    assert contents_sha256({"c": z.conj()}) == contents_sha256({"c": z.conj().resolve_conj()})
    assert contents_sha256({"c": z.conj()}) != contents_sha256({"c": z})
    assert contents_sha256({"c": -z}) == contents_sha256({"c": (-z).resolve_neg()}) != contents_sha256({"c": z})


def test_the_weights_digest_reads_each_tensors_values_once_whatever_its_storage():
    """The digest hashed a copy of each tensor's whole storage, byte by byte (14 s of a GAN's 14.6 s eval): a view
    into a larger storage digests as its own values (the weights digest is a checkpoint's contents digest)."""
    import torch

    from genzoo.checkpoint import contents_sha256

    whole = torch.arange(10, dtype=torch.float32)
    assert contents_sha256({"t": whole[2:5]}) == contents_sha256({"t": torch.tensor([2.0, 3.0, 4.0])})
    assert contents_sha256({"t": whole.view(2, 5).t()}) == contents_sha256({"t": whole.view(2, 5).t().contiguous()})
