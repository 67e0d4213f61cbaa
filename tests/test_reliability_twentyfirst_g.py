"""Found by the twenty-first look (eighteenth hostile pass, F5, F6, M1-M4): files outside the run, titles, help, words.

F5: resuming a run whose ``metrics.jsonl`` is a hard link shared with a snapshot (``cp -al``, rsync ``--link-dest``)
appended the resumed epochs into the snapshot's file too; a file with other names now gets one of its own (written
afresh, renamed over it) before genzoo appends to it. F6: ``benchmarks/leaderboard.py --markdown FILE`` replaced any
UTF-8 file outside ``--out`` (another run's ``config.json``, notes) with its table; an existing file that is not a
table the script wrote is refused before any work. M1: ``genzoo latent a/run b/run`` titled both panels ``(run)``;
panels are labelled as ``compare`` labels reused runs. M2: ``genzoo latent --help`` showed ``--seed [x>=0]`` where
seeds above 2**32 - 1 are refused. M3: ``export`` and ``latent`` to a dangling ``--out`` link said "run folder".
M4: ``eval`` on a full disk measured everything, then could not write ``eval.json``: its probe made an empty file,
which a full disk allows. Each test failed before its fix (docs/reliability.md, "Found by the twenty-first look").
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from reliability_support import (  # noqa: F401 - data_root, one_thread and steered are fixtures
    SteeredVAE,
    assert_one_line_error,
    data_root,
    one_thread,
    reset_steering,
    run_main,
    snapshot,
    steered,
    subprocess_env,
)
from test_leaderboard import QUICK, fake_work, load_script, run_script

from genzoo import figures
from genzoo.cli import cli
from genzoo.evaluation.fid_curve import CURVE_FILE
from genzoo.run_folder import METRICS, append_metrics, read_metrics
from genzoo.train_config import TrainConfig
from genzoo.trainer import Interrupted
from genzoo.training import resume_run, start_run

TINY = ["--epochs", "1", "--batch-size", "20", "--test-limit", "20", "--device", "cpu", "--latent", "2",
        "--hidden", "16"]
DOCS = Path(__file__).resolve().parent.parent / "docs"


def train(data_root: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> Path:
    code, _, err = run_main(["train", "vae", *TINY, *extra, "--data-root", str(data_root), "--out", str(out)], capsys)
    assert code == 0, err
    return out


def hard_linked_copy(run: Path, to: Path) -> Path:
    """What ``cp -al RUN TO`` makes: a folder whose files are the run's own, by other names."""
    to.mkdir()
    for file in run.iterdir():
        os.link(file, to / file.name)
    return to


# -- F5: a file genzoo appends to, shared with a hard-linked snapshot ----------------------------------------


def test_resuming_a_run_changes_no_file_of_its_hard_linked_snapshot(steered, data_root, tmp_path):
    """The report's: a run stopped in epoch 2, snapshotted with ``cp -al``, then resumed. Before: the snapshot's
    metrics.jsonl grew from 1 line to 2 (the same inode), and the snapshot no longer matched its checkpoint."""
    SteeredVAE.interrupt_at = 16  # epoch 2 (12 steps an epoch): metrics.jsonl holds epoch 1's line
    config = TrainConfig(model="steered-vae", epochs=2, batch_size=10, device="cpu", data_root=str(data_root),
                         test_limit=20)
    with pytest.raises(Interrupted):
        start_run(config, {"latent": 2, "hidden": 16}, out=tmp_path / "run")
    reset_steering()
    (tmp_path / "run" / METRICS).chmod(0o640)
    snap = hard_linked_copy(tmp_path / "run", tmp_path / "snapshot")
    before = snapshot(snap)
    resume_run(tmp_path / "run")
    assert snapshot(snap) == before
    assert [r["epoch"] for r in read_metrics(snap)] == [1]
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2]
    info = (tmp_path / "run" / METRICS).stat()
    assert info.st_nlink == 1 and info.st_mode & 0o777 == 0o640  # its own file now, its mode kept


@pytest.mark.parametrize("name", [METRICS, CURVE_FILE])
def test_an_append_to_a_file_with_other_names_leaves_them_as_they_were(name, tmp_path):
    """Every file genzoo appends to (metrics.jsonl, fid_curve.jsonl) goes through ``append_metrics``."""
    (tmp_path / "run").mkdir()
    append_metrics(tmp_path / "run", {"epoch": 1, "step": 12}, name)
    other = hard_linked_copy(tmp_path / "run", tmp_path / "other")
    append_metrics(tmp_path / "run", {"epoch": 2, "step": 24}, name)
    append_metrics(tmp_path / "run", {"epoch": 3, "step": 36}, name)
    assert (other / name).read_text() == '{"epoch": 1, "step": 12}\n'
    assert [json.loads(line)["epoch"] for line in (tmp_path / "run" / name).read_text().splitlines()] == [1, 2, 3]
    assert (tmp_path / "run" / name).stat().st_nlink == 1


# -- F6: --markdown naming a file the leaderboard did not write ----------------------------------------------


@pytest.mark.parametrize("text", ['{\n  "model": "vae"\n}\n', "my notes, not a leaderboard\n"])
def test_the_leaderboard_refuses_a_markdown_file_it_did_not_write_before_any_work(text, tmp_path):
    """The report's: another run's config.json (the run lost to eval and resume) and a notes file, exit 0."""
    victim = tmp_path / "victim" / "config.json"
    victim.parent.mkdir()
    victim.write_text(text)
    line = run_script("--out", str(tmp_path / "lb"), "--markdown", str(victim), *QUICK)
    assert line == (f"leaderboard: --markdown {victim} is not a table this script wrote (it does not start with "
                    "'# Leaderboard: MNIST FIDs'), so it is not replaced; give the table a new file, or that table")
    assert victim.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]


def test_the_leaderboard_still_rebuilds_its_own_table_and_keeps_the_notes_below_it(tmp_path, monkeypatch):
    """docs/leaderboard.md, the real table with notes written by hand below its marker, is accepted."""
    table = tmp_path / "leaderboard.md"
    shutil.copyfile(DOCS / "leaderboard.md", table)
    script = load_script()
    notes = script.kept_notes(table)
    assert notes.startswith(script.NOTES_MARKER) and len(notes.splitlines()) > 3
    fake_work(script, monkeypatch)
    script.main(["--out", str(tmp_path / "lb"), "--markdown", str(table), "--only", "ae+gmm", *QUICK[2:]])
    text = table.read_text()
    assert text.startswith("# Leaderboard: MNIST FIDs") and "| ae+gmm | gmm | 12.50 |" in text
    assert text.endswith(notes)
    table.write_text("")  # an empty file holds nothing to lose: taken as a new one
    script.main(["--out", str(tmp_path / "lb"), "--markdown", str(table), "--only", "ae+gmm", *QUICK[2:]])
    assert "| ae+gmm | gmm | 12.50 |" in table.read_text()


# -- M1: two runs in folders of one name ---------------------------------------------------------------------


@pytest.fixture
def titles(monkeypatch) -> dict[str, list[str]]:
    """The panel titles of each picture ``genzoo latent`` draws (the pictures are still drawn)."""
    drawn: dict[str, list[str]] = {}
    scatter, grids = figures.save_latent_scatter, figures.save_grids

    def record_scatter(panels: Any, path: Path, title: str) -> None:
        drawn[path.name] = [panel.title for panel in panels]
        scatter(panels, path, title)

    def record_grids(panels: Any, path: Path, title: str) -> None:
        drawn[path.name] = [name for name, _, _ in panels]
        grids(panels, path, title)

    monkeypatch.setattr(figures, "save_latent_scatter", record_scatter)
    monkeypatch.setattr(figures, "save_grids", record_grids)
    return drawn


def test_latent_titles_two_runs_in_folders_of_one_name_apart(data_root, tmp_path, capsys, titles):
    """The report's: ``genzoo latent a/run b/run`` titled both panels ``vae, latent 40 (run)``; ``a/run a/run``
    drew the one run twice under one title. Now the labels compare gives reused runs (the same folder numbered)."""
    runs = [train(data_root, tmp_path / "a" / "run", capsys), train(data_root, tmp_path / "b" / "run", capsys,
                                                                    "--seed", "1")]
    for args, labels in (([runs[0], runs[1]], ["vae (a/run)", "vae (b/run)"]),
                         ([runs[0], runs[0]], ["vae (a/run) #1", "vae (a/run) #2"])):
        out = tmp_path / f"pictures-{len(titles)}"
        code, stdout, err = run_main(["latent", *map(str, args), "--pairs", "0", "--test-limit", "20",
                                      "--data-root", str(data_root), "--device", "cpu", "--out", str(out)], capsys)
        assert code == 0, err
        assert titles["latent.png"] == [f"{label}, latent 2" for label in labels]
        assert [title.split("\n")[0] for title in titles["interpolation.png"]] == titles["latent.png"]
        assert [title.split("\n")[0] for title in titles["traversal.png"]] == titles["latent.png"]
        assert [line.split(", linear")[0].split(", spherical")[0] for line in stdout.splitlines()[:2]] == \
            titles["latent.png"]
        assert [run["label"] for run in json.loads((out / "latent.json").read_text())["runs"]] == labels


# -- M2: the seed range in latent's help ---------------------------------------------------------------------


def test_latent_help_shows_the_seed_range_it_takes():
    """The report's: ``[default: 0; x>=0]`` while 4294967296 is refused; train and sample show the range."""
    helps = {command: CliRunner().invoke(cli, [command, "--help"], terminal_width=200).output
             for command in ("latent", "train", "sample")}
    for command, text in helps.items():
        assert "0<=x<=4294967295" in text, (command, text)
    result = CliRunner().invoke(cli, ["latent", "somewhere", "--seed", "4294967296"])
    assert result.exit_code == 2 and "4294967296 is not in the range 0<=x<=4294967295" in result.output


# -- M3: what a dangling --out of export and latent is --------------------------------------------------------


def test_export_and_latent_name_their_own_folder_at_a_dangling_out_link(data_root, tmp_path, capsys):
    """The report's: both said ``cannot create run folder dang: dang is a symbolic link to ...``."""
    run = train(data_root, tmp_path / "run", capsys)
    dangling = tmp_path / "dang"
    dangling.symlink_to(tmp_path / "missing")
    before = snapshot(tmp_path)
    for command, folder in ((["export", str(run), "--format", "safetensors"], "export folder"),
                            (["latent", str(run), "--pairs", "0", "--data-root", str(data_root)], "picture folder")):
        code, _, err = run_main([*command, "--out", str(dangling)], capsys)
        assert_one_line_error(code, err, f"cannot create {folder} {dangling}: {dangling} is a symbolic link to "
                                         f"{tmp_path / 'missing'}, which does not exist")
    assert snapshot(tmp_path) == before and not (tmp_path / "missing").exists()


# -- M4: eval into a folder with no room for eval.json --------------------------------------------------------


def _no_room() -> None:
    """In the child: the kernel takes new files but refuses their bytes past 1 KiB (``EFBIG``), as a full disk takes
    an empty file but refuses its bytes (``ENOSPC``); SIGXFSZ ignored, so the write fails rather than kills."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))


def test_eval_with_no_room_for_eval_json_is_refused_before_any_work(data_root, tmp_path, capsys):
    """The report's: on a full tmpfs the probe (an empty file) passed, eval measured for 18 s, then ``could not
    write tiny/r/eval.json: No space left on device``. Before: here the same, ``File too large`` after the table."""
    run = train(data_root, tmp_path / "run", capsys)
    before = snapshot(run)
    done = subprocess.run([sys.executable, "-m", "genzoo", "eval", str(run), "--fid-samples", "0", "--iwae-k", "2",
                           "--test-limit", "20", "--device", "cpu", "--data-root", str(data_root)],
                          capture_output=True, text=True, env=subprocess_env(), preexec_fn=_no_room, timeout=300)
    assert_one_line_error(done.returncode, done.stderr, f"cannot write eval.json into run folder {run} (File too "
                                                        "large")
    assert done.stdout == ""
    assert snapshot(run) == before and sorted(p.name for p in run.iterdir()) == sorted(before)
