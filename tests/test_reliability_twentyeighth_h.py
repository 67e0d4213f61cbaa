"""Findings of the twenty-sixth hostile pass in ``genzoo graph`` and ``genzoo compare``.

Before: ``graph`` of a model whose loss is a deep autograd graph was a 70-line RecursionError traceback from
torchviz (plugins F16); a wide one passed Graphviz's own stderr line through and wrote a shrunken PNG without a word
of genzoo's (plugins M5); ``graph vae`` beside a run folder ``vae`` drew the registered model silently (files M4).
``compare``'s report.md showed its command unquoted, a model ``vae|big`` as a shell pipe (plugins M6), and an edited
compare.json's ``model_options`` were taken for a model the compare does not have, or refused without naming the file
(files M3).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from genzoo_plugins.vae.model import VAE
from reliability_support import assert_one_line_error, data_root, register_model, run_main  # noqa: F401
from test_compare_latent import compare_args


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


@pytest.fixture
def stopped(genzoo_register, data_root, tmp_path, capsys, monkeypatch) -> Path:  # noqa: F811
    """A finished compare of ``vae|big28h`` (a VAE, at latent 3 by ``--set``) and ``ae``, run as typed in a shell,
    with its results.json and report.md removed: one ``compare --resume`` evaluates again."""
    register_model(genzoo_register, "vae|big28h", VAE)
    out = tmp_path / "cmp"
    args = [*compare_args(data_root, out, "vae|big28h", "ae"), "--set", "vae|big28h.latent=3"]
    monkeypatch.setattr(sys, "argv", ["genzoo", *args])  # what the report's command is made from
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    (out / "results.json").unlink()
    (out / "report.md").unlink()
    return out


def test_the_command_is_quoted_as_a_shell_needs_it(monkeypatch) -> None:
    """Plugins M6: report.md showed ``genzoo compare vae|big ae ...``, which a shell reads as a pipe."""
    from genzoo.compare import command_line

    monkeypatch.setattr(sys, "argv", ["genzoo", "compare", "vae|big", "ae", "--out", "my runs/$x", "--set",
                                      "vae|big.latent=3"])
    assert command_line() == "genzoo compare 'vae|big' ae --out 'my runs/$x' --set 'vae|big.latent=3'"


def test_markdown_code_holds_a_command_with_backticks() -> None:
    """Plugins M6: a quoted argument may hold a backtick, which ended report.md's inline code early."""
    from genzoo.compare import _code

    assert _code("genzoo compare 'a`b'") == "``genzoo compare 'a`b'``"


#: Edits of compare.json's model_options, and the reason each is refused for.
OPTION_EDITS = [
    ({"vae|big28h": {"latent": 3}, "dcgan": {"latent": 7}},
     "model_options names 'dcgan', not among its models (vae|big28h, ae): the models list or the options were changed"),
    ({"vae|big28h": {"latent": "3"}}, "model_options.vae|big28h.latent must be a positive integer, got '3'"),
    ({"vae|big28h": {"latent": 3, "bogus": 1}}, "model_options.vae|big28h.bogus: unknown option(s) for VAEConfig: "
                                                "bogus"),
]


def test_model_options_of_an_edited_compare_file_are_held_to_its_models_and_named_as_its(stopped, capsys) -> None:
    """Files M3: options for ``dcgan``, which the compare does not have, were taken (report.md listed ``- dcgan: --set
    latent=7``); ``"latent": "3"`` and ``"bogus": 1`` were refused in the words of the model's config, without naming
    compare.json. The file as genzoo wrote it resumes, and its report shows the command quoted (plugins M6)."""
    path = stopped / "compare.json"
    original = path.read_text()
    saved = json.loads(original)
    assert saved["config"]["model_options"] == {"vae|big28h": {"latent": 3}}
    for options, needle in OPTION_EDITS:
        path.write_text(json.dumps({**saved, "config": {**saved["config"], "model_options": options}}))
        code, _, err = run_main(["compare", "--resume", str(stopped)], capsys)
        assert_one_line_error(code, err, f"{path} is not a usable genzoo compare file: {needle}")
        assert not (stopped / "report.md").exists() and not (stopped / "results.json").exists()
    path.write_text(original)
    code, _, err = run_main(["compare", "--resume", str(stopped)], capsys)
    assert code == 0, err
    report = (stopped / "report.md").read_text()
    assert saved["command"].startswith("genzoo compare 'vae|big28h' ae --epochs 1 ")
    assert saved["command"].endswith(" --set 'vae|big28h.latent=3'") and f"Command: `{saved['command']}`" in report
    assert "- vae|big28h: --set latent=3" in report and "dcgan" not in report
