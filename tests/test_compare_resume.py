"""`genzoo compare` stopped part-way (Ctrl-C, SIGTERM, SIGKILL) and continued; models checked before any trains.

Two steered test models on small fake MNIST: the first trains to the end, the second
is stopped in its second epoch. ``genzoo compare --resume OUT`` must reuse the first
run untouched (its checkpoint's bytes and mtime), continue the second from its
checkpoint and write the results.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from genzoo_plugins.vae import VAE
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    GO_FILE,
    PAUSE_AT,
    PAUSE_MODEL,
    PAUSED_FILE,
    SteeredAE,
    SteeredPlugin,
    SteeredVAE,
    data_root,
    one_thread,
    reset_steering,
    run_main,
    script_command,
    snapshot,
    steered,
    subprocess_env,
)
from test_reliability_crash import wait_for_pause

from genzoo import hookimpl
from genzoo.checkpoint import FILENAME, load_checkpoint
from genzoo.compare import CompareConfig, _config_dict, read_saved_compare
from genzoo.errors import GenzooError
from genzoo.evaluation.run_evaluation import EvalConfig
from genzoo.run_folder import read_metrics

STEPS_PER_EPOCH = 12
EPOCHS = 2
COMPARE_FILE = "compare.json"


def compare_args(data_root: Path, out: Path, *models: str) -> list[str]:
    return ["compare", *(models or ("steered-ae", "steered-vae")), "--epochs", str(EPOCHS), "--latent", "2",
            "--batch-size", "10", "--device", "cpu", "--data-root", str(data_root), "--test-limit", "20",
            "--fid-samples", "0", "--iwae-k", "2", "--seed", "3", "--out", str(out)]


def stamp(path: Path) -> tuple[int, bytes]:
    return path.stat().st_mtime_ns, path.read_bytes()


def assert_continued(out: Path, first: tuple[int, bytes], capsys, *extra: str) -> None:
    """``compare --resume OUT`` reuses the first run untouched and finishes the comparison."""
    ae_steps = SteeredAE.steps
    code, stdout, err = run_main(["compare", "--resume", str(out), *extra], capsys)
    assert code == 0, err
    assert stamp(out / "runs" / "steered-ae" / FILENAME) == first  # not retrained, not rewritten
    assert SteeredAE.steps == ae_steps  # not a single step of it trained again
    assert "steered-ae: trained before" in err and "steered-vae: resuming" in err
    results = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in results["models"]] == ["steered-ae", "steered-vae"]
    for model in ("steered-ae", "steered-vae"):
        assert [r["epoch"] for r in read_metrics(out / "runs" / model)] == [1, 2]
        assert load_checkpoint(out / "runs" / model)["position"]["epoch"] == EPOCHS
    assert (out / "report.md").is_file() and (out / "compare.png").is_file()
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["steered-ae", "steered-vae"]  # no orphan


def test_ctrl_c_in_the_second_model_then_resume_trains_only_what_is_missing(steered, data_root, tmp_path, capsys):
    out = tmp_path / "cmp"
    SteeredVAE.interrupt_at = STEPS_PER_EPOCH + 5  # a real SIGINT in epoch 2 of the second model
    code, _, err = run_main(compare_args(data_root, out), capsys)
    assert code == 130
    assert err.strip().splitlines()[-1] == (
        f"Interrupted: checkpoint saved to {out / 'runs' / 'steered-vae' / FILENAME}; "
        f"resume with: genzoo compare --resume {out}")
    assert not (out / "results.json").exists()
    assert json.loads((out / COMPARE_FILE).read_text())["config"]["models"] == ["steered-ae", "steered-vae"]
    first = stamp(out / "runs" / "steered-ae" / FILENAME)

    SteeredVAE.interrupt_at = None
    assert_continued(out, first, capsys, "--device", "cpu", "--data-root", str(data_root))  # the two it takes
    assert SteeredVAE.steps == EPOCHS * STEPS_PER_EPOCH  # continued from its checkpoint: no step twice

    # Continuing a finished compare changes nothing.
    before = snapshot(out)
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0 and "already complete" in err
    assert snapshot(out) == before


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_compare_killed_in_its_second_model_continues_with_resume(signum, steered, data_root, tmp_path, capsys):
    out, paused, go = tmp_path / "cmp", tmp_path / "paused", tmp_path / "go"
    pause_at = STEPS_PER_EPOCH + 8  # epoch 2, step 8 of steered-vae, after steered-ae finished
    with open(tmp_path / "log", "w") as log:
        process = subprocess.Popen(
            script_command(*compare_args(data_root, out)),
            env=subprocess_env(**{PAUSE_AT: str(pause_at), PAUSE_MODEL: "SteeredVAE", PAUSED_FILE: str(paused),
                                  GO_FILE: str(go)}),
            stdout=subprocess.DEVNULL, stderr=log)
        wait_for_pause(paused, process, tmp_path / "log")
        process.send_signal(signum)
        go.write_text("go")
        code = process.wait(timeout=60)
    err = (tmp_path / "log").read_text()
    position = load_checkpoint(out / "runs" / "steered-vae")["position"]
    if signum == signal.SIGTERM:
        assert code == 143, err
        assert err.strip().splitlines()[-1] == (
            f"Interrupted: checkpoint saved to {out / 'runs' / 'steered-vae' / FILENAME}; "
            f"resume with: genzoo compare --resume {out}")
        assert "Traceback" not in err
        assert (position["epoch"], position["step"]) == (1, 8)
    else:
        assert code == -signal.SIGKILL
        assert (position["epoch"], position["step"]) == (1, 0)  # the end of epoch 1
    assert_continued(out, stamp(out / "runs" / "steered-ae" / FILENAME), capsys)


def test_the_same_command_into_the_same_out_points_to_resume_and_changes_nothing(steered, data_root, tmp_path,
                                                                                 capsys):
    out = tmp_path / "cmp"
    SteeredVAE.interrupt_at = 3
    assert run_main(compare_args(data_root, out), capsys)[0] == 130
    before = snapshot(out)
    code, _, err = run_main(compare_args(data_root, out), capsys)
    assert code == 1
    assert err.strip() == (f"Error: {out} holds a compare that was stopped part-way; continue it with: "
                           f"genzoo compare --resume {out}")
    assert snapshot(out) == before


@pytest.mark.parametrize("extra", [["steered-ae"], ["--epochs", "3"], ["--fid-samples", "10"]])
def test_resume_takes_the_saved_settings_and_refuses_others(extra, tmp_path, capsys):
    (tmp_path / "cmp").mkdir()
    code, _, err = run_main(["compare", "--resume", str(tmp_path / "cmp"), *extra], capsys)
    assert code == 1
    assert err.strip().startswith("Error: --resume continues a compare with the settings saved in it")


@pytest.mark.parametrize("content", [None, "not json", "[1]", '{"config": {"models": "ae"}}',
                                     '{"config": {"models": [], "epochs": "2"}}',
                                     '{"config": {"models": [], "colour": "red"}}',
                                     '{"config": {"models": [], "evaluation": {"iwae_k": 0}}}'])
def test_resume_of_a_folder_without_a_valid_compare_is_one_line(content, tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    if content is not None:
        (out / COMPARE_FILE).write_text(content)
    before = snapshot(tmp_path)
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 1 and err.startswith("Error: ") and err.count("\n") == 1, err
    assert str(out / COMPARE_FILE) in err
    assert snapshot(tmp_path) == before


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)
SAVED = {"command": "genzoo compare ae vae", "training_seconds": {"ae": 1.5},
         "config": _config_dict(CompareConfig(models=["ae", "vae"]))}
CONFIG_FIELDS = sorted(SAVED["config"]) + ["colour"]
EVALUATION_FIELDS = sorted(SAVED["config"]["evaluation"]) + ["colour"]


def damaged(change: tuple[str, str, object]) -> object:
    """A real compare.json with one field replaced (or removed), or something else altogether."""
    where, name, value = change
    saved = json.loads(json.dumps(SAVED))
    target = {"top": saved, "config": saved["config"], "evaluation": saved["config"]["evaluation"]}[where]
    if value == "<removed>":
        target.pop(name, None)
    else:
        target[name] = value
    return saved


CHANGES = st.one_of(
    st.tuples(st.just("config"), st.sampled_from(CONFIG_FIELDS), JSON | st.just("<removed>")),
    st.tuples(st.just("evaluation"), st.sampled_from(EVALUATION_FIELDS), JSON | st.just("<removed>")),
    st.tuples(st.just("top"), st.sampled_from(["config", "command", "training_seconds"]), JSON),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(CHANGES.map(lambda c: json.dumps(damaged(c)).encode()), JSON.map(lambda v: json.dumps(v).encode()),
                         st.binary(max_size=40)))
def test_any_compare_file_gives_a_checked_config_or_one_line(content, tmp_path):
    """Whatever ``compare.json`` holds, reading it gives a config the budget's checks accept, or one line naming it."""
    out = tmp_path / "cmp"
    out.mkdir(exist_ok=True)
    (out / COMPARE_FILE).write_bytes(content)
    try:
        config, command, seconds = read_saved_compare(out)
    except GenzooError as exc:
        event("refused with one line")
        assert "\n" not in str(exc) and str(out / COMPARE_FILE) in str(exc)
        return
    event("read as a config")
    assert all(isinstance(m, str) for m in config.models) and isinstance(config.evaluation, EvalConfig)
    assert config.training.epochs >= 1 and config.training.batch_size >= 1 and (config.latent is None or config.latent >= 1)
    assert command is None or isinstance(command, str)
    assert all(isinstance(v, (int, float)) for v in seconds.values())


def test_a_run_killed_before_its_first_checkpoint_is_named_not_overwritten(steered, data_root, tmp_path, capsys):
    out = tmp_path / "cmp"
    SteeredVAE.interrupt_at = 3
    assert run_main(compare_args(data_root, out), capsys)[0] == 130
    (out / "runs" / "steered-vae" / FILENAME).unlink()  # as if SIGKILL came before the first checkpoint
    SteeredVAE.interrupt_at = None
    before = snapshot(out)
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 1
    assert err.strip() == (f"Error: cannot continue {out / 'runs' / 'steered-vae'}: it has no checkpoint (it was "
                           f"stopped before its first); move it away and run genzoo compare --resume {out} "
                           "again to train it from the start")
    assert snapshot(out) == before


# -- every model is built before any trains ----------------------------------------------


class Fragile(VAE):
    """A model whose constructor fails, as a plugin's can (missing weights, a bad option)."""

    def __init__(self, config, sample_shape):
        raise ValueError("no weights for you")


class FragilePlugin:
    @hookimpl
    def register_models(self, register):
        register("fragile", Fragile)


def test_a_model_that_fails_to_build_is_found_before_any_model_trains(steered, genzoo_register, data_root,
                                                                      tmp_path, capsys, monkeypatch):
    """It used to be found only after the models named before it had trained."""
    genzoo_register(FragilePlugin(), "fragile")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    code, _, err = run_main(compare_args(data_root, tmp_path / "cmp", "steered-ae", "fragile"), capsys)
    assert code == 1
    assert err.strip() == ("Error: model 'fragile' from plugin 'fragile' (distribution 'test-fragile') failed to "
                           "build: ValueError: no weights for you")
    assert SteeredAE.steps == 0
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "runs").exists()
    assert snapshot(tmp_path) == before


def test_a_model_option_that_only_fails_when_built_is_found_before_any_model_trains(steered, data_root, tmp_path,
                                                                                    capsys):
    """``--set`` values that pass the config but not the model (an unknown loss) are found up front too."""
    code, _, err = run_main([*compare_args(data_root, tmp_path / "cmp"), "--set",
                             "steered-vae.reconstruction_loss=no-such-loss"],
                            capsys)
    assert code == 1 and err.startswith("Error: ") and "no-such-loss" in err and err.count("\n") == 1, err
    assert SteeredAE.steps == 0 and not (tmp_path / "cmp").exists()


def test_a_stop_signal_while_a_compare_evaluates_names_the_command_that_continues_it(steered, data_root, tmp_path,
                                                                                    monkeypatch, capsys):
    import genzoo.compare

    def terminated(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(genzoo.compare, "evaluate_model", terminated)
    out = tmp_path / "cmp"
    code, _, err = run_main(compare_args(data_root, out), capsys)
    assert code == 143
    assert err.strip().splitlines()[-1] == f"Interrupted: resume with: genzoo compare --resume {out}"
    monkeypatch.undo()
    first = stamp(out / "runs" / "steered-ae" / FILENAME)
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0, err
    assert "steered-vae: trained before" in err and (out / "results.json").is_file()
    assert stamp(out / "runs" / "steered-ae" / FILENAME) == first


def test_a_training_split_a_later_model_cannot_finish_on_is_refused_before_any_model_trains(steered, data_root,
                                                                                          tmp_path, capsys):
    """The AE's mixture needs a training image per component: found before the VAE named first trains."""
    code, _, err = run_main([*compare_args(data_root, tmp_path / "cmp", "steered-vae", "steered-ae"), "--set",
                             "steered-ae.prior_components=200"], capsys)
    assert code == 1 and err.startswith("Error: ") and err.count("\n") == 1, err
    assert "200" in err and "120" in err
    assert SteeredVAE.steps == 0 and SteeredAE.steps == 0
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("field, value", [("epochs", 9), ("latent", 64), ("seed", 4), ("batch_size", 20)])
def test_resume_refuses_saved_settings_that_its_runs_were_not_trained_with(field, value, steered, data_root,
                                                                            tmp_path, capsys):
    """An edited compare.json (epochs 2 -> 9) used to be trusted: the report said 9 epochs for 2-epoch runs."""
    out = tmp_path / "cmp"
    SteeredVAE.interrupt_at = 5
    assert run_main(compare_args(data_root, out, "steered-vae"), capsys)[0] == 130
    saved = json.loads((out / COMPARE_FILE).read_text())
    trained_with = saved["config"][field]
    saved["config"][field] = value
    (out / COMPARE_FILE).write_text(json.dumps(saved))
    before = snapshot(out)
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 1
    assert err.strip() == (f"Error: {out / COMPARE_FILE} does not match the run {out / 'runs' / 'steered-vae'}: "
                           f"{field} {value} in the compare, {trained_with} in the run; the compare file was "
                           "edited or the run replaced")
    assert snapshot(out) == before


def test_a_stop_right_after_results_json_is_written_loses_no_output(steered, data_root, tmp_path, monkeypatch,
                                                                     capsys):
    """results.json is the completion marker: a stop after it used to lose report.md for good."""
    import genzoo.compare

    written = genzoo.compare.atomic_write_json

    def write_then_stop(path, value):
        written(path, value)
        if Path(path).name == "results.json":
            raise KeyboardInterrupt

    monkeypatch.setattr(genzoo.compare, "atomic_write_json", write_then_stop)
    out = tmp_path / "cmp"
    assert run_main(compare_args(data_root, out, "steered-ae"), capsys)[0] == 130
    monkeypatch.undo()
    assert {"report.md", "compare.png", "results.json"} <= {p.name for p in out.iterdir()}
    report = (out / "report.md").read_bytes()

    # Outputs lost afterwards are written again from results.json, nothing retrained.
    (out / "report.md").unlink()
    (out / "compare.png").unlink()
    steps = SteeredAE.steps
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0, err
    assert (out / "report.md").read_bytes() == report and (out / "compare.png").is_file()
    assert f"wrote {out / 'report.md'}, {out / 'compare.png'} again from {out / 'results.json'}" in err
    assert SteeredAE.steps == steps
    before = snapshot(out)
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0 and "already complete" in err and snapshot(out) == before


def test_pictures_a_stop_prevented_are_drawn_by_compare_resume_and_by_resume(steered, data_root, tmp_path,
                                                                              monkeypatch, capsys):
    """A compare stopped while a run's pictures were saved used to keep the run without them for good."""
    import shutil

    import genzoo.training

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(genzoo.training, "save_pictures", stop)
    out = tmp_path / "cmp"
    assert run_main(compare_args(data_root, out, "steered-ae"), capsys)[0] == 130
    monkeypatch.undo()
    run = out / "runs" / "steered-ae"
    assert not list(run.glob("*.png"))
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    steps = SteeredAE.steps

    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0, err
    assert SteeredAE.steps == steps  # nothing trained again
    pictures = {"samples.png", "reconstructions.png", "loss.png"}
    assert {p.name for p in run.glob("*.png")} == pictures

    code, _, err = run_main(["resume", str(copy)], capsys)
    assert code == 0, err
    assert {p.name for p in copy.glob("*.png")} == pictures and SteeredAE.steps == steps


def test_reused_runs_with_the_same_folder_name_get_different_labels(steered, data_root, tmp_path, capsys):
    """Two --from-runs folders both named run used to share the label `steered-ae (run)`: one column was lost."""
    runs = [tmp_path / "a" / "run", tmp_path / "b" / "run"]
    for run in runs:
        code, _, err = run_main(["train", "steered-ae", "--latent", "2", "--epochs", "1", "--batch-size", "10",
                                 "--device", "cpu", "--data-root", str(data_root), "--test-limit", "20",
                                 "--out", str(run)], capsys)
        assert code == 0, err
    out = tmp_path / "cmp"
    code, _, err = run_main(["compare", "--from-runs", str(runs[0]), "--from-runs", str(runs[1]),
                             *compare_args(data_root, out)[3:]], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in results["models"]] == ["steered-ae (a/run)", "steered-ae (b/run)"]


def test_compare_resume_keeps_what_an_earlier_eval_of_a_run_measured(steered, data_root, tmp_path, monkeypatch,
                                                                      capsys):
    """compare --resume used to overwrite a run's eval.json: an FID measured by genzoo eval was lost."""
    import genzoo.compare

    def terminated(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(genzoo.compare, "evaluate_model", terminated)
    out = tmp_path / "cmp"
    assert run_main(compare_args(data_root, out, "steered-ae"), capsys)[0] == 143
    monkeypatch.undo()
    run = out / "runs" / "steered-ae"
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", "--test-limit", "20", "--device", "cpu",
                             "--data-root", str(data_root)], capsys)
    assert code == 0, err
    earlier = json.loads((run / "eval.json").read_text())
    from genzoo.evaluation.frechet import reference_cache_name
    from genzoo.evaluation.run_evaluation import load_test_split

    test = load_test_split("mnist", str(data_root), 20, torch.device("cpu"))  # a kept FID must name its test data
    fid = {"fid": 12.5, "samples": 300, "extractor": "mnist", "features": "mnist", "seed": 0, "seconds": 1.0,
           "reference": f"mnist test split, 20 images ({reference_cache_name('mnist', test)})"}
    earlier["fid"] = {"mnist": fid}
    earlier["kept"] = {"fid.mnist": {"eval_config": {**earlier["eval_config"], "fid_samples": 300},
                                     "test_images": 20, "evaluated_at": None}}  # its own settings
    (run / "eval.json").write_text(json.dumps(earlier))

    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0, err
    kept = json.loads((run / "eval.json").read_text())
    # An FID keyed by its extractor alone (before samplers were plugins) is read as the AE's default sampler's.
    assert kept["fid"] == {"mnist/gmm": {**fid, "sampler": "gmm"}} and "fid.mnist/gmm" in kept["kept"]
    # The comparison's own table holds only what it measured, alike for every model.
    assert json.loads((out / "results.json").read_text())["models"][0]["fid"] == {}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["vae", "ae"]), st.sampled_from(["a", "b", "a/b", "c/a"]),
                          st.sampled_from(["run", "vae"])), min_size=1, max_size=6))
def test_any_reused_runs_get_one_label_each(runs):
    """Labels key the results and the figure: any mix of models, folder names and repeats gives distinct ones."""
    from genzoo.compare import Entry, _label_reused

    reused = [Entry(model, model, Path(parent) / name, reused=True) for model, parent, name in runs]
    counts = {e.model: sum(1 for o in reused if o.model == e.model) for e in reused}
    _label_reused(reused, counts)
    event(f"{len(reused)} runs, {len({e.run_dir for e in reused})} folders")
    assert len({e.label for e in reused}) == len(reused)
    assert all(e.label.startswith(e.model) for e in reused)


def test_compare_does_not_write_the_eval_json_of_a_run_another_process_holds(steered, data_root, tmp_path,
                                                                               monkeypatch, capsys):
    """As genzoo eval does, a compare locks the run whose eval.json it writes: a concurrent eval's is not overwritten."""
    import genzoo.compare
    from genzoo.run_folder import locked

    def terminated(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(genzoo.compare, "evaluate_model", terminated)
    out = tmp_path / "cmp"
    assert run_main(compare_args(data_root, out, "steered-ae"), capsys)[0] == 143
    monkeypatch.undo()
    run = out / "runs" / "steered-ae"
    with locked(run):  # another genzoo (an eval, a resume) at work in the run
        code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 1 and err.strip().splitlines()[-1] == f"Error: {run} is in use by another genzoo process"
    assert not (run / "eval.json").exists() and not (out / "results.json").exists()
