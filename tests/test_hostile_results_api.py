"""Results files and the Python API after a second hostile pass over issue 10 (cases 4, 5, 6).

An ``eval.json`` whose kept settings were deleted or altered by hand, a ``compare.json``
whose settings, command or seconds were edited, and Python API calls with arguments of
the wrong type: each must be one clear refusal (one ``Error:`` line, one
``GenzooError``), never a number re-attached to other settings, text sent to the
terminal unchecked, or another exception.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from reliability_support import (  # noqa: F401 - data_root, one_thread and steered are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    snapshot,
    steered,
)
from test_compare_resume import compare_args
from test_run_files import EVAL, made, refused, run  # noqa: F401 - fixtures

import genzoo
from genzoo import GenzooError

pytestmark = pytest.mark.usefixtures("one_thread")

# -- 4: an earlier FID re-attached to the settings of another evaluation -------------------------

FID = ["--fid-samples", "30", "--features", "mnist", "--iwae-k", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def measured(made: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The finished run's eval.json after an evaluation with FID, then one with ``--fid-samples 0``."""
    root = tmp_path_factory.mktemp("measured")
    run_dir = Path(shutil.copytree(made / "finished", root / "run"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENZOO_CACHE", str(root / "cache"))
        from genzoo.cli import main

        for args in (FID, EVAL):
            with pytest.raises(SystemExit) as done:
                main(["eval", str(run_dir), *args])
            assert not done.value.code
            if args is FID:
                first = json.loads((run_dir / "eval.json").read_text())
    merged = json.loads((run_dir / "eval.json").read_text())
    assert merged["fid"]["mnist/model"]["samples"] == 30 and merged["eval_config"]["fid_samples"] == 0
    return {"first": first, "merged": merged}


def kept_config(d: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = d["kept"]["fid.mnist/model"]["eval_config"]
    return config


#: Edits of a consistent eval.json after which some entry's own record disagrees with the settings
#: it would be kept under; each is refused, naming the file.
EDITS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "kept deleted (the FID would get fid_samples 0)": ("merged", lambda d: d.pop("kept")),
    "kept fid.mnist emptied of its settings": ("merged", lambda d: d["kept"].update({"fid.mnist/model": {}})),
    "kept fid_samples altered": ("merged", lambda d: kept_config(d).update(fid_samples=200)),
    "kept seed altered": ("merged", lambda d: kept_config(d).update(seed=7)),
    "kept features of another extractor": ("merged", lambda d: kept_config(d).update(features="inception")),
    "kept test images altered": ("merged", lambda d: d["kept"]["fid.mnist/model"].update(test_images=999)),
    "kept settings for a measurement the file lacks": ("merged", lambda d: d["kept"].update(
        {"fid.inception/model": d["kept"]["fid.mnist/model"]})),
    "top-level fid_samples altered (no kept)": ("first", lambda d: d["eval_config"].update(fid_samples=0)),
    "top-level features altered (no kept)": ("first", lambda d: d["eval_config"].update(features="inception")),
    "top-level eval_config deleted": ("first", lambda d: d.pop("eval_config")),
    "iwae k not the eval_config's": ("merged", lambda d: d["iwae"].update(k=50)),
    "iwae images not the test images": ("merged", lambda d: d["iwae"].update(images=7)),
    "reconstruction images not the test images": ("merged", lambda d: d["reconstruction"].update(images=7)),
    "negative_elbo images not the test images": ("merged", lambda d: d["negative_elbo"].update(images=7)),
    "sampling images not the eval_config's": ("merged", lambda d: d["sampling"].update(images=7)),
    "sampling batch not the eval_config's": ("merged", lambda d: d["sampling"].update(batch_size=7)),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_an_entry_whose_own_record_disagrees_with_its_settings_is_refused(name, measured, run, capsys):
    """Before: with ``kept`` deleted, the FID of 30 samples was kept again under ``kept.fid.mnist`` with
    eval_config fid_samples 0 (other edits likewise re-attached), exit 0."""
    which, edit = EDITS[name]
    value = json.loads(json.dumps(measured[which]))
    edit(value)
    path = run / "eval.json"
    path.write_text(json.dumps(value))
    refused(["eval", str(run), *EVAL], run.parent, capsys, str(path), "move it away")
    with pytest.raises(GenzooError, match="move it away"):
        print(genzoo.open_run(run).evaluation)


def test_a_consistent_file_is_still_merged_with_each_entry_under_its_own_settings(measured, run, capsys):
    """The check refuses only contradictions: genzoo's own files, first and merged, are kept as before."""
    for which in ("first", "merged"):
        (run / "eval.json").write_text(json.dumps(measured[which]))
        code, _, err = run_main(["eval", str(run), *EVAL], capsys)
        assert code == 0, err
        again = json.loads((run / "eval.json").read_text())
        assert again["fid"]["mnist/model"] == measured["first"]["fid"]["mnist/model"]
        assert again["kept"]["fid.mnist/model"]["eval_config"] == measured["first"]["eval_config"]


# -- 5: compare.json checked against the runs it continues, and its command and seconds ----------


@pytest.fixture
def stopped(steered, data_root, tmp_path, monkeypatch, capsys) -> Path:  # noqa: F811 - fixtures
    """A compare of one steered AE (latent 2, hidden 8) stopped by SIGTERM after training, before evaluating."""
    import genzoo.compare

    def terminated(*args: Any, **kwargs: Any) -> None:
        signal.raise_signal(signal.SIGTERM)

    out = tmp_path / "cmp"
    with monkeypatch.context() as patch:
        patch.setattr(genzoo.compare, "evaluate_model", terminated)
        assert run_main([*compare_args(data_root, out, "steered-ae"), "--set", "steered-ae.hidden=8"], capsys)[0] == 143
    assert (out / "runs" / "steered-ae" / "config.json").is_file()
    return out


COMPARE_EDITS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "latent null while the run used 2": lambda d: d["config"].update(latent=None),
    "the model option the run was built with deleted": lambda d: d["config"].update(model_options={}),
    "a command with an escape sequence": lambda d: d.update(command="genzoo compare \x1b[2J\x1b[31mowned"),
    "a command with a newline": lambda d: d.update(command="genzoo compare ae\n\nrm -rf ~"),
    "a command that is a number": lambda d: d.update(command=5),
    "negative seconds": lambda d: d.update(training_seconds={"steered-ae": -3.0}),
    "NaN seconds": lambda d: d.update(training_seconds={"steered-ae": math.nan}),
    "infinite seconds": lambda d: d.update(training_seconds={"steered-ae": math.inf}),
    "seconds true": lambda d: d.update(training_seconds={"steered-ae": True}),
    "seconds of a model the compare does not train": lambda d: d.update(training_seconds={"bogus": 1.0}),
    "seconds that are a list": lambda d: d.update(training_seconds=[1.0]),
}


def test_an_edited_compare_file_is_refused_before_any_work(stopped, capsys):
    """Before: latent null resumed and reported 'latent None' for runs trained with 2; the command went
    to report.md with its escape sequences and newlines; seconds -3, NaN, true and 'bogus' were reported."""
    path = stopped / "compare.json"
    original = path.read_bytes()
    saved = json.loads(original)
    for edit in COMPARE_EDITS.values():
        value = json.loads(original)
        edit(value)
        path.write_text(json.dumps(value))
        refused(["compare", "--resume", str(stopped)], stopped, capsys, str(path))
        path.write_bytes(original)
    assert saved["config"]["latent"] == 2
    code, _, err = run_main(["compare", "--resume", str(stopped)], capsys)  # the file as genzoo wrote it
    assert code == 0, err
    assert f"Command: `{saved['command']}`" in (stopped / "report.md").read_text()


def test_a_command_with_unprintable_arguments_is_saved_escaped_so_it_can_be_resumed(monkeypatch):
    """genzoo never saves a command its own ``--resume`` would refuse (an --out with a newline)."""
    from genzoo.compare import command_line

    monkeypatch.setattr("sys.argv", ["genzoo", "compare", "vae", "--out", "a\nb\x1b"])
    line = command_line()
    assert line.isprintable() and line == "genzoo compare vae --out 'a\\nb\\x1b'"


# -- 6: the Python API refuses arguments of the wrong type with one GenzooError ------------------

NUL = "runs/a\x00b"


def any_value(integers: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.booleans(), integers, st.floats(), st.binary(max_size=8),
                     st.lists(st.integers(-2, 8), max_size=3),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                     st.text(max_size=8), st.text(max_size=8).map(lambda t: t + "\x00"),
                     st.sampled_from(["vae", "ae", "gan", "mnist", "cpu", "auto", "cuda", "runs", "bce-sum"]))


ANY = any_value(st.integers())
#: Option values: sizes stay small (a hidden layer of 10**9 units is a model too large to build, not a misuse).
OPTION_VALUE = any_value(st.integers(-3, 64))
OPTIONS = ["latent", "hidden", "lr", "loss", "reconstruction_loss", "prior_components", "beta1", "adversarial_loss",
           "bogus"]
API = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def one_error(call: Callable[[], Any], *given: Any) -> None:
    """The call succeeds, or raises one GenzooError of one line; any other exception fails the test.

    A line break in the message may only come from a ``given`` argument quoted in it (a
    folder named "\\n" is named as it is; the command line joins the lines).
    """
    try:
        call()
    except GenzooError as exc:
        own = str(exc)
        for text in given:
            own = own.replace(text, "") if isinstance(text, str) and text else own
        assert "\n" not in own and str(exc), repr(exc)
        event("GenzooError")
    else:
        event("success")


@pytest.mark.parametrize("call,needle", [
    (lambda: genzoo.get_model(None), "model name must be a string, got None"),
    (lambda: genzoo.get_model(5), "model name must be a string, got 5"),
    (lambda: genzoo.get_model(["vae"]), "model name must be a string, got ['vae']"),
    (lambda: genzoo.get_model("vae", dataset=3), "dataset name must be a string, got 3"),
    (lambda: genzoo.get_model("vae", sample_shape="abc"), "sample_shape must be a sequence of positive integers"),
    (lambda: genzoo.get_model("vae", sample_shape=b"ab"), "sample_shape must be a sequence of positive integers"),
    (lambda: genzoo.get_model("vae", sample_shape={1: 2}), "sample_shape must be a sequence of positive integers"),
    (lambda: genzoo.get_model("vae", latent="x"), "latent must be a positive integer, got 'x'"),
    (lambda: genzoo.get_model("vae", loss=5), "loss name must be a string, got 5"),
    (lambda: genzoo.load_model(None), "run_dir must be a path (str or os.PathLike), got None"),
    (lambda: genzoo.load_model(5), "run_dir must be a path (str or os.PathLike), got 5"),
    (lambda: genzoo.load_model(b"runs/x"), "run_dir must be a path (str or os.PathLike), got b'runs/x'"),
    (lambda: genzoo.load_model(NUL), "run_dir must not contain a NUL character"),
    (lambda: genzoo.open_run(None), "run_dir must be a path (str or os.PathLike), got None"),
    (lambda: genzoo.open_run(5), "run_dir must be a path (str or os.PathLike), got 5"),
    (lambda: genzoo.open_run(b"x"), "run_dir must be a path (str or os.PathLike), got b'x'"),
    (lambda: genzoo.open_run(NUL), "run_dir must not contain a NUL character"),
], ids=["get_model(None)", "get_model(5)", "get_model([vae])", "dataset=3", "sample_shape='abc'",
        "sample_shape=bytes", "sample_shape=dict", "latent='x'", "loss=5", "load_model(None)", "load_model(5)",
        "load_model(bytes)", "load_model(NUL)", "open_run(None)", "open_run(5)", "open_run(bytes)", "open_run(NUL)"])
def test_each_misuse_named_in_the_issue_is_one_genzoo_error(call, needle, chdir_tmp):
    """Before: TypeError tracebacks (not iterable, unhashable, expected str), bytes and dicts taken as shapes,
    and a NUL path said '... is embedded null byte'."""
    with pytest.raises(GenzooError) as raised:
        call()
    assert needle in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("device", [7, None, ["cpu"], b"cpu", "gpu", "cpu\x00"])
def test_a_bad_device_is_one_genzoo_error_from_load_model_and_run_model(device, run):
    """Before: ``device=7`` was an AttributeError ('int' object has no attribute 'startswith'), after the
    checkpoint had been read."""
    with pytest.raises(GenzooError, match="device"):
        genzoo.load_model(run, device=device)
    with pytest.raises(GenzooError, match="device"):
        genzoo.open_run(run).model(device=device)


@API
@given(name=ANY)
def test_get_model_with_any_name_is_a_model_or_one_genzoo_error(name):
    one_error(lambda: genzoo.get_model(name, latent=2), name)


@API
@given(dataset=ANY, shape=ANY)
def test_get_model_with_any_dataset_or_shape_is_a_model_or_one_genzoo_error(dataset, shape):
    one_error(lambda: genzoo.get_model("vae", dataset=dataset, latent=2), dataset)
    one_error(lambda: genzoo.get_model("ae", sample_shape=shape, latent=2))


@API
@given(model=st.sampled_from(["vae", "ae", "gan"]),
       option=st.sampled_from(OPTIONS), value=OPTION_VALUE)
def test_get_model_with_any_option_value_is_a_model_or_one_genzoo_error(model, option, value):
    one_error(lambda: genzoo.get_model(model, **{option: value}), value)


@API
@given(path=ANY, device=ANY)
@example(path=NUL, device="cpu")
def test_load_model_and_open_run_with_any_path_or_device_are_one_genzoo_error(path, device, run, chdir_tmp):
    one_error(lambda: genzoo.load_model(path), path)
    one_error(lambda: genzoo.open_run(path), path)
    one_error(lambda: genzoo.load_model(run, device=device), device)
    one_error(lambda: genzoo.open_run(run).model(device=device), device)
