"""Findings of the twenty-sixth hostile pass in ``genzoo graph`` and ``genzoo compare``.

Before: ``graph`` of a model whose loss is a deep autograd graph was a 70-line RecursionError traceback from
torchviz (plugins F16); a wide one passed Graphviz's own stderr line through and wrote a shrunken PNG without a word
of genzoo's (plugins M5); ``graph vae`` beside a run folder ``vae`` drew the registered model silently (files M4).
"""

from __future__ import annotations

import os

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import assert_one_line_error, register_model, run_main


class DeepVAE(VAE):
    """Its loss goes through 3000 more operations, one after the other: a graph 6000 autograd nodes deep."""

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stats = dict(super().loss(x))
        v = stats["nelbo"]
        for _ in range(3000):
            v = v * 1.0 + 0.0
        stats["nelbo"] = v
        return stats


class WideVAE(VAE):
    """Its loss adds 600 branches side by side: a drawing wider than a bitmap may be (32767 pixels)."""

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stats = dict(super().loss(x))
        bias = self.decoder[-1].bias
        stats["nelbo"] = stats["nelbo"] + torch.stack([bias[i] * 0 for i in range(600)]).sum()
        return stats


def test_graph_of_a_loss_too_deep_for_torchviz_is_one_line_and_writes_nothing(genzoo_register, tmp_path,
                                                                              capsys) -> None:
    """Plugins F16: torchviz's make_dot recurses once a node; the RecursionError was a traceback."""
    register_model(genzoo_register, "deep28h", DeepVAE)
    code, _, err = run_main(["graph", "deep28h", "--out", str(tmp_path / "g")], capsys)
    assert_one_line_error(code, err, "the loss graph of deep28h (DeepVAE) is 6,", "autograd nodes deep, too deep for "
                                     "torchviz to draw", "nothing was written")
    assert not list(tmp_path.iterdir())


def test_graph_too_wide_for_a_bitmap_says_so_in_genzoos_words(genzoo_register, tmp_path, capsys) -> None:
    """Plugins M5: dot's 'graph is too large for cairo-renderer bitmaps. Scaling by 0.249998 to fit' reached the
    user as dot wrote it, beside an unreadable PNG and exit 0."""
    register_model(genzoo_register, "wide28h", WideVAE)
    code, out, err = run_main(["graph", "wide28h", "--out", str(tmp_path / "g")], capsys)
    assert code == 0, err
    assert "dot:" not in err and "cairo" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genzoo: warning: the graph is too large for a bitmap"), err
    assert f"so {tmp_path / 'g.png'} is scaled down to " in lines[0] and f"{tmp_path / 'g.svg'} is full size" in err
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG") and "<svg" in (tmp_path / "g.svg").read_text()


def test_graph_of_a_name_that_is_a_model_and_a_folder_says_which(tmp_path, capsys, monkeypatch) -> None:
    """Files M4: a run folder ``vae`` here, and ``graph vae`` drew the registered model without a word. The model it
    still is (as documented, MODEL first), named with the way to the folder; ``vae/`` or ``./vae`` is the folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vae").mkdir()  # no run in it: asked for, the folder is refused as no run
    code, out, err = run_main(["graph", "vae", "--out", "g"], capsys)
    assert code == 0, err
    assert err == ("genzoo: warning: vae is both a registered model and a folder here; drawing the registered model "
                   "vae (write ./vae for the run folder)\n")
    assert "encoder.0.weight" in (tmp_path / "g.svg").read_text()
    for spelled in ("vae/", f".{os.sep}vae"):
        code, _, err = run_main(["graph", spelled, "--out", "h"], capsys)
        assert_one_line_error(code, err, "not a genzoo run folder")
    code, _, err = run_main(["graph", "vae", "--dataset", "mnist", "--out", "i"], capsys)  # --dataset: a MODEL's
    assert code == 0 and err == "", err


def test_anything_else_dot_writes_to_stderr_is_one_line_in_genzoos_words() -> None:
    """Plugins M5: every line of dot's stderr, not only the scaling one, is genzoo's one line: a warning when the
    picture was drawn, the error's reason when it was not."""
    from genzoo.autograd_graph import _dot_said, _render
    from genzoo.errors import GenzooError

    said: dict[str, str] = {}
    assert _render("digraph { a [shape=bogus] }", "png", said).startswith(b"\x89PNG")
    assert _render("digraph { a [shape=bogus] }", "svg", said).startswith(b"<?xml")
    assert said == {"Warning: using box for unknown shape bogus": "png"}  # said once, not once a picture
    assert _dot_said(*next(iter(said.items())), []) == ("Graphviz's dot, drawing the PNG: Warning: using box for "
                                                        "unknown shape bogus")
    with pytest.raises(GenzooError, match=r"^Graphviz's dot could not draw the graph as SVG \(Error: <stdin>: syntax "
                                          r"error in line 1 near '}'\); install them"):
        _render("digraph { a -> }", "svg", said)
