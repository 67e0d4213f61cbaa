"""``compare --set MODEL.latent=N``: train's ``--latent`` is an option every model takes, as ``lr`` and ``loss`` are
(twenty-fourth hostile pass, files M8: ``Error: --set 'vae.latent=5': vae has no option 'latent'``)."""

from __future__ import annotations

import json

import pytest
from reliability_support import (  # noqa: F401 - data_root, one_thread and steered are fixtures
    data_root,
    one_thread,
    run_main,
    steered,
)
from test_compare_latent import compare_args

from genzoo.errors import GenzooError
from genzoo.options import parse_setting


def test_set_takes_a_models_latent_size_as_train_would() -> None:
    assert parse_setting("vae.latent=5", ["vae"]) == ("vae", "latent", 5)
    for text in ("vae.latent=0", "vae.latent=2.5"):
        with pytest.raises(GenzooError, match="--set 'vae.latent="):
            parse_setting(text, ["vae"])


def test_a_compare_trains_a_model_at_its_own_latent_and_its_report_says_so(steered, data_root, tmp_path,  # noqa: F811
                                                                           capsys) -> None:
    out = tmp_path / "cmp"
    code, _, err = run_main([*compare_args(data_root, out, "steered-ae", "steered-vae"),
                             "--set", "steered-vae.latent=3"], capsys)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    latents = {r["model"]: r["run_config"]["model_config"]["latent"] for r in results["models"]}
    assert latents == {"steered-ae": 2, "steered-vae": 3}
    report = (out / "report.md").read_text()
    assert "latent 2," in report and "- steered-vae: --set latent=3" in report, report


def test_an_export_of_a_run_that_lost_metric_lines_says_so(data_root, tmp_path, capsys) -> None:  # noqa: F811
    """Twenty-fourth pass, files M6: the export copied a metrics.jsonl missing epoch 2 without a word, exit 0, where
    eval and resume name the lost lines. (A single lost epoch is now ``epoch 2``, not ``epochs 2``.)"""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--latent", "2", "--epochs", "2", "--batch-size", "10", "--device",
                             "cpu", "--data-root", str(data_root), "--test-limit", "20", "--out", str(run)], capsys)
    assert code == 0, err
    metrics = run / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines(keepends=True)[0])
    code, _, err = run_main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "exp")], capsys)
    assert code == 0, err
    assert err == (f"genzoo: warning: {metrics} has lost the lines of epoch 2; the checkpoint holds epoch 2, so the "
                   "export holds its weights, without those epochs' training metrics\n")
    assert (tmp_path / "exp" / "metrics.jsonl").read_text() == metrics.read_text()


def test_an_empty_torch_home_is_unset_not_the_current_folder(tmp_path, monkeypatch, capsys) -> None:
    """Twenty-fifth pass, files M5: ``TORCH_HOME=`` read, and downloaded, the FID weights in ``./hub/checkpoints``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    code, out, err = run_main(["data", "where"], capsys)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("FID weights"))
    assert f"{tmp_path / 'home' / '.cache' / 'torch' / 'hub' / 'checkpoints'}/" in line, out


def test_a_compare_json_whose_models_were_changed_is_refused_naming_them(steered, data_root, tmp_path,  # noqa: F811
                                                                         capsys) -> None:
    """Twenty-fifth pass, files M4: a models list doubled or cut was refused with a message about training_seconds,
    quoting values that were all valid."""
    from reliability_support import assert_one_line_error

    out = tmp_path / "cmp"
    code, _, err = run_main(compare_args(data_root, out, "steered-ae", "steered-vae"), capsys)
    assert code == 0, err
    saved = json.loads((out / "compare.json").read_text())
    (out / "results.json").unlink()
    for models, needle in ((["steered-ae", "steered-ae"], "config field models must be a list of distinct names"),
                           (["steered-ae"], "training_seconds names 'steered-vae', not among its models "
                                            "(steered-ae): the models list or the seconds were changed")):
        (out / "compare.json").write_text(json.dumps({**saved, "config": {**saved["config"], "models": models}}))
        code, _, err = run_main(["compare", "--resume", str(out)], capsys)
        assert_one_line_error(code, err, needle)
