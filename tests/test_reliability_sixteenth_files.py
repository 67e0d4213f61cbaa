"""Found by the sixteenth look (fourteenth hostile pass, F2, F3, F8, F9, F10 and M3): files and plugin answers read
without bounds or guards.

F2: a deeply nested line in ``fid_curve.jsonl`` was a RecursionError traceback in ``resume`` and ``compare``.
M3: a curve line's ``features`` holding escape sequences reached compare's report.md raw. F3: a model's
``sampler_options`` that raises (a dict lookup) was a traceback in sample, eval and compare. Each test failed
before its fix (docs/reliability.md, "Found by the fifteenth look (fourteenth hostile pass)").
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from genzoo_plugins.ae import AE
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    write_fake_mnist,
)

from genzoo import GenzooError, hookimpl
from genzoo.checkpoint import MAX_COUNT, Position
from genzoo.evaluation.fid_curve import CURVE_FILE, keep_curve_through, read_curve
from genzoo.run_folder import lost_metrics
from genzoo.train_config import MAX_EPOCHS

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu"]
#: A curve line as ``measure_epoch`` writes it.
WHOLE = {"epoch": 1, "sampler": "model", "features": "mnist", "samples": 50, "reference_images": 100, "fid": 30.0,
         "seconds": 1.5}


# -- F2 and M3: a curve line that is deeply nested, or whose text is not printable ---------------------------------


@pytest.mark.parametrize("line", ["[" * 200_000, "{\"a\":" * 100_000,
                                  json.dumps({**WHOLE, "features": "mnist\u001b[41mRED\u001b[0m"}),
                                  json.dumps({**WHOLE, "fid": None, "why": "no\nfit"})])
def test_a_deeply_nested_or_unprintable_curve_line_is_a_bad_line(line: str, tmp_path: Path) -> None:
    """Before: RecursionError traceback (resume, compare), or escape codes written raw into report.md. After: the
    line refused as any other bad line: compare leaves the curve out with a warning, resume refuses in one line."""
    (tmp_path / CURVE_FILE).write_text(json.dumps(WHOLE) + "\n" + line + "\n")
    with pytest.raises(GenzooError, match="line 2 is no FID-curve entry"):
        read_curve(tmp_path)
    with pytest.raises(GenzooError, match="line 2 is no FID-curve entry.*move it away"):
        keep_curve_through(tmp_path, 1)


# -- F3: a model's sampler_options that raises ----------------------------------------------------------------------


class LookupOptsAE(AE):
    """Options for the samplers it names, by dict lookup: any other sampler raises KeyError."""

    def sampler_options(self, sampler: str) -> dict[str, Any]:
        return {"gmm": {"components": self.config.prior_components}}[sampler]


@pytest.fixture
def lookup(genzoo_register: Any) -> None:
    @hookimpl
    def register_models(register: Any) -> None:
        register("lookupae", LookupOptsAE)

    genzoo_register(types.SimpleNamespace(register_models=register_models), "sixteenth", "test-sixteenth")


def test_sampler_options_that_raise_are_one_line_blaming_the_model(
        lookup: None, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``KeyError: 'normal'`` traceback in sample and eval. After: one line naming the method."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "lookupae", "--data-root", str(data_root), *TINY, "--latent", "2",
                             "--hidden", "16", "--out", str(run)], capsys)
    assert code == 0, err
    code, _, err = run_main(["sample", str(run), "-n", "2", "--sampler", "normal", "--out", str(tmp_path / "s.npz")],
                            capsys)
    assert_one_line_error(code, err, "LookupOptsAE.sampler_options('normal') raised KeyError: 'normal'")
    assert not (tmp_path / "s.npz").exists()
    # eval measures what needs no sampler, as for a sampler_options that returns no dict
    code, _, err = run_main(["eval", str(run), "--sampler", "normal", "--fid-samples", "0", "--iwae-k", "2",
                             "--test-limit", "20", "--device", "cpu"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert "warning: LookupOptsAE.sampler_options('normal') raised KeyError: 'normal'" in err
    code, _, err = run_main(["compare", "lookupae", "--sampler", "normal", "--data-root", str(data_root), *TINY,
                             "--fid-samples", "0", "--iwae-k", "2", "--out", str(tmp_path / "cmp")], capsys)
    assert_one_line_error(code, err, "LookupOptsAE.sampler_options('normal') raised KeyError: 'normal'")
    assert not (tmp_path / "cmp").exists()


# -- F8: counts read from a file that no run reaches --------------------------------------------------------------


def test_lost_epochs_are_named_without_listing_every_epoch(tmp_path: Path) -> None:
    """Before: ``range(1, done + 1)`` listed, 7 GB in 13 s for a forged 10**15-epoch plan. After: the gaps."""
    assert lost_metrics(tmp_path, [{"epoch": 1}, {"epoch": 3}], 10**15) == (
        f"{tmp_path / 'metrics.jsonl'} has lost the lines of epochs 2, 4-1000000000000000; the checkpoint holds "
        "epoch 1000000000000000, so genzoo goes on from it, without those epochs' training metrics")
    assert "epochs 4, 6-7;" in str(lost_metrics(tmp_path, [{"epoch": e} for e in (1, 2, 3, 5)], 7))
    assert "epochs 1-2;" in str(lost_metrics(tmp_path, [], 2))
    assert lost_metrics(tmp_path, [{"epoch": 1}, {"epoch": 2}], 2) is None


def test_a_run_planning_more_epochs_than_any_run_can_hold_is_refused_before_work(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: eval, compare --from-runs and resume of a self-consistent 10**15-epoch run measured, then grew
    without bound. After: its config.json is refused in one line, as ``train --epochs`` past the bound is."""
    run = tmp_path / "run"
    code, _, err = run_main(["train", "ae", "--data-root", str(data_root), *TINY, "--latent", "2", "--hidden", "16",
                             "--out", str(run)], capsys)
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    config["train_config"]["epochs"] = 10**15
    (run / "config.json").write_text(json.dumps(config))
    for command in (["eval", str(run), "--fid-samples", "0", "--iwae-k", "2", "--device", "cpu"], ["resume", str(run)],
                    ["compare", "--from-runs", str(run), "--fid-samples", "0", "--iwae-k", "2",
                     "--out", str(tmp_path / "cmp")]):
        code, _, err = run_main(command, capsys)
        assert_one_line_error(code, err, f"epochs must be at most {MAX_EPOCHS:,}", "1000000000000000")
    assert not (tmp_path / "cmp").exists() and not (run / "eval.json").exists()
    code, _, err = run_main(["train", "ae", "--data-root", str(data_root), *TINY[2:], "--epochs", str(MAX_EPOCHS + 1),
                             "--out", str(tmp_path / "long")], capsys)
    assert (code, err) == (2, f"Error: Invalid value for '--epochs': {MAX_EPOCHS + 1} is not in the range "
                              f"1<=x<={MAX_EPOCHS}.\n")  # click's range, shown in --help (nineteenth hostile pass, M1)
    assert not (tmp_path / "long").exists()


@pytest.mark.parametrize("field", ["global_step", "images"])
def test_a_position_counting_more_steps_than_a_float_holds_is_refused(field: str, tmp_path: Path) -> None:
    """Before: accepted (no count was bounded). After: refused in one line as any impossible position."""
    value = {"epoch": 2, "step": 1, "global_step": 5, "sums": {}, "images": 2, "seconds": 1.0, field: MAX_COUNT + 1}
    with pytest.raises(GenzooError, match=f"impossible training position \\({field} {MAX_COUNT + 1:,}, past"):
        Position.from_checkpoint(value, 3, tmp_path / "checkpoint.pt")


# -- F9: eval and sample of a run this user cannot write --------------------------------------------------------------

NOBODY = 65534


@contextmanager
def as_nobody() -> Iterator[None]:
    """This process acting as user 65534 (effective ids only, given back after): root writes anywhere."""
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def readonly_run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A finished run, root's (mode 755), with its data, in a folder user 65534 can read but not write."""
    if os.geteuid() != 0:
        pytest.skip("only root can act as another user")
    shared = Path(tempfile.mkdtemp(prefix="genzoo-h16-"))
    try:
        shared.chmod(0o755)
        data = write_fake_mnist(shared / "data")
        code, _, err = run_main(["train", "vae", "--data-root", str(data), *TINY, "--latent", "2", "--hidden", "16",
                                 "--out", str(shared / "run")], capsys)
        assert code == 0, err
        cache = shared / "cache"
        cache.mkdir(mode=0o700)
        os.chown(cache, NOBODY, NOBODY)
        monkeypatch.setenv("GENZOO_CACHE", str(cache))
        yield shared / "run"
    finally:
        shutil.rmtree(shared)


def test_eval_and_sample_of_a_run_this_user_cannot_write_are_refused_before_any_work(
        readonly_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: eval measured everything, then ``could not write .../eval.json: Permission denied`` lost it all; sample
    drew, then failed writing into the run. After: one line before any work, saying how to write elsewhere."""
    before = sorted(p.name for p in readonly_run.iterdir())
    with as_nobody():
        code, out, err = run_main(["eval", str(readonly_run), "--fid-samples", "0", "--iwae-k", "2", "--device", "cpu"],
                                  capsys)
        assert_one_line_error(code, err, f"cannot write eval.json into run folder {readonly_run} (Permission denied)",
                              "copy the run to a folder you can write")
        assert "reconstruction" not in out + err  # no measurement started
        code, out, err = run_main(["sample", str(readonly_run), "-n", "2"], capsys)
        assert_one_line_error(code, err, "cannot write samples-seed1234-n2.png into the run folder",
                              "(Permission denied); give --out a file in a folder you can write")
    assert sorted(p.name for p in readonly_run.iterdir()) == before


def test_eval_shows_its_numbers_before_a_write_that_fails_anyway(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: no table when eval.json could not be written (a full disk). After: the table, then the one line."""
    from genzoo.evaluation import run_evaluation

    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", "--data-root", str(data_root), *TINY, "--latent", "2", "--hidden", "16",
                             "--out", str(run)], capsys)
    assert code == 0, err

    def full(path: Path, data: Any) -> None:
        raise GenzooError(f"could not write {path}: No space left on device")

    monkeypatch.setattr(run_evaluation, "atomic_write_json", full)
    code, out, err = run_main(["eval", str(run), "--fid-samples", "0", "--iwae-k", "2", "--device", "cpu"], capsys)
    assert_one_line_error(code, err.split("\n")[-2] + "\n", "No space left on device")
    assert f"genzoo eval {run}" in out and "IWAE NLL" in out and "40 images" in out


# -- F10: graph of a run folder whose name is not UTF-8 ---------------------------------------------------------------


def test_graph_of_a_run_folder_whose_name_is_not_utf8_draws_it(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``UnicodeEncodeError`` traceback from graphviz (the name reached its source as a surrogate). After:
    drawn, the name escaped in the picture's title as in every other picture's."""
    run = tmp_path / os.fsdecode(b"plain\xffname")
    code, _, err = run_main(["train", "ae", "--data-root", str(data_root), *TINY, "--latent", "2", "--hidden", "16",
                             "--out", str(run)], capsys)
    assert code == 0, err
    code, out, err = run_main(["graph", str(run), "--out", str(tmp_path / "g")], capsys)
    assert code == 0, err
    assert "plain\\udcffname&#39;: the loss of one training step" in (tmp_path / "g.svg").read_text()
