"""`genzoo compare` and `genzoo eval` end to end on small subsets, and their one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import urllib.error

import matplotlib.image
import pytest
from evaluation_support import single_thread  # noqa: F401 - fixture

from genzoo.cli import main
from genzoo.evaluation import weights

SMALL = ["--epochs", "1", "--latent", "8", "--train-limit", "500", "--test-limit", "300",
         "--fid-samples", "300", "--iwae-k", "5"]


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("compare")


@pytest.fixture(scope="module")
def compared(workdir):
    """One small three-model comparison, shared by the tests below."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        mp.setenv("GENZOO_CACHE", str(workdir / "cache"))
        code, out, err = run_cli(["compare", "ae", "vae", "gan", *SMALL, "--out", "cmp"])
    return workdir / "cmp", code, out, err


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_compare_writes_report_results_and_figure_and_lists_every_model(compared):
    out_dir, code, out, err = compared
    assert code == 0, err
    for name in ("report.md", "results.json", "compare.png", "latent.png"):
        assert (out_dir / name).is_file(), name
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert {"ae", "vae", "gan"} <= set(rows)
    # The VAE's one n/a: the FID column of the AE's sampler (gmm); each FID column is of one sampler.
    assert rows["gan"].count("n/a") >= 4 and rows["vae"].count("n/a") == 1
    assert "FID mnist" in out and "300 samples" in out and "K=5" in out
    assert "ae samples, sampler gmm: decodes draws from a 10-component Gaussian mixture fitted to its training" in out
    for phase in ("ae: training 1 epochs", "vae: reconstruction", "vae: IWAE NLL, K=5", "gan: FID mnist"):
        assert phase in err, phase  # progress names the model and the phase

    results = json.loads((out_dir / "results.json").read_text())
    by_model = {r["model"]: r for r in results["models"]}
    assert list(by_model) == ["ae", "vae", "gan"]
    assert by_model["gan"]["reconstruction"] is None and by_model["gan"]["iwae"] is None
    assert by_model["vae"]["iwae"]["k"] == 5 and by_model["vae"]["test_images"] == 300
    assert [list(r["fid"]) for r in results["models"]] == [["mnist/gmm"], ["mnist/model"], ["mnist/model"]]
    assert all(entry["samples"] == 300 for r in results["models"] for entry in r["fid"].values())
    assert all(r["run_config"]["train_config"]["seed"] == 0 for r in results["models"])
    assert results["mnist_classifier"]["test_accuracy"] > 0.98
    for r in results["models"]:  # trained runs get their own eval.json too
        assert json.loads((out_dir / "runs" / r["model"] / "eval.json").read_text())["model"] == r["model"]

    report = (out_dir / "report.md").read_text()
    assert "| gan |" in report and "FID mnist sampler gmm, 300 samples" in report and "compare.png" in report
    assert "Wall time per phase" in report

    picture = matplotlib.image.imread(out_dir / "compare.png")
    assert picture.shape[1] > 2 * picture.shape[0] * 0.6  # three columns side by side


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_compare_never_overwrites_an_output_folder(compared, workdir, monkeypatch):
    out_dir = compared[0]
    before = (out_dir / "results.json").read_bytes()
    monkeypatch.chdir(workdir)
    code, out, err = run_cli(["compare", "gan", *SMALL, "--out", "cmp"])
    assert code == 1
    assert err.startswith("Error: ") and "already exists" in err and err.count("\n") == 1
    assert (out_dir / "results.json").read_bytes() == before


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_compare_reuses_finished_runs(compared, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("GENZOO_CACHE", str(workdir / "cache"))
    code, out, err = run_cli(["compare", "--from-runs", "cmp/runs/vae", "--from-runs", "cmp/runs/gan",
                              "--test-limit", "300", "--fid-samples", "300", "--iwae-k", "5", "--out", "again"])
    assert code == 0, err
    assert "training" not in err and "reusing cmp/runs/vae" in err
    first = {r["model"]: r for r in json.loads((compared[0] / "results.json").read_text())["models"]}
    again = {r["model"]: r for r in json.loads((workdir / "again" / "results.json").read_text())["models"]}
    assert again["vae"]["reused_run"] is True
    # Same run, same test split, same seeds: the same numbers.
    assert again["vae"]["iwae"]["nll"] == first["vae"]["iwae"]["nll"]
    assert again["gan"]["fid"]["mnist/model"]["fid"] == first["gan"]["fid"]["mnist/model"]["fid"]


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_eval_writes_eval_json_into_the_run(compared, workdir, monkeypatch):
    monkeypatch.setenv("GENZOO_CACHE", str(workdir / "cache"))
    run = compared[0] / "runs" / "ae"
    code, out, err = run_cli(["eval", str(run), "--fid-samples", "200", "--test-limit", "200"])
    assert code == 0, err
    saved = json.loads((run / "eval.json").read_text())
    assert saved["fid"]["mnist/gmm"]["samples"] == 200 and saved["test_images"] == 200
    assert "FID mnist" in out and "200 samples" in out


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_eval_without_inception_weights_offline_is_one_line(compared, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(weights, "download_file", offline)
    code, out, err = run_cli(["eval", str(compared[0] / "runs" / "gan"), "--features", "inception",
                              "--fid-samples", "10", "--test-limit", "10"])
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "TORCH_HOME" in lines[0] and "hub/checkpoints" in lines[0]


@pytest.mark.parametrize("args,message", [
    (["compare", "vea"], "unknown model 'vea'"),
    (["compare"], "nothing to compare"),
    (["compare", "vae", "vae"], "each model may be named once"),
    (["eval", "no-such-run"], "not a genzoo run folder"),
])
def test_bad_requests_are_one_line_errors(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(args)
    assert code == 1 and err.startswith("Error: ") and message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing was created


@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
@pytest.mark.usefixtures("mnist_root")  # real MNIST from the default data folder
def test_compare_checks_the_inception_weights_before_training_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(weights, "download_file", lambda *a, **k: (_ for _ in ()).throw(
        urllib.error.URLError("offline")))
    code, out, err = run_cli(["compare", "gan", *SMALL, "--features", "inception", "--out", "cmp"])
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 1 and len(errors) == 1 and errors[0].startswith("Error: Inception weights not found")
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "runs").exists()
