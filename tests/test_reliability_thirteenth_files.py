"""Found by the thirteenth look (twelfth hostile pass): matplotlib's files (F1), genzoo's cache folders (F2) and
``graph --out`` (F6), each a place another user could change. Each test failed before its fix (docs/reliability.md,
"Found by the thirteenth look")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    subprocess_env,
)
from test_reliability_twelfth_folders import NOBODY, give_away, set_default_acl, train

import genzoo
from genzoo.sampler_cache import fit_cache

#: Long enough for genzoo's imports on a busy core; a FIFO read waits for ever.
IMPORT_TIMEOUT = 120


# -- F1: matplotlib's rc files and folder ------------------------------------------------------------------------


def _sample_missing_run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``genzoo sample`` of a missing run: it imports matplotlib before it looks for the run."""
    return subprocess.run([sys.executable, "-m", "genzoo", "sample", str(tmp_path / "none"), "-n", "2"],
                          env=subprocess_env(**env, PYTHONPATH=str(Path(genzoo.__file__).parent.parent)),
                          cwd=tmp_path, capture_output=True, text=True, timeout=IMPORT_TIMEOUT)


@pytest.mark.parametrize("variable", ["MATPLOTLIBRC", "XDG_CONFIG_HOME"])
def test_a_fifo_named_as_the_users_matplotlib_rc_is_never_read(variable: str, tmp_path: Path) -> None:
    """Before: no output until killed (matplotlib read the FIFO at import). After: the run is looked for."""
    config = tmp_path / "xdg"
    (config / "matplotlib").mkdir(parents=True)
    fifo = config / "matplotlib" / "matplotlibrc"
    os.mkfifo(fifo)
    done = _sample_missing_run(tmp_path, **{variable: str(fifo if variable == "MATPLOTLIBRC" else config)})
    assert_one_line_error(done.returncode, done.stderr, str(tmp_path / "none"))
    assert "matplotlib" not in done.stderr


def test_a_matplotlib_folder_others_can_write_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """Before: a FIFO ``matplotlibrc`` planted in a shared ``MPLCONFIGDIR`` hung the command. After: one line."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    os.mkfifo(shared / "matplotlibrc")
    done = _sample_missing_run(tmp_path, MPLCONFIGDIR=str(shared))
    assert_one_line_error(done.returncode, done.stderr, f"matplotlib's folder {shared} (MPLCONFIGDIR)",
                          "can be written by others (mode 1777)", "set MPLCONFIGDIR to a folder only you can write")


# -- F2: genzoo's cache folders ------------------------------------------------------------------------------------


def test_cache_folders_made_under_a_default_acl_for_another_user_are_refused(
        tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``$GENZOO_CACHE/samplers`` came out writable by uid 65534, who swapped a fit in. After: the cache
    is not used (one warning naming it), and the FID cache is refused before any work."""
    parent = tmp_path / "acl"
    parent.mkdir()
    set_default_acl(parent, NOBODY)
    monkeypatch.setenv("GENZOO_CACHE", str(parent / "genzoo"))
    run = tmp_path / "run"
    code, _, err = run_main(train(data_root, "--out", str(run)), capsys)
    assert code == 0, err
    assert f"the sampler cache {fit_cache()}" in err and "its default ACL lets others write" in err, err
    assert not fit_cache().exists() or not any(fit_cache().iterdir())
    code, _, err = run_main(["eval", str(run), "--fid-samples", "20", "--features", "mnist", "--iwae-k", "2",
                             "--test-limit", "20", "--device", "cpu"], capsys)
    assert_one_line_error(code, err, "the FID cache", "its default ACL lets others write")
    assert not (run / "eval.json").exists()


def test_a_sampler_cache_of_another_users_is_not_read(tmp_path: Path, data_root: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert run_main(train(data_root, "--out", str(run)), capsys)[0] == 0
    (fit,) = fit_cache().iterdir()
    give_away(fit_cache())
    fit.write_bytes(b"forged")  # theirs to write: were it read, a warning would name the file
    code, _, err = run_main(["sample", str(run), "-n", "2", "--out", str(tmp_path / "s.npz")], capsys)
    assert code == 0, err
    assert f"the sampler cache {fit_cache()} belongs to another user (uid 65534)" in err, err
    assert str(fit) not in err


# -- F6: graph --out -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["open", "acl"])
def test_graph_out_into_a_folder_others_can_write_is_refused(where: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torchviz")
    parent = tmp_path / "shared"
    parent.mkdir()
    if where == "open":
        parent.chmod(0o777)
        out, needle = parent / "g", f"is in {parent}, which others can write (mode 777)"
    else:
        set_default_acl(parent, NOBODY)
        out, needle = parent / "new" / "g", "its default ACL lets others write"
    code, _, err = run_main(["graph", "ae", "--out", str(out)], capsys)
    assert_one_line_error(code, err, needle, "choose a folder only you can write")
    assert list(parent.iterdir()) == []
