"""Run folders crafted by a hostile tester after the first round of issue 10's fixes.

Each case is a checkpoint, ``eval.json``, data folder or file size that genzoo took
at its word: an optimiser state that does not fit, epoch sums of other names, NaN
weights, a malformed kept evaluation, a concurrent evaluation, another data set
under ``--data-root``, torchvision's legacy ``processed/*.pt`` files, a sparse 200 GB
file. Each must be one ``Error:`` line with every file left as it was.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from reliability_support import assert_one_line_error, idx_bytes, one_thread, run_main, snapshot, write_fake_mnist  # noqa: F401
from test_run_files import EVAL, made, mid_epoch_2, refused, run  # noqa: F401 - fixtures

from genzoo import GenzooError
from genzoo.building import load_model
from genzoo.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from genzoo.plugin_registry import registry
from genzoo.run_folder import CONFIG, locked

pytestmark = pytest.mark.usefixtures("one_thread")

#: The finished run's checkpoint moved back to the end of epoch 1, so ``resume`` has work to do.
END_OF_EPOCH_1 = {"epoch": 1, "step": 0, "global_step": 12, "sums": {}, "images": 0, "seconds": 1.0}


def edit_checkpoint(run: Path, change: Callable[[dict[str, Any]], Any], position: dict[str, Any] | None = None) -> None:
    state = load_checkpoint(run)
    if position is not None:
        state["position"] = position
        set_optimizer_steps(state, position["global_step"])
    change(state)
    save_checkpoint(run / FILENAME, state)


def set_optimizer_steps(state: dict[str, Any], steps: int) -> None:
    """Every optimiser's per-parameter step count set to ``steps``: a position moved by hand
    stays consistent with the optimiser state, which resume checks against it."""
    for optimizer in state["optimizers"].values():
        for entry in optimizer["state"].values():
            entry["step"] = torch.full_like(entry["step"], steps)


def adam(state: dict[str, Any]) -> dict[str, Any]:
    return state["optimizers"]["adam"]


# -- 1, 2: optimiser state checked against the freshly configured optimisers ----------------------

OPTIMISER_CHANGES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "exp_avg of another shape": lambda s: adam(s)["state"][0].update(exp_avg=torch.zeros(3)),
    "exp_avg_sq of another dtype": lambda s: adam(s)["state"][0].update(
        exp_avg_sq=adam(s)["state"][0]["exp_avg_sq"].double()),
    "step that is not a scalar": lambda s: adam(s)["state"][0].update(step=torch.zeros(3)),
    "betas a string": lambda s: adam(s)["param_groups"][0].update(betas="ab"),
    "lr other than the run's": lambda s: adam(s)["param_groups"][0].update(lr=0.05),
    "eps missing": lambda s: adam(s)["param_groups"][0].pop("eps"),
    "state of an unknown parameter": lambda s: adam(s)["state"].update({999: adam(s)["state"].pop(0)}),
    "a NaN moment": lambda s: adam(s)["state"][0]["exp_avg"].fill_(math.nan),
}


@pytest.mark.parametrize("name", list(OPTIMISER_CHANGES))
def test_an_optimiser_state_that_does_not_fit_is_refused_before_any_file_changes(name, run, capsys):
    """Before: a moment of another shape or betas 'ab' gave a traceback at the first step; lr 0.05
    trained at 0.05 while config.json said 0.001, exit 0; state of parameter 999 dropped Adam's moments."""
    edit_checkpoint(run, OPTIMISER_CHANGES[name], END_OF_EPOCH_1)
    refused(["resume", str(run)], run.parent, capsys, f"{run / FILENAME}", "holds an optimiser state")


# -- 3: epoch sums of the model's step statistics -----------------------------------------------

SUMS = {
    "none at step 5": {},
    "one missing": {"nelbo": 300.0, "bce": 280.0},
    "one the model never reports": {"nelbo": 300.0, "bce": 280.0, "kl": 20.0, "bogus": 1.0},
}


@pytest.mark.parametrize("name,epoch", [(name, 1) for name in SUMS] + [("none at step 5", 0),
                                                                       ("one the model never reports", 0)])
def test_position_sums_of_other_names_than_the_step_statistics_are_refused(name, epoch, run, capsys):
    """Before: sums {} at step 5 resumed with wrong train metrics; {'bogus': 1} added 'train_bogus'.

    In the first epoch no metric line names the step statistics yet: sums must hold every
    loss name and only names the model's evaluation reports, so a missing extra statistic
    (here kl) is caught from epoch 2 on only.
    """
    position = mid_epoch_2(sums=SUMS[name]) if epoch else {**mid_epoch_2(sums=SUMS[name]), "epoch": 0,
                                                             "global_step": 5}
    edit_checkpoint(run, lambda s: None, position)
    refused(["resume", str(run)], run.parent, capsys, f"{run / FILENAME}", "holds epoch sums")


# -- 4: non-finite weights ------------------------------------------------------------------------


def poison(state: dict[str, Any], only: str | None = None) -> None:
    for key, tensor in state["model_state"].items():
        if tensor.is_floating_point() and (only is None or key == only):
            tensor.fill_(math.nan)


@pytest.mark.parametrize("which", ["every weight", "one bias"])
def test_a_checkpoint_with_non_finite_weights_is_refused_by_eval_compare_load_and_resume(which, run, capsys):
    """Before: eval gave a traceback (BCE on NaN), a GAN reported an FID of NaN samples, exit 0;
    resume trained on and then said 'the last good checkpoint is kept' of that NaN checkpoint."""
    state = load_checkpoint(run)
    poison(state, None if which == "every weight" else "encoder.0.bias")
    save_checkpoint(run / FILENAME, state)
    refused(["eval", str(run), *EVAL], run.parent, capsys, f"{run / FILENAME}", "non-finite")
    refused(["compare", "--from-runs", str(run), "--out", str(run.parent / "cmp"), *EVAL], run.parent, capsys,
            "non-finite")
    with pytest.raises(GenzooError, match="non-finite"):
        load_model(run)
    edit_checkpoint(run, lambda s: None, END_OF_EPOCH_1)
    line = refused(["resume", str(run)], run.parent, capsys, f"{run / FILENAME}", "non-finite")
    assert "last good checkpoint" not in line


# -- 5: the earlier eval.json's entries, field by field --------------------------------------------

GOOD_FID = {"features": "mnist", "extractor": "x", "reference": "y", "samples": 30, "reference_cached": True,
            "seed": 0, "fid": 1.5, "seconds": 0.1}
GOOD_INTERPOLATION = {"pairs": 30, "interpolation": "spherical", "seed": 0, "test_images": 20, "seconds": 0.1,
                      "midpoint_fid": GOOD_FID, "reconstruction_fid": GOOD_FID, "midpoint_confidence": 0.5,
                      "reconstruction_confidence": 0.6, "test_confidence": 0.9}
EVAL_EDITS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "a fid entry without extractor": lambda d: d["fid"].update(mnist={"samples": 200}),
    "a fid that is a string": lambda d: d["fid"].update(mnist={**GOOD_FID, "fid": "abc"}),
    "samples that are a list": lambda d: d["fid"].update(mnist={**GOOD_FID, "samples": [1]}),
    "an iwae k that is a list": lambda d: d.update(iwae={**d["iwae"], "k": [1]}),
    "an iwae nll that is NaN": lambda d: d.update(iwae={**d["iwae"], "nll": math.nan}),
    "a kept entry that is a number": lambda d: d.update(kept={"fid.mnist": 5}),
    "reconstruction without mse": lambda d: d["reconstruction"].pop("mse_per_pixel"),
    "test_images that are a list": lambda d: d.update(test_images=[]),
    # The second hostile pass: numbers no measurement gives, and a key that contradicts its entry.
    "a negative fid": lambda d: d["fid"].update(mnist={**GOOD_FID, "fid": -5.0}),
    "a midpoint confidence above 1": lambda d: d.update(interpolation={**GOOD_INTERPOLATION,
                                                                       "midpoint_confidence": 1.5}),
    "an interpolation fid without extractor": lambda d: d.update(interpolation={
        **GOOD_INTERPOLATION, "midpoint_fid": {k: v for k, v in GOOD_FID.items() if k != "extractor"}}),
    "an mnist fid kept under inception": lambda d: d["fid"].update(inception=d["fid"].pop("mnist")),
    "inception features under the mnist key": lambda d: d["fid"].update(mnist={**GOOD_FID,
                                                                               "features": "inception"}),
}


@pytest.mark.parametrize("name", list(EVAL_EDITS))
def test_a_malformed_entry_of_the_earlier_eval_json_is_refused_before_any_work(name, run, capsys):
    """Before: {'samples': 200} was merged, then printing failed with KeyError 'extractor' (ValueError,
    TypeError for the others) after eval.json had been rewritten with the junk."""
    code, out, err = run_main(["eval", str(run), *EVAL], capsys)
    assert code == 0, err
    path = run / "eval.json"
    value = json.loads(path.read_text())
    value["fid"]["mnist"] = dict(GOOD_FID)
    EVAL_EDITS[name](value)
    path.write_text(json.dumps(value))
    refused(["eval", str(run), *EVAL], run.parent, capsys, str(path))


def test_an_earlier_interpolation_measurement_is_kept_when_fid_is_skipped(run, capsys):
    """genzoo eval measures the midpoints of models that encode; a rerun with --fid-samples 0 keeps them."""
    code, _, err = run_main(["eval", str(run), *EVAL], capsys)
    assert code == 0, err
    path = run / "eval.json"
    value = json.loads(path.read_text())
    assert value["interpolation"] is None and value["unavailable"]["interpolation"] == "skipped (--fid-samples 0)"
    # as an evaluation with that many FID samples on this run's test split wrote it
    measured = {**GOOD_INTERPOLATION, "test_images": value["test_images"]}
    value["interpolation"] = measured
    value["eval_config"]["fid_samples"] = measured["pairs"]
    path.write_text(json.dumps(value))
    code, out, err = run_main(["eval", str(run), *EVAL], capsys)
    assert code == 0, err
    value = json.loads(path.read_text())
    assert value["interpolation"] == measured and "interpolation" in value["kept"]
    assert "interp. FID mnist" in out


def test_a_kept_measurement_the_model_cannot_have_is_not_carried_over(run, capsys):
    """Before: an iwae entry was kept for a model that reports iwae unavailable (an AE has no ELBO)."""
    from genzoo.data import TensorSplit
    from genzoo.evaluation.frechet import reference_cache_name
    from genzoo.evaluation.run_evaluation import merge_earlier

    test = TensorSplit(torch.zeros(20, 1, 28, 28))  # the test data the earlier FID names, so only capability decides
    result = {"run_config": {}, "dataset": "mnist", "fid": {}, "iwae": None,
              "unavailable": {"iwae": "ae has no ELBO", "fid": "ae cannot sample"}}
    earlier = {"run_config": {}, "iwae": {"nll": 1.0, "k": 2, "images": 20, "seconds": 0.1},
               "fid": {"mnist": {**GOOD_FID, "reference": f"x ({reference_cache_name('mnist', test)})"}}}
    merge_earlier(result, earlier, run / "eval.json", test)
    assert result["iwae"] is None and result["fid"] == {} and "kept" not in result


# -- 11: eval locks the run folder -------------------------------------------------------------


def test_eval_of_a_run_in_use_by_another_process_is_one_line(run, capsys):
    """Before: two concurrent evals (or an eval during a resume) overwrote each other's eval.json."""
    with locked(run):
        refused(["eval", str(run), *EVAL], run.parent, capsys, f"{run} is in use by another genzoo process")


# -- 12: a digest of the data in config.json ----------------------------------------------------


def other_data(root: Path) -> Path:
    """The fake data with one training pixel changed."""
    write_fake_mnist(root)
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = bytearray(images.read_bytes())
    data[16 + 100] ^= 0xFF
    images.write_bytes(bytes(data))
    return root


def test_resume_refuses_data_other_than_the_run_was_trained_on(run, tmp_path, capsys):
    """Before: resume --data-root with other data trained on silently; nothing recorded the data."""
    config = json.loads((run / CONFIG).read_text())
    assert set(config["data_sha256"]) == {"train", "test"}
    edit_checkpoint(run, lambda s: None, END_OF_EPOCH_1)
    root = other_data(tmp_path / "other")
    refused(["resume", str(run), "--data-root", str(root)], run.parent, capsys, "--data-root", "train")


def test_a_run_without_a_data_digest_still_resumes(run, capsys):
    config = json.loads((run / CONFIG).read_text())
    del config["data_sha256"]
    (run / CONFIG).write_text(json.dumps(config))
    edit_checkpoint(run, lambda s: None, END_OF_EPOCH_1)
    code, out, err = run_main(["resume", str(run)], capsys)
    assert code == 0, err


@pytest.mark.parametrize("value", [5, {"train": 5, "test": "ab"}, {"train": "x" * 64}])
def test_a_malformed_data_digest_is_one_line(value, run, capsys):
    config = json.loads((run / CONFIG).read_text())
    config["data_sha256"] = value
    (run / CONFIG).write_text(json.dumps(config))
    refused(["resume", str(run)], run.parent, capsys, f"{run / CONFIG}", "data_sha256")


# -- 13: the IDX files genzoo checked, never torchvision's legacy processed files -----------------


def test_the_checked_idx_files_are_read_not_legacy_processed_files(tmp_path):
    """Before: MNIST/processed/training.pt (pixels up to 3.9 here) was used in place of the IDX files."""
    root = write_fake_mnist(tmp_path / "data")
    processed = root / "MNIST" / "processed"
    processed.mkdir()
    for name, n in (("training.pt", 120), ("test.pt", 40)):
        torch.save((torch.full((n, 28, 28), 1000, dtype=torch.int16), torch.zeros(n, dtype=torch.int64)),
                   processed / name)
    raw = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    expected = torch.frombuffer(bytearray(raw.read_bytes()[16:]), dtype=torch.uint8).reshape(120, 1, 28, 28)
    split = registry().dataset("mnist")(root, download=False).load("train")
    assert torch.equal(split.images, expected.float() / 255)


# -- 16: huge files -------------------------------------------------------------------------------

HUGE = 200 * 2**30


@pytest.mark.parametrize("name,command", [(FILENAME, "resume"), (FILENAME, "eval"), (CONFIG, "eval"),
                                          ("metrics.jsonl", "eval"), ("eval.json", "eval")])
def test_a_huge_sparse_run_file_is_one_line_not_a_memory_error(name, command, run, capsys):
    """Before: resume and eval read the whole 200 GB file into memory: MemoryError traceback."""
    (run / name).touch()
    os.truncate(run / name, HUGE)
    code, out, err = run_main([command, str(run), *(EVAL if command == "eval" else [])], capsys)
    assert_one_line_error(code, err, str(run / name))
    assert (run / name).stat().st_size == HUGE


def test_a_checkpoint_that_is_a_folder_is_refused_not_entered(run, capsys):
    """Before: RUN/checkpoint.pt/checkpoint.pt was loaded; an epoch trained, then writing failed."""
    inner = (run / FILENAME).read_bytes()
    (run / FILENAME).unlink()
    (run / FILENAME).mkdir()
    (run / FILENAME / FILENAME).write_bytes(inner)
    refused(["resume", str(run)], run.parent, capsys, f"{run / FILENAME} is not a regular file")


def test_a_huge_sparse_weights_file_is_one_line(tmp_path, capsys):
    """Before: --inception-weights of a sparse 200 GB file was read whole: MemoryError traceback."""
    from genzoo.evaluation.weights import load_weights

    weights = tmp_path / "inception.pth"
    weights.touch()
    os.truncate(weights, HUGE)
    with pytest.raises(GenzooError, match="more than the .* genzoo opens") as info:
        load_weights(weights)
    assert "\n" not in str(info.value) and str(weights) in str(info.value)


def test_a_huge_sparse_compare_json_is_one_line(tmp_path, capsys):
    """Before: compare --resume read a sparse 200 GB compare.json whole: MemoryError traceback."""
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.json").touch()
    os.truncate(out / "compare.json", HUGE)
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert_one_line_error(code, err, str(out / "compare.json"), "more than genzoo reads")
