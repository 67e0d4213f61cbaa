"""Found by the twentieth hostile pass (files F1, F2): another run's checkpoint or metric lines taken as this run's.

Finished runs with an FID curve: ``s0`` and ``r0`` of the same settings (on a GPU, or with ``--nproc``, their
weights differ), ``s1`` of the same but the training seed. F1: ``r0``'s checkpoint copied into a copy of ``s0`` was
evaluated and compared (``s0``'s curve beside the other weights), exit 0. F2: ``s1``'s ``metrics.jsonl`` copied in
gave ``eval``, ``compare`` and the leaderboard ``s1``'s training time and losses as ``s0``'s, exit 0. A checkpoint
now records its run's ``run_id`` and each metric line names it (``run``), checked against ``config.json`` by every
reader; files from before (no ``run_id`` in the checkpoint, lines without ``run``) are read as before. Each test
failed before its fix (docs/reliability.md, the rows of the twentieth hostile pass).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    snapshot,
)

from genzoo.checkpoint import FILENAME, WEIGHTS_FILENAME, load_checkpoint, save_checkpoint
from genzoo.errors import GenzooError
from genzoo.run_folder import METRICS, read_metrics

EVAL = ["--test-limit", "20", "--iwae-k", "2", "--device", "cpu"]
COMPARE = ["--epochs", "2", "--batch-size", "20", "--train-limit", "100", "--test-limit", "20", "--fid-samples", "0",
           "--iwae-k", "2", "--fid-curve", "10", "--device", "cpu"]


@pytest.fixture
def runs(data_root: Path, tmp_path: Path) -> Path:
    """Finished 2-epoch VAE runs with an FID curve: ``s0`` and ``r0`` alike, ``s1`` alike but for the seed."""
    from genzoo.evaluation.fid_curve import measure_epoch
    from genzoo.train_config import TrainConfig
    from genzoo.training import start_run

    for name, seed in (("s0", 0), ("s1", 1), ("r0", 0)):
        config = TrainConfig(model="vae", epochs=2, batch_size=20, train_limit=100, test_limit=20, fid_curve=10,
                             seed=seed, data_root=str(data_root), device="cpu")
        start_run(config, {"latent": 2, "hidden": 16}, out=tmp_path / name, after_epoch=measure_epoch)
    return tmp_path


def run_id(run: Path) -> str:
    value = json.loads((run / "config.json").read_text())["run_id"]
    assert isinstance(value, str)
    return value


def planted(root: Path, name: str, file: str, source: str = "s1") -> Path:
    """A copy of ``s0`` named ``name`` holding the ``file`` of run ``source``."""
    shutil.copytree(root / "s0", root / name)
    shutil.copy(root / source / file, root / name / file)
    return root / name


def unnamed(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "run"}


# -- F1: another run's checkpoint ----------------------------------------------------------------------------------


def other_checkpoint(root: Path, run: Path) -> str:
    """The one line refusing ``r0``'s checkpoint planted in ``run``, a copy of ``s0``."""
    return (f"{run / FILENAME} was saved by run {run_id(root / 'r0')}, not by this run ({run_id(root / 's0')}, the "
            "run_id of its config.json): it is another run's checkpoint; put back this run's own, or use it in the "
            "run folder it came from")


def test_f1_another_runs_checkpoint_is_refused_by_eval_compare_sample_export_and_resume(runs, tmp_path, capsys):
    c = planted(runs, "c", FILENAME, "r0")
    before = snapshot(c)
    for args in (["eval", str(c), "--fid-samples", "0", *EVAL],
                 ["compare", "--from-runs", str(c), *COMPARE, "--out", str(tmp_path / "cmp")],
                 ["sample", str(c), "-n", "4", "--out", str(tmp_path / "s.png")],
                 ["export", str(c), "--format", "safetensors", "--out", str(tmp_path / "export")],
                 ["resume", str(c)]):
        code, _, err = run_main(args, capsys)
        assert_one_line_error(code, err, other_checkpoint(runs, c))
    assert snapshot(c) == before
    assert not any((tmp_path / name).exists() for name in ("cmp", "s.png", "export"))


def test_f1_an_exported_runs_weights_record_the_run_too(runs, tmp_path, capsys):
    for name in ("s0", "r0"):
        assert run_main(["export", str(runs / name), "--format", "safetensors", "--out",
                         str(tmp_path / f"{name}-x")], capsys)[0] == 0
    assert load_checkpoint(tmp_path / "s0-x" / WEIGHTS_FILENAME)["run_id"] == run_id(runs / "s0")
    assert [record["run"] for record in map(json.loads, (tmp_path / "s0-x" / METRICS).read_text().splitlines())] \
        == [run_id(runs / "s0")] * 2  # the lines as written
    shutil.copy(tmp_path / "r0-x" / WEIGHTS_FILENAME, tmp_path / "s0-x" / WEIGHTS_FILENAME)
    code, _, err = run_main(["eval", str(tmp_path / "s0-x"), "--fid-samples", "0", *EVAL], capsys)
    assert_one_line_error(code, err, f"{tmp_path / 's0-x' / WEIGHTS_FILENAME} was saved by run {run_id(runs / 'r0')}, "
                                     f"not by this run ({run_id(runs / 's0')}")


def test_f1_a_checkpoint_from_before_checkpoints_named_their_run_still_loads(runs, capsys):
    run = runs / "s0"
    state = load_checkpoint(run / FILENAME)
    assert state["run_id"] == run_id(run)
    del state["run_id"]  # as genzoo saved it before
    save_checkpoint(run / FILENAME, {k: v for k, v in state.items() if k not in ("format", "version")})
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", *EVAL], capsys)
    assert code == 0, err
    assert "warning" not in err


def test_f1_a_run_from_before_runs_were_named_takes_its_checkpoint_as_before(runs, capsys):
    run = runs / "s0"
    config = json.loads((run / "config.json").read_text())
    del config["run_id"]  # as genzoo wrote it before: nothing to check a checkpoint or a line against
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", *EVAL], capsys)
    assert code == 0, err
    assert json.loads((run / "eval.json").read_text())["training"] is not None


@pytest.mark.parametrize("value", ["x" * 32, "A" * 32, 5])
def test_f1_a_checkpoint_whose_run_id_is_not_one_is_one_line(value, runs, capsys):
    run = runs / "s0"
    state = load_checkpoint(run / FILENAME)
    state["run_id"] = value
    save_checkpoint(run / FILENAME, {k: v for k, v in state.items() if k not in ("format", "version")})
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", *EVAL], capsys)
    assert_one_line_error(code, err, f"{run / FILENAME} records run_id ", "not 32 lower-case hexadecimal digits; it is damaged "
                                     "or not from this run")


def test_f1_resume_refuses_another_runs_fid_curve_instead_of_appending_to_it(runs, capsys):
    from genzoo.evaluation.fid_curve import CURVE_FILE

    c = planted(runs, "c", CURVE_FILE)
    before = snapshot(c)
    code, _, err = run_main(["resume", str(c)], capsys)
    assert_one_line_error(code, err, f"{c / CURVE_FILE} line 1 was measured by run '{run_id(runs / 's1')}', not by "
                                     f"this run ({run_id(runs / 's0')}): it is not this run's curve; move it away to "
                                     "resume without the curve so far")
    assert snapshot(c) == before


# -- F2: another run's metric lines --------------------------------------------------------------------------------


def left_out(root: Path, run: Path) -> str:
    """The warning leaving out ``s1``'s lines planted in ``run``, a copy of ``s0``."""
    return (f"genzoo: warning: {run / METRICS} line 1 was written by run '{run_id(root / 's1')}', not by this run "
            f"({run_id(root / 's0')}): it is not this run's; the lines of other runs (epochs 1, 2) are left out, "
            "as lost")


def test_f2_every_metric_line_names_its_run_and_readers_see_the_lines_as_before(runs):
    run = runs / "s0"
    lines = [json.loads(line) for line in (run / METRICS).read_text().splitlines()]
    assert [line["run"] for line in lines] == [run_id(run)] * 2
    assert read_metrics(run) == [unnamed(line) for line in lines]


def test_f2_eval_leaves_out_another_runs_metric_lines_with_a_warning(runs, capsys):
    ac = planted(runs, "ac", METRICS)
    code, _, err = run_main(["eval", str(ac), "--fid-samples", "0", *EVAL], capsys)
    assert code == 0, err
    assert err.count(left_out(runs, ac)) == 1, err  # once, though eval reads the lines twice
    assert f"{ac / METRICS} has lost the lines of epochs 1-2" in err
    result = json.loads((ac / "eval.json").read_text())
    assert result["training"] is None and "has lost the lines of epochs 1-2" in result["unavailable"]["training"]


def test_f2_compare_and_open_run_leave_out_another_runs_metric_lines(runs, tmp_path, capsys):
    from genzoo import open_run

    ac = planted(runs, "ac", METRICS)
    code, _, err = run_main(["compare", "--from-runs", str(ac), "--from-runs", str(runs / "s1"), *COMPARE,
                             "--out", str(tmp_path / "cmp")], capsys)
    assert code == 0, err
    assert left_out(runs, ac) in err
    trained = {model["model"]: model["training"] for model in
               json.loads((tmp_path / "cmp" / "results.json").read_text())["models"]}
    assert trained["vae (ac)"] is None and trained["vae (s1)"] is not None
    assert open_run(ac).metrics == []


def test_f2_resume_refuses_another_runs_metric_lines(runs, capsys):
    ac = planted(runs, "ac", METRICS)
    before = snapshot(ac)
    code, _, err = run_main(["resume", str(ac)], capsys)
    assert_one_line_error(code, err, f"{ac / METRICS} line 1 was written by run '{run_id(runs / 's1')}', not by this "
                                     f"run ({run_id(runs / 's0')}): it is not this run's; put back this run's own "
                                     f"{METRICS}, or move this one away to resume without the metric lines so far")
    assert snapshot(ac) == before


def test_f2_metric_lines_from_before_lines_named_their_run_are_read_as_before(runs, capsys):
    run = runs / "s0"
    lines = [json.loads(line) for line in (run / METRICS).read_text().splitlines()]
    (run / METRICS).write_text("".join(json.dumps(unnamed(line)) + "\n" for line in lines))
    code, _, err = run_main(["eval", str(run), "--fid-samples", "0", *EVAL], capsys)
    assert code == 0, err
    assert "warning" not in err
    assert json.loads((run / "eval.json").read_text())["training"]["epochs"] == 2


@pytest.mark.parametrize("value", ["x" * 32, 5, None])
def test_f2_a_metric_line_whose_run_is_not_a_run_id_is_corrupt(value, runs):
    run = runs / "s0"
    lines = [json.loads(line) for line in (run / METRICS).read_text().splitlines()]
    lines[0]["run"] = value
    (run / METRICS).write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(GenzooError, match=f"{METRICS} line 1 is corrupt \\(run is .*, not 32 lower-case hexadecimal digits\\)"):
        read_metrics(run)
