"""Found by the seventh look (sixth hostile pass): rich markup in outside text (F5).

A run folder, ``--out`` or ``--from-runs`` path, a reused run's label, a sampler's
description or a plugin's docstring holding ``[/bold]``, ``[red]`` or ``:smile:`` is shown
as it is: it was rich markup, so ``genzoo eval``, ``compare`` (``--resume``,
``--from-runs``), ``plugins`` and ``list`` ended in a ``MarkupError`` traceback after their
work, or swallowed the text. Each test failed before its fix (docs/reliability.md,
"Found by the seventh look").
"""

from __future__ import annotations

import io
import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability_support import run_main, write_fake_mnist
from test_security import finished_run

from genzoo import Sampler, hookimpl

EVAL = ["--test-limit", "20", "--iwae-k", "2", "--device", "cpu"]
#: A description that was markup: a closing tag no tag opened, a link and an emoji code.
DESCRIPTION = "[/bold] closing tag [link=x] [red]:smile:"


class Markup(Sampler):
    """Draws [/x] uniform [red]noise:smile:."""

    def sample(self, n: int) -> torch.Tensor:
        return torch.rand(n, *self.model.sample_shape)

    def description(self, short: bool = False) -> str:
        return DESCRIPTION


@hookimpl
def register_samplers(register: Any) -> None:
    register("markup", Markup)


@pytest.fixture
def markup_sampler(genzoo_register: Any) -> None:
    genzoo_register(types.SimpleNamespace(register_samplers=register_samplers), "seventhb")


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A console wide enough that no table cell or title wraps: the text is then found whole."""
    monkeypatch.setenv("COLUMNS", "400")


def assert_clean(code: int, out: str, err: str) -> None:
    assert code == 0 and "Traceback" not in err and "MarkupError" not in out + err, out + err


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seventhb")
    return finished_run(write_fake_mnist(root / "data"), root / "run")


def copy_run(run: Path, to: Path) -> Path:
    to.mkdir(parents=True)
    for file in run.iterdir():
        (to / file.name).write_bytes(file.read_bytes())
    return to


def test_eval_of_a_run_folder_with_markup_shows_its_path(vae_run, chdir_tmp, wide, capsys):
    """``genzoo eval 'br[/bold]:smile:x'`` wrote eval.json, then failed in the table title."""
    run = copy_run(vae_run, chdir_tmp / "br[" / "bold]:smile:x")
    code, out, err = run_main(["eval", "br[/bold]:smile:x", "--fid-samples", "0",
                               "--data-root", str(vae_run.parent / "data"), *EVAL], capsys)
    assert_clean(code, out, err)
    assert "genzoo eval br[/bold]:smile:x" in out, out
    assert (run / "eval.json").is_file()


def test_eval_shows_a_sampler_description_with_markup_as_it_is(markup_sampler, vae_run, tmp_path, wide, capsys):
    """A sampler's description is a note under the table: it was read as markup."""
    run = copy_run(vae_run, tmp_path / "run")
    code, out, err = run_main(["eval", str(run), "--sampler", "markup", "--fid-samples", "10", "--features", "mnist",
                               "--data-root", str(vae_run.parent / "data"), *EVAL], capsys)
    assert_clean(code, out, err)
    assert f"sampler markup: {DESCRIPTION}" in out, out
    assert json.loads((run / "eval.json").read_text())["samplers"] == {"markup": DESCRIPTION}


@pytest.mark.parametrize("command", [["plugins"], ["list"]])
def test_plugins_lists_a_docstring_with_markup_as_it_is(markup_sampler, wide, command, capsys):
    """``genzoo plugins`` is where one looks for a bad plugin: it crashed on this one's docstring."""
    code, out, err = run_main(command, capsys)
    assert_clean(code, out, err)
    assert "Draws [/x] uniform [red]noise:smile:." in out, out


def compare_args(data: Path, out: str, *models: str) -> list[str]:
    return ["compare", *models, "--epochs", "1", "--latent", "2", "--batch-size", "20",
            "--device", "cpu", "--data-root", str(data), "--train-limit", "40", "--test-limit", "20",
            "--fid-samples", "0", "--iwae-k", "2", "--out", out]


def test_compare_and_resume_into_a_folder_with_markup(chdir_tmp, wide, capsys):
    """``--out 'cm[/b]x'``: compare, a resume that evaluates again and a resume of a complete one."""
    data = write_fake_mnist(chdir_tmp / "data")
    out = "cm[/b]:smile:x"
    code, stdout, err = run_main(compare_args(data, out, "vae"), capsys)
    assert_clean(code, stdout, err)
    assert f"genzoo compare ({out})" in stdout, stdout
    assert f"wrote {out}/report.md" in err, err
    (chdir_tmp / out / "results.json").unlink()  # not complete: the resume evaluates and reports again
    code, stdout, err = run_main(["compare", "--resume", out], capsys)
    assert_clean(code, stdout, err)
    assert f"trained before, in {out}/runs/vae" in err and f"genzoo compare ({out})" in stdout, stdout + err
    code, stdout, err = run_main(["compare", "--resume", out], capsys)
    assert_clean(code, stdout, err)
    assert f"the compare in {out} is already complete; nothing to do" in err, err


def test_compare_from_runs_with_markup_in_their_paths(vae_run, chdir_tmp, wide, capsys):
    """``--from-runs 'br[/bold]x'`` failed in the "reusing" rule; a folder ``r[red]x`` lost ``[red]`` in the
    labels, the progress bars and the budget warning."""
    first = copy_run(vae_run, chdir_tmp / "br[" / "bold]x")
    # Another batch size: the budget warning names both runs.
    finished_run(vae_run.parent / "data", chdir_tmp / "r[red]:smile:x", batch_size=20)
    code, stdout, err = run_main([*compare_args(vae_run.parent / "data", "cmf"), "--from-runs", "br[/bold]x",
                                  "--from-runs", "r[red]:smile:x"], capsys)
    assert_clean(code, stdout, err)
    assert "reusing br[/bold]x" in err and "reusing r[red]:smile:x" in err, err
    assert "vae (r[red]:smile:x)" in stdout, stdout  # the label, in the table
    assert "vae (r[red]:smile:x): reconstruction" in err, err  # and in its progress bars
    assert "warning: the models were trained on different budgets (vae (bold]x): " in err, err
    assert "; vae (r[red]:smile:x): " in err, err
    assert first.is_dir()


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from("[]/\\:=#@ablinkredsmile"), min_size=1, max_size=30))
def test_the_table_shows_any_text_as_it_is(text):
    """Any title, model label, dataset or sampler description: the rendered table holds it unchanged."""
    from rich.console import Console

    from genzoo.evaluation.report import NOT_MEASURED, rich_table

    result = {"model": text, "parameters": 1, "seconds": {"x": 1.0}, "dataset": text, "test_images": 3,
              "samplers": {"s": text}}
    console = Console(width=1000, record=True, file=io.StringIO())
    console.print(rich_table([result], title=text))
    lines = [line.strip(" \u2502") for line in console.export_text().splitlines()]
    assert lines[0] == text, lines
    assert any(line.split(" ")[0] == text and "\u2502" in line for line in lines), lines  # the model column
    assert f"{text} samples, sampler s: {text}" in lines and f"all metrics on the {text} test split, 3 images" in lines \
        and NOT_MEASURED in lines, lines


@pytest.mark.parametrize("title", [r"run r$\x$ samples", "cost $5 and $$", r"a_b^c {x} \alpha"])
def test_a_picture_title_with_dollars_is_drawn_as_written(title: str, tmp_path: Path) -> None:
    """A reused run named ``r$\\x$`` (its label in compare.png's titles) made matplotlib parse math and fail
    after all the evaluation: titles are plain text."""
    from genzoo import figures

    figures.save_samples(torch.rand(4, 1, 28, 28), tmp_path / "s.png", title)
    figures.save_fid_curves({title: ([1, 2], [3.0, 2.0])}, tmp_path / "c.png", title)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
