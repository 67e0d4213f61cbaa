"""Evaluation and compare files a third hostile pass found trusted (issue 10, fourth look).

Another test split given to ``genzoo eval``; a kept FID measured on other test data;
NaN samples given an FID; escape sequences and absurd numbers in ``eval.json``;
``results.json`` with cwd-relative, foreign or unreadable content; control characters
from ``--from-runs`` paths in ``report.md``; a file where the FID cache's folder goes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from genzoo_plugins.vae import VAE, VAEConfig
from reliability_support import assert_one_line_error, idx_bytes, one_thread, run_main, write_fake_mnist  # noqa: F401

from genzoo.compare import render_report
from genzoo.data import TensorSplit
from genzoo.errors import GenzooError
from genzoo.evaluation.frechet import check_cache, fid
from genzoo.evaluation.report import markdown_table
from genzoo.evaluation.run_evaluation import EvalConfig, evaluate_model
from genzoo.train_config import TrainConfig
from genzoo.training import start_run

pytestmark = pytest.mark.usefixtures("one_thread")

EVAL = ["--fid-samples", "0", "--iwae-k", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch VAE run (test limit 20) on fake data, and a second data folder with other test images."""
    root = tmp_path_factory.mktemp("base")
    write_fake_mnist(root / "data")
    other = Path(shutil.copytree(root / "data", root / "other"))
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (40, 28, 28), generator=g, dtype=torch.uint8)
    (other / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    torch.set_num_threads(1)
    config = TrainConfig(model="vae", epochs=1, batch_size=10, seed=3, device="cpu", data_root=str(root / "data"),
                         train_limit=40, test_limit=20)
    start_run(config, {"latent": 2, "hidden": 16}, out=root / "vae")
    return root


@pytest.fixture
def run(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    return Path(shutil.copytree(base / "vae", tmp_path / "vae"))


# -- 13: eval on other test data ------------------------------------------------------


@pytest.mark.parametrize("limit", ["20", "30"])
def test_eval_on_other_test_data_says_so_in_one_line(run, base, capsys, limit):
    """Before (fifth look): a warning, and eval.json written of the other data as the run's; now refused, as resume."""
    code, _, err = run_main(["eval", str(run), "--data-root", str(base / "other"), "--test-limit", limit, *EVAL],
                            capsys)
    assert_one_line_error(code, err, "test data found now differ", "config.json")
    assert not (run / "eval.json").exists()


def test_eval_on_the_run_s_own_test_data_says_nothing_of_it(run, base, capsys):
    code, _, err = run_main(["eval", str(run), "--data-root", str(base / "data"), "--test-limit", "30", *EVAL],
                            capsys)
    assert code == 0 and "differ" not in err, err


# -- 15: a kept measurement from other test data ----------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["digest", "older-file-without-digest"])
def test_a_kept_fid_measured_on_other_test_data_is_dropped(run, base, capsys, legacy):
    # The eval.json of a run of the same settings from before data digests, measured on other test data
    # (eval refuses other data for a run that records its own), copied into this run.
    older = Path(shutil.copytree(run, run.with_name("older")))
    config = json.loads((older / "config.json").read_text())
    del config["data_sha256"]
    (older / "config.json").write_text(json.dumps(config))
    code, _, err = run_main(["eval", str(older), "--data-root", str(base / "other"), "--test-limit", "20",
                             "--fid-samples", "10", "--features", "mnist", "--iwae-k", "2", "--device", "cpu"], capsys)
    assert code == 0, err
    stored = json.loads((older / "eval.json").read_text())
    assert "mnist/model" in stored["fid"]
    (run / "eval.json").write_text(json.dumps(stored))
    if legacy:  # an eval.json from before the digest was recorded: its FID reference still names its data
        del stored["test_data_sha256"]
        (run / "eval.json").write_text(json.dumps(stored))
    code, _, err = run_main(["eval", str(run), "--data-root", str(base / "data"), "--test-limit", "20", *EVAL], capsys)
    assert code == 0, err
    assert "other test data" in err and "replaced" in err, err
    assert json.loads((run / "eval.json").read_text())["fid"] == {}


def test_a_kept_fid_of_the_same_test_data_is_kept(run, base, capsys):
    args = ["eval", str(run), "--data-root", str(base / "data"), "--test-limit", "20"]
    assert run_main([*args, "--fid-samples", "10", "--features", "mnist", "--iwae-k", "2", "--device", "cpu"],
                    capsys)[0] == 0
    code, _, err = run_main([*args, *EVAL], capsys)
    assert code == 0 and "kept" in err, err
    assert "mnist/model" in json.loads((run / "eval.json").read_text())["fid"]


# -- 10: samples that are no pixels ------------------------------------------------------


class OddVAE(VAE):
    """A VAE whose samples are NaN, or 1000 times too bright."""

    fill: float = float("nan")

    def sample(self, n: int) -> torch.Tensor:
        return torch.full((n, 1, 28, 28), self.fill)


@pytest.mark.parametrize("fill", [float("nan"), float("inf"), 1000.0, -0.5])
def test_samples_that_are_no_pixels_get_no_fid(fill, tmp_path):
    model = OddVAE.build(VAEConfig(latent=2, hidden=16), (1, 28, 28))
    model.fill = fill
    test = TensorSplit(torch.rand(20, 1, 28, 28), torch.zeros(20, dtype=torch.long))
    config = EvalConfig(fid_samples=10, features="mnist", iwae_k=2, sampling_images=10, cache=str(tmp_path))
    result = evaluate_model(model, test, config, name="oddvae")
    assert result["fid"] == {}
    assert "oddvae" in result["unavailable"]["fid"] and "[0, 1]" in result["unavailable"]["fid"]
    with pytest.raises(GenzooError, match=r"\[0, 1\]"):
        fid(torch.full((10, 1, 28, 28), fill), test, "mnist", cache=tmp_path)


def test_a_sample_picture_of_no_pixels_is_not_drawn(tmp_path, capsys):
    """The run is trained and saved by then: one warning line, and no picture of clamped values."""
    from genzoo.training import save_pictures

    model = OddVAE.build(VAEConfig(latent=2, hidden=16), (1, 28, 28))
    test = TensorSplit(torch.rand(20, 1, 28, 28), torch.zeros(20, dtype=torch.long))
    save_pictures(model, "oddvae", test, test, tmp_path, [])
    err = capsys.readouterr().err
    assert "'oddvae'" in err and "[0, 1]" in err and "samples.png" in err, err
    assert not (tmp_path / "samples.png").exists() and (tmp_path / "reconstructions.png").exists()


# -- 7: text and numbers of eval.json -----------------------------------------------------


def test_an_escape_sequence_in_a_kept_text_field_is_refused(run, base, capsys):
    args = ["eval", str(run), "--data-root", str(base / "data"), "--test-limit", "20"]
    assert run_main([*args, "--fid-samples", "10", "--features", "mnist", "--iwae-k", "2", "--device", "cpu"],
                    capsys)[0] == 0
    stored = json.loads((run / "eval.json").read_text())
    stored["fid"]["mnist/model"]["extractor"] = "x\x1b]0;PWNED\x07\x1b[2J\nSECOND LINE"
    (run / "eval.json").write_text(json.dumps(stored))
    before = (run / "eval.json").read_bytes()
    code, out, err = run_main([*args, *EVAL], capsys)
    line = assert_one_line_error(code, err, "eval.json", "extractor")
    assert "\x1b" not in line + out and (run / "eval.json").read_bytes() == before


def test_a_huge_number_prints_compactly():
    result = {"model": "m", "parameters": 1, "seconds": {"x": 1e300}, "fid": {
        "mnist/model": {"fid": 1e300, "samples": 10, "extractor": "e", "reference": "r", "features": "mnist",
                        "sampler": "model", "seed": 0, "seconds": 1.0}}}
    table = markdown_table([result])
    assert "1e+300" in table and max(len(cell) for cell in table.split("|")) < 40, table


# -- 9 and 8: results.json ------------------------------------------------------------------


def compare_args(data_root: Path, out: str) -> list[str]:
    return ["compare", "ae", "--epochs", "1", "--latent", "2", "--batch-size", "10", "--device", "cpu",
            "--data-root", str(data_root), "--train-limit", "40", "--test-limit", "20", "--fid-samples", "0",
            "--iwae-k", "2", "--seed", "3", "--out", out]


@pytest.fixture(scope="module")
def compared(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete compare of the AE, started from its parent folder with a relative ``--out``."""
    where = tmp_path_factory.mktemp("compared")
    cwd = os.getcwd()
    os.chdir(where)
    try:
        from genzoo.cli import main
        with pytest.raises(SystemExit) as info:
            main(compare_args(base / "data", "cmp"))
        assert not info.value.code
    finally:
        os.chdir(cwd)
    return where / "cmp"


@pytest.fixture
def cmp(compared: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(compared, tmp_path / "copy" / "cmp"))


def test_a_lost_figure_is_redrawn_from_the_compare_s_own_runs_from_any_folder(cmp, tmp_path, capsys, monkeypatch):
    results = json.loads((cmp / "results.json").read_text())
    assert not any(r["run"].startswith("cmp") for r in results["models"]), results["models"][0]["run"]
    decoy = tmp_path / "cmp" / "runs"  # a folder of the same relative name in the folder --resume starts from
    decoy.mkdir(parents=True)
    (cmp / "compare.png").unlink()
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(["compare", "--resume", str(cmp)], capsys)
    assert code == 0 and (cmp / "compare.png").is_file(), err
    monkeypatch.chdir(decoy)
    (cmp / "compare.png").unlink()
    code, _, err = run_main(["compare", "--resume", str(cmp)], capsys)
    assert code == 0 and (cmp / "compare.png").is_file(), err


def _edit(cmp: Path, change) -> None:
    results = json.loads((cmp / "results.json").read_text())
    change(results)
    (cmp / "results.json").write_text(json.dumps(results))


@pytest.mark.parametrize("change, missing", [
    (lambda r: r.__setitem__("total_seconds", 10**400), "report.md"),
    (lambda r: r["models"][0]["reconstruction"].__setitem__("mse_per_pixel", "x"), "report.md"),
    (lambda r: r["models"][0].__setitem__("model", "a\x1b[2Jb"), "report.md"),
    (lambda r: r["models"][0]["seconds"].__setitem__("reconstruction", 10**400), "report.md"),
    (lambda r: r["config"].__setitem__("epochs", float("nan")), "report.md"),
    (lambda r: r.__setitem__("models", []), "report.md"),
    (lambda r: r["models"][0].__setitem__("run", "/elsewhere/runs/vae"), "compare.png"),
    (lambda r: r["models"][0].update(run="/elsewhere/base_ae", reused_run=True), "compare.png"),
], ids=["huge-total", "text-measurement", "escape-label", "huge-phase", "nan-epochs", "no-models", "foreign-run",
        "foreign-reused-run"])
def test_an_edited_results_file_is_one_line(cmp, capsys, change, missing):
    _edit(cmp, change)
    (cmp / missing).unlink()
    code, _, err = run_main(["compare", "--resume", str(cmp)], capsys)
    assert_one_line_error(code, err, "results.json", "move it away")
    assert not (cmp / missing).exists()


# -- 12: --from-runs paths with control characters, and the Budget line ----------------------------


def test_control_characters_of_reused_runs_are_escaped_and_the_budget_is_the_runs(base, tmp_path, capsys,
                                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    odd = Path(shutil.copytree(base / "vae", tmp_path / "nl\nesc\x1b]0;T\x07run"))
    (odd / "eval.json").unlink(missing_ok=True)
    code, _, err = run_main(["compare", "--from-runs", str(odd), "--data-root", str(base / "data"),
                             "--test-limit", "20", *EVAL, "--out", "c2"], capsys)
    assert code == 0, err
    report = (tmp_path / "c2" / "report.md").read_text()
    assert "\x1b" not in report and "\x07" not in report and "\x1b" not in err
    assert "\\n" in report and "esc" in report
    budget = report.split("## Budget", 1)[1].split("\n\n", 2)[1]
    assert "no model was trained" in budget and "epochs 5" not in budget, budget


def test_report_budget_of_reused_runs_only_from_a_summary(compared):
    summary = json.loads((compared / "results.json").read_text())
    summary["models"][0]["reused_run"] = True
    assert "no model was trained" in render_report(summary)


# -- 16: a file where the FID cache's extractor folder goes -------------------------------------


@pytest.mark.parametrize("kind", ["file", "dangling-link"])
def test_a_file_where_the_extractor_folder_goes_is_named_before_any_work(tmp_path, kind):
    from genzoo.evaluation import mnist_classifier
    from genzoo.evaluation.weights import file_sha256

    cache = tmp_path / "fid"
    cache.mkdir()
    folder = cache / f"mnist-{file_sha256(mnist_classifier.WEIGHTS)[:12]}"
    if kind == "file":
        folder.write_text("x")
    else:
        folder.symlink_to(tmp_path / "nowhere")
    with pytest.raises(GenzooError, match=str(folder).replace("\\", "\\\\")):
        check_cache(["mnist"], cache)


def test_a_compare_file_asking_for_a_trillion_sampling_images_is_refused(tmp_path: Path) -> None:
    """``compare.json``'s ``sampling_images`` edited to 10**12 was accepted (the fifth hostile pass, minor): the
    sampling-speed phase would have drawn for days. Bounded as ``fid_samples`` is, one line on --resume."""
    from genzoo.compare import COMPARE_FILE, CompareConfig, _save_progress, read_saved_compare

    _save_progress(tmp_path, "genzoo compare ae", CompareConfig(models=["ae"]), {})
    saved = json.loads((tmp_path / COMPARE_FILE).read_text())
    assert read_saved_compare(tmp_path)[0].evaluation.sampling_images == 10_000
    saved["config"]["evaluation"]["sampling_images"] = 10**12
    (tmp_path / COMPARE_FILE).write_text(json.dumps(saved))
    with pytest.raises(GenzooError, match=r"not a usable genzoo compare file: sampling_images must be at most "
                                          r"100,000 \(more would run for days\), got 1000000000000"):
        read_saved_compare(tmp_path)
