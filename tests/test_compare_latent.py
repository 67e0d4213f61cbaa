"""`genzoo compare` draws `latent.png`: each encoding model's test codes in 2-D, as `genzoo latent` draws them.

Small steered test models on fake MNIST (40 test images, 20 used). The panels are checked
where they are handed to :func:`genzoo.figures.save_latent_scatter`, not in pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reliability_support import (  # noqa: F401 - data_root, one_thread and steered are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    snapshot,
    steered,
)

from genzoo import figures
from genzoo.evaluation.latent_space import split_labels
from genzoo.evaluation.run_evaluation import load_test_split

PNG = b"\x89PNG\r\n\x1a\n"


def compare_args(data_root: Path, out: Path, *models: str) -> list[str]:
    return ["compare", *models, "--epochs", "1", "--latent", "2", "--batch-size", "10", "--device", "cpu",
            "--data-root", str(data_root), "--test-limit", "20", "--fid-samples", "0", "--iwae-k", "2",
            "--seed", "3", "--out", str(out)]


@pytest.fixture
def drawn(monkeypatch):
    """Every call of ``save_latent_scatter``: its panels and title (the picture is still drawn)."""
    calls: list[tuple[list[figures.LatentPanel], str]] = []
    original = figures.save_latent_scatter

    def record(panels, path, title):
        calls.append((list(panels), title))
        original(panels, path, title)

    monkeypatch.setattr(figures, "save_latent_scatter", record)
    return calls


def test_compare_draws_one_panel_per_encoding_model_and_names_the_gan_left_out(steered, data_root, tmp_path,
                                                                                drawn, capsys):
    vae = tmp_path / "vae3"  # a reused run at latent 3: its panel is a PCA
    code, _, err = run_main(["train", "steered-vae", "--latent", "3", "--epochs", "1", "--batch-size", "10",
                             "--device", "cpu", "--data-root", str(data_root), "--test-limit", "20",
                             "--out", str(vae)], capsys)
    assert code == 0, err
    out = tmp_path / "cmp"
    code, _, err = run_main([*compare_args(data_root, out, "steered-ae", "steered-gan"), "--from-runs", str(vae)],
                            capsys)
    assert code == 0, err

    picture = out / "latent.png"
    assert picture.read_bytes().startswith(PNG) and picture.stat().st_size > 10_000
    assert "latent.png" in err.split("wrote ")[-1]  # named among the files written
    [(panels, title)] = drawn
    assert [p.title for p in panels] == ["steered-ae, latent 2", "steered-vae, latent 3"]
    assert list(panels[0].axes) == ["z1", "z2"] and panels[1].axes[0].startswith("PC1 (")
    labels = split_labels(load_test_split("mnist", str(data_root), 20, "cpu")).numpy()
    for panel in panels:
        assert panel.points.shape == (20, 2) and panel.labels is not None and (panel.labels == labels).all()
    assert "steered-gan" in title and "cannot encode" in title

    results = json.loads((out / "results.json").read_text())
    assert results["latent"] == {"drawn": ["steered-ae", "steered-vae"], "cannot_encode": ["steered-gan"]}
    report = (out / "report.md").read_text()
    assert "(latent.png)" in report
    assert "steered-ae, steered-vae" in report and "steered-gan cannot encode" in report


def test_compare_resume_draws_a_lost_latent_png_again(steered, data_root, tmp_path, drawn, capsys):
    out = tmp_path / "cmp"
    code, _, err = run_main(compare_args(data_root, out, "steered-ae"), capsys)
    assert code == 0, err
    report = (out / "report.md").read_bytes()
    (out / "latent.png").unlink()

    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0, err
    assert f"wrote {out / 'latent.png'} again from {out / 'results.json'}" in err
    assert (out / "latent.png").read_bytes().startswith(PNG) and (out / "report.md").read_bytes() == report
    assert [[p.title for p in panels] for panels, _ in drawn] == [["steered-ae, latent 2"]] * 2
    before = snapshot(out)
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert code == 0 and "already complete" in err and snapshot(out) == before


def test_no_latent_png_when_no_model_can_encode_and_the_report_says_why(steered, data_root, tmp_path, drawn,
                                                                       capsys):
    out = tmp_path / "cmp"
    code, _, err = run_main(compare_args(data_root, out, "steered-gan"), capsys)
    assert code == 0, err
    assert not (out / "latent.png").exists() and drawn == [] and "latent.png" not in err
    assert json.loads((out / "results.json").read_text())["latent"] == {"drawn": [], "cannot_encode": ["steered-gan"]}
    assert "No latent.png: no model compared can encode (steered-gan)" in (out / "report.md").read_text()
    before = snapshot(out)
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)  # nothing to draw again
    assert code == 0 and "already complete" in err and snapshot(out) == before


@pytest.mark.parametrize("latent", [
    {"drawn": ["a\x1b[2Jb"], "cannot_encode": []},
    {"drawn": ["steered-ae"], "cannot_encode": ["steered-gan"]},
    {"drawn": "steered-ae", "cannot_encode": []},
    {"drawn": ["steered-ae"]},
    [],
], ids=["escape-label", "not-a-model-compared", "not-a-list", "no-cannot-encode", "not-an-object"])
def test_an_edited_latent_entry_of_results_json_is_one_line(steered, data_root, tmp_path, capsys, latent):
    out = tmp_path / "cmp"
    assert run_main(compare_args(data_root, out, "steered-ae"), capsys)[0] == 0
    results = json.loads((out / "results.json").read_text())
    results["latent"] = latent
    (out / "results.json").write_text(json.dumps(results))
    (out / "report.md").unlink()
    code, _, err = run_main(["compare", "--resume", str(out)], capsys)
    assert_one_line_error(code, err, "results.json", "latent", "move it away")
    assert not (out / "report.md").exists()


def test_a_report_from_a_results_json_before_latent_png_says_nothing_of_it(steered, data_root, tmp_path, capsys):
    from genzoo.compare import render_report

    out = tmp_path / "cmp"
    assert run_main(compare_args(data_root, out, "steered-ae"), capsys)[0] == 0
    summary = json.loads((out / "results.json").read_text())
    assert "latent.png" in render_report(summary)
    del summary["latent"]
    assert "latent.png" not in render_report(summary)
