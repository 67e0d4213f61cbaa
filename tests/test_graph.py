"""``genzoo graph``: the autograd graph of one training step's loss, drawn with torchviz.

The pictures are checked for the layers and autograd nodes they must show; bad input and
missing optional tools are one line with nothing written.
"""

from __future__ import annotations

import sys

import pytest
from reliability_support import data_root, run_main  # noqa: F401 - fixtures
from test_latent import train


@pytest.mark.parametrize("model", ["vae", "gan"])
def test_graph_draws_one_training_steps_loss_as_svg_and_png(model, tmp_path, capsys):
    code, out, err = run_main(["graph", model, "--out", str(tmp_path / "pictures" / f"{model}.svg")], capsys)
    assert code == 0, err
    svg = (tmp_path / "pictures" / f"{model}.svg").read_text()
    png = (tmp_path / "pictures" / f"{model}.png").read_bytes()
    assert png.startswith(b"\x89PNG") and "<svg" in svg
    first_layer = {"vae": "encoder.0.weight", "gan": "generator.0.weight"}[model]
    assert first_layer in svg and "AddmmBackward0" in svg and "AccumulateGrad" in svg
    assert f"wrote {tmp_path / 'pictures' / model}.svg and" in out


def test_graph_of_a_finished_run_uses_its_model(data_root, tmp_path, capsys):  # noqa: F811 - the fixture
    run = train(data_root, tmp_path / "run", capsys, "ae", 3)
    code, _, err = run_main(["graph", str(run), "--out", str(tmp_path / "g")], capsys)
    assert code == 0, err
    assert "(16, 784)" in (tmp_path / "g.svg").read_text()  # the run's 16 hidden units, not the default 400


@pytest.mark.parametrize("missing", ["torchviz", "dot"])
def test_graph_without_its_optional_tools_says_what_to_install(missing, tmp_path, capsys, monkeypatch):
    if missing == "torchviz":
        monkeypatch.setitem(sys.modules, "torchviz", None)  # import torchviz now raises ImportError
    else:
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, out, err = run_main(["graph", "vae", "--out", str(tmp_path / "g")], capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert "pip install 'genzoo[graph]'" in err and "apt-get install graphviz" in err
    # each is named by its own check, before any drawing (which would fail later and name dot too)
    assert {"torchviz": "torchviz (torchviz is not installed)", "dot": "dot, which is not on PATH"}[missing] in err
    assert not list(tmp_path.glob("g.*"))


@pytest.mark.parametrize("case", ["exists", "unknown", "unknown dataset", "dataset of a run"])
def test_graph_refuses_bad_input_in_one_line(case, tmp_path, capsys, monkeypatch):
    (tmp_path / "g.png").write_bytes(b"earlier")
    (tmp_path / "run").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no dot either: the input is named first
    args = {"exists": ["vae"], "unknown": ["no-such-model"], "unknown dataset": ["vae", "--dataset", "mnits"],
            "dataset of a run": [str(tmp_path / "run"), "--dataset", "mnist"]}[case]
    code, out, err = run_main(["graph", *args, "--out", str(tmp_path / "g")], capsys)
    assert code == 1 and err.count("\n") == 1 and err.startswith("Error: "), err
    assert {"exists": "already exist", "unknown": "neither a registered model", "unknown dataset": "mnist",
            "dataset of a run": "knows its dataset"}[case] in err
    assert (tmp_path / "g.png").read_bytes() == b"earlier" and not (tmp_path / "g.svg").exists()
