"""Found by the nineteenth hostile pass (files F5, F6, M1, M2): output paths with ``..``, ranges shown late, a line.

F5: ``--out RUN/new/..`` (a missing folder, then ``..``) passed the "already exists and is not an empty folder"
check, tested on the path as given, then ``mkdir(parents=True)`` made ``new`` and the path was the finished run:
``train`` and ``compare`` wrote over it, exit 0; ``export`` and ``latent`` failed after the work naming their hidden
temporary folder and left ``new`` behind. Every output path (train, compare, export, latent, sample and graph
``--out``; the leaderboard's ``--out`` and ``--markdown``) is now taken without its ``..`` (``genzoo.files.
plain_path``) before any check and before any folder is made. F6: the same path bypassed the leaderboard's refusal
of a ``--markdown`` file it did not write (another run's ``config.json``). M1: ``--iwae-k``, ``--fid-samples``,
``--pairs`` (and ``--fid-curve``, ``--epochs``) showed no upper bound in ``--help`` and were refused only seconds
later; click refuses them now, and the leaderboard refuses the bounds ``genzoo`` would refuse after its training.
M2: ``export RUN`` without ``--format`` printed click's list as a literal ``\\n\\t``. Noticed on the way: ``genzoo
export .`` was a traceback. Each test failed before its fix (docs/reliability.md, the rows of the nineteenth
hostile pass).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click
import pytest
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    snapshot,
)
from test_leaderboard import QUICK, fake_work, load_script, run_script

from genzoo.cli import cli, click_line
from genzoo.files import plain_path
from genzoo.train_config import MAX_EPOCHS

TINY = ["--epochs", "1", "--batch-size", "20", "--device", "cpu", "--latent", "2"]
USED = "already exists and is not an empty folder; choose another --out (genzoo never overwrites earlier results)"


@pytest.fixture
def finished(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A finished tiny vae run (the victim of the report), trained on the fake MNIST."""
    run = tmp_path / "victim"
    code, _, err = run_main(["train", "vae", *TINY, "--hidden", "16", "--out", str(run), "--data-root",
                             str(data_root)], capsys)
    assert code == 0, err
    return run


def dotdot(folder: Path) -> str:
    """``FOLDER/new/..``, whose ``new`` does not exist: the report's path to ``FOLDER``."""
    assert not (folder / "new").exists()
    return str(folder / "new" / "..")


# -- F5: --out FOLDER/new/.. -------------------------------------------------------------------------------------


def test_train_into_a_finished_run_through_a_missing_folder_and_dotdot_is_refused(finished, data_root, capsys):
    """The report's: every file of the finished run was replaced (config.json now seed 5), exit 0."""
    before = snapshot(finished)
    code, _, err = run_main(["train", "vae", *TINY, "--seed", "5", "--out", dotdot(finished), "--data-root",
                             str(data_root)], capsys)
    assert assert_one_line_error(code, err) == f"Error: {finished} {USED}"
    assert snapshot(finished) == before and not (finished / "new").exists()


def test_compare_into_a_finished_compare_through_dotdot_is_refused(data_root, tmp_path, capsys):
    """The report's: the finished compare's results and report were replaced, and it reported a run of seed 0
    as of seed 3."""
    old = tmp_path / "oldc"
    old.mkdir()
    (old / "results.json").write_text("{}")
    code, _, err = run_main(["compare", "ae", *TINY, "--fid-samples", "0", "--fid-curve", "0", "--iwae-k", "2",
                             "--seed", "3", "--data-root", str(data_root), "--out", dotdot(old)], capsys)
    assert assert_one_line_error(code, err) == f"Error: {old} {USED}"
    assert sorted(p.name for p in old.iterdir()) == ["results.json"]


def test_a_compare_stopped_in_the_folder_dotdot_names_is_one_to_resume(data_root, tmp_path, capsys):
    old = tmp_path / "oldc"
    old.mkdir()
    (old / "compare.json").write_text("{}")
    code, _, err = run_main(["compare", "ae", *TINY, "--fid-samples", "0", "--fid-curve", "0", "--data-root",
                             str(data_root), "--out", dotdot(old)], capsys)
    assert assert_one_line_error(code, err) == (f"Error: {old} holds a compare that was stopped part-way; continue "
                                                f"it with: genzoo compare --resume {old}")


@pytest.mark.parametrize("command", [["export", "--format", "safetensors"], ["latent", "--pairs", "0"]])
def test_export_and_latent_through_dotdot_are_refused_before_the_work_leaving_nothing(command, finished, tmp_path,
                                                                                       capsys):
    """The report's: refused after the work with ``Directory not empty: .../.v3.export-hyq480if`` (their hidden
    temporary folder), and the ``new`` folder they made left behind."""
    target = shutil.copytree(finished, tmp_path / "v3")
    before = snapshot(target)
    code, _, err = run_main([command[0], str(finished), *command[1:], "--out", dotdot(target)], capsys)
    assert assert_one_line_error(code, err) == f"Error: {target} {USED}"
    assert snapshot(target) == before and not (target / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "v3", "victim"]


def test_sample_through_dotdot_finds_the_file_it_would_replace(finished, tmp_path, capsys):
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "s.png").write_bytes(b"an earlier picture")
    code, _, err = run_main(["sample", str(finished), "-n", "4", "--out", str(tmp_path / "pictures" / "new" / ".." /
                                                                             "s.png")], capsys)
    assert assert_one_line_error(code, err) == (f"Error: {tmp_path / 'pictures' / 's.png'} already exists; genzoo "
                                                "never overwrites it: choose another --out")
    assert (tmp_path / "pictures" / "s.png").read_bytes() == b"an earlier picture"
    assert not (tmp_path / "pictures" / "new").exists()


def test_graph_through_dotdot_finds_the_pictures_it_would_replace(tmp_path, capsys):
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "g.svg").write_text("<svg/>")
    code, _, err = run_main(["graph", "vae", "--out", str(tmp_path / "pictures" / "new" / ".." / "g")], capsys)
    assert assert_one_line_error(code, err) == (f"Error: {tmp_path / 'pictures' / 'g.svg'} already exist(s); choose "
                                                "another --out (genzoo never overwrites a picture)")
    assert not (tmp_path / "pictures" / "new").exists()


def test_a_dotdot_naming_a_new_folder_makes_only_that_folder(data_root, tmp_path, capsys):
    """``--out sub/../fresh`` is ``fresh``: the run goes there, named so, and no ``sub`` is made for it."""
    code, out, err = run_main(["train", "vae", *TINY, "--hidden", "16", "--out", str(tmp_path / "sub" / ".." /
                                                                                    "fresh"),
                               "--data-root", str(data_root)], capsys)
    assert code == 0, err
    assert f"run folder: {tmp_path / 'fresh'}\n" in out
    assert (tmp_path / "fresh" / "checkpoint.pt").is_file() and not (tmp_path / "sub").exists()


def test_export_of_the_current_folder_goes_beside_it(finished, monkeypatch, capsys):
    """Noticed on the way: ``genzoo export .`` in a run folder was a ``ValueError`` traceback (``PosixPath('.') has
    an empty name``), from the default ``RUN_DIR-export`` of a RUN_DIR with no name of its own."""
    monkeypatch.chdir(finished)
    code, out, err = run_main(["export", ".", "--format", "safetensors"], capsys)
    export = Path(os.path.realpath(finished.parent)) / "victim-export"
    assert (code, out) == (0, f"wrote {export}\n"), err
    assert (export / "config.json").read_bytes() == (finished / "config.json").read_bytes()


def test_plain_path_takes_each_dotdot_where_the_kernel_takes_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "victim").mkdir()
    (tmp_path / "elsewhere" / "d").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere" / "d")
    assert plain_path("victim/new/..") == Path("victim")  # lexical, relative as typed
    assert plain_path("victim/new/../x/y") == Path("victim/x/y")
    assert plain_path("../above") == Path("../above")
    assert plain_path("new/..") == Path(".")
    assert plain_path("victim/./x") == Path("victim/x")  # no ``..``: as given
    # after a link, the parent of its target, as mkdir and open would go (the real, absolute path)
    real = Path(os.path.realpath(tmp_path))
    assert plain_path("link/../x") == real / "elsewhere" / "x"
    assert plain_path(tmp_path / "link" / "new" / ".." / ".." / "x") == real / "elsewhere" / "x"


# -- F6 (and M3): the leaderboard's --markdown and --out ---------------------------------------------------------


def test_the_leaderboard_refuses_another_runs_config_json_through_dotdot(tmp_path):
    """The report's: ``--markdown victim/new/../config.json`` replaced the run's config.json with the table."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "config.json").write_text('{\n  "model": "vae"\n}\n')
    line = run_script("--out", str(tmp_path / "lb"), "--markdown", str(victim / "new" / ".." / "config.json"),
                      *QUICK)
    assert line == (f"leaderboard: --markdown {victim / 'config.json'} is not a table this script wrote (it does not "
                    "start with '# Leaderboard: MNIST FIDs'), so it is not replaced; give the table a new file, or "
                    "that table")
    assert (victim / "config.json").read_text() == '{\n  "model": "vae"\n}\n'
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["config.json", "victim"]


def test_the_leaderboard_reads_the_board_its_out_names_through_dotdot(tmp_path):
    """Hostile pass M3: ``--out LB/new/..`` read no ``LB/new/../leaderboard.json`` (``new`` missing), started an empty
    board and dropped LB's earlier rows; the board it names is the one read (here one of the wrong shape)."""
    board = tmp_path / "lb" / "leaderboard.json"
    board.parent.mkdir()
    board.write_text("not json")
    line = run_script("--out", str(tmp_path / "lb" / "new" / ".."), "--markdown", str(tmp_path / "lb.md"), *QUICK)
    assert line.startswith(f"leaderboard: {board} is not valid JSON")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["lb", "leaderboard.json"]


def test_the_leaderboard_writes_its_table_where_dotdot_leads(tmp_path, monkeypatch):
    script = load_script()
    fake_work(script, monkeypatch)
    script.main(["--out", str(tmp_path / "lb"), "--markdown", str(tmp_path / "docs" / "new" / ".." / "lb.md"),
                 "--only", "ae+gmm", *QUICK[2:]])
    assert (tmp_path / "docs" / "lb.md").read_text().startswith("# Leaderboard: MNIST FIDs")
    assert not (tmp_path / "docs" / "new").exists()


# -- M1: the ranges of the counts, in --help and refused by click ------------------------------------------------


@pytest.mark.parametrize("command, option, shown", [
    ("eval", "--iwae-k", "[1<=x<=10000]"), ("eval", "--fid-samples", "x=0 or 2<=x<=100000]"),
    ("compare", "--iwae-k", "[1<=x<=10000]"), ("compare", "--fid-samples", "x=0 or 2<=x<=100000]"),
    ("compare", "--fid-curve", "x=0 or 2<=x<=10000]"), ("train", "--fid-curve", "x=0 or 2<=x<=10000]"),
    ("latent", "--pairs", "x=0 or 2<=x<=100000]"), ("train", "--epochs", f"1<=x<={MAX_EPOCHS}]"),
])
def test_each_count_shows_its_whole_range_in_help(command, option, shown, capsys):
    code, out, _ = run_main([command, "--help"], capsys)
    assert code == 0
    text = " ".join(out.split())
    assert shown in text[text.index(option + " "):].split(" --")[0], text


@pytest.mark.parametrize("args, line", [
    (["eval", "nowhere", "--iwae-k", "100000000"], "Invalid value for '--iwae-k': 100000000 is not in the range "
                                                   "1<=x<=10000."),
    (["eval", "nowhere", "--fid-samples", "100001"], "Invalid value for '--fid-samples': 100001 is not in the range "
                                                     "x=0 or 2<=x<=100000."),
    (["eval", "nowhere", "--fid-samples", "1"], "Invalid value for '--fid-samples': 1 is not in the range x=0 or "
                                                "2<=x<=100000."),
    (["compare", "vae", "--iwae-k", "20000"], "Invalid value for '--iwae-k': 20000 is not in the range 1<=x<=10000."),
    (["latent", "nowhere", "--pairs", "100000000000"], "Invalid value for '--pairs': 100000000000 is not in the "
                                                       "range x=0 or 2<=x<=100000."),
    (["latent", "nowhere", "--pairs", "1"], "Invalid value for '--pairs': 1 is not in the range x=0 or "
                                            "2<=x<=100000."),
    (["train", "vae", "--epochs", str(MAX_EPOCHS + 1)], f"Invalid value for '--epochs': {MAX_EPOCHS + 1} is not in "
                                                        f"the range 1<=x<={MAX_EPOCHS}."),
])
def test_a_count_beyond_its_range_is_refused_by_click_at_once(args, line, tmp_path, monkeypatch, capsys):
    """The report's: refused only after 7 seconds of start (850 MB), by the config; ``--pairs 1``, inside the range
    shown, refused too. Here no run exists: click refuses before the command looks for one."""
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(args, capsys)
    assert (code, err) == (2, f"Error: {line}\n")
    assert list(tmp_path.iterdir()) == []


def test_the_ends_of_each_range_are_taken():
    def kind(command: str, option: str) -> click.ParamType:
        return next(p.type for p in cli.commands[command].params if option in getattr(p, "opts", ()))

    for command, option, values in (("eval", "--iwae-k", (1, 10_000)), ("eval", "--fid-samples", (0, 2, 100_000)),
                                    ("latent", "--pairs", (0, 2, 100_000)), ("train", "--fid-curve", (0, 2, 10_000)),
                                    ("train", "--epochs", (1, MAX_EPOCHS))):
        assert [kind(command, option).convert(str(value), None, None) for value in values] == list(values)


# -- M2: one line for click's lists ------------------------------------------------------------------------------


def test_export_without_format_is_one_line_without_a_written_out_newline(capsys):
    """The report's: ``Error: Missing option '--format'. Choose from:\\n\\tsafetensors`` (backslash, n, backslash, t)."""
    code, _, err = run_main(["export", "runs/base"], capsys)
    assert (code, err) == (2, "Error: Missing option '--format'. Choose from: safetensors\n")


def test_every_list_of_choices_click_gives_is_laid_out_on_one_line():
    option = click.Option(["--features"], type=click.Choice(["auto", "mnist", "inception"]), required=True)
    assert click_line(click.MissingParameter(param=option)) == \
        "Missing option '--features'. Choose from: auto, mnist, inception"
    argument = click.Argument(["kind"], type=click.Choice(["a", "b"]), required=True)
    assert click_line(click.MissingParameter(param=argument)) == "Missing argument 'KIND'. Choose from: a, b"
    # a value typed with a newline is still shown escaped, as typed
    assert click_line(click.UsageError("Got unexpected extra argument (a\nb)")) == \
        "Got unexpected extra argument (a\\nb)"


@pytest.mark.parametrize("option, value, line", [
    ("--iwae-k", "20000", "must be at most 10,000, got 20000"),
    ("--fid-samples", "100001", "must be at most 100,000, got 100001"),
    ("--epochs", "1048577", "must be at most 1,048,576, got 1048577"),
])
def test_the_leaderboard_refuses_a_count_genzoo_would_refuse_after_the_training(option, value, line, tmp_path):
    """``--iwae-k 20000`` trained every run, then ``genzoo eval`` refused it; refused now before OUT is made."""
    args = [*QUICK, option, value]  # the last of an option given twice counts
    assert run_script("--out", str(tmp_path / "lb"), "--markdown", str(tmp_path / "lb.md"), *args) == \
        f"leaderboard: argument {option}: {line}"
    assert list(tmp_path.iterdir()) == []
