"""Found by the twelfth look (eleventh hostile pass): ``genzoo latent``'s folder and titles.

F7: stopped (Ctrl-C, SIGTERM) between its pictures, ``latent`` left a half-written ``--out`` that the
same command then refused; it now stages its files as ``export`` does. F9: a run whose folder name is
not UTF-8 did all the work, then failed in matplotlib on the title; the name is now shown escaped.
Each test failed before its fix (docs/reliability.md, "Found by the twelfth look").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from reliability_support import copied, data_root, one_thread, run_main  # noqa: F401 - fixtures

from genzoo import figures


@pytest.fixture
def ae_run(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811 - the fixture
           monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "ae"
    code, _, err = run_main(["train", "ae", "--epochs", "1", "--latent", "2", "--hidden", "16", "--batch-size", "40",
                             "--data-root", str(data_root), "--no-download", "--out", str(run)], capsys)
    assert code == 0, err
    return run


def latent(run: Path, data: Path, out: Path | None, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    where = [] if out is None else ["--out", str(out)]
    return run_main(["latent", str(run), "--pairs", "0", "--data-root", str(data), *where], capsys)


@pytest.mark.parametrize("given", ["new folder", "empty folder", "no --out"])
def test_latent_stopped_between_its_pictures_leaves_its_out_as_it_was(ae_run: Path, data_root: Path,  # noqa: F811
                                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      given: str) -> None:
    """F7: latent.png written, then Ctrl-C (SIGTERM is turned into the same): the folder held latent.png only,
    and the same command was refused ("already exists and is not an empty folder")."""
    monkeypatch.chdir(tmp_path)
    out = None if given == "no --out" else tmp_path / "pictures" / "lat"
    if given == "empty folder":
        out.mkdir(parents=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    real = figures.save_grids

    def stopped(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "save_grids", stopped)
    code, _, err = latent(ae_run, data_root, out, capsys)
    assert code == 130 and "Aborted" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no runs/, no pictures/, no temporary
    if given == "empty folder":
        assert list(out.parent.iterdir()) == [out] and list(out.iterdir()) == []
    monkeypatch.setattr(figures, "save_grids", real)
    code, stdout, err = latent(ae_run, data_root, out, capsys)  # the same command again
    assert code == 0, err
    written = out if out is not None else next((tmp_path / "runs").iterdir())
    assert sorted(p.name for p in written.iterdir()) == ["interpolation.png", "latent.json", "latent.png",
                                                         "traversal.png"]
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temporary beside it


def test_latent_of_a_run_whose_folder_name_is_not_utf8_draws_it_escaped(ae_run: Path, data_root: Path,  # noqa: F811
                                                                        tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """F9: all the work, then "Error: matplotlib could not draw the picture (TypeError: set_text() ...)"."""
    bad = copied(ae_run, tmp_path / os.fsdecode(b"bad\xff"))
    out = tmp_path / "pictures"
    code, stdout, err = latent(bad, data_root, out, capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["interpolation.png", "latent.json", "latent.png",
                                                     "traversal.png"]
    assert json.loads((out / "latent.json").read_text())["runs"][0]["run"] == str(bad)
