"""Found by the eleventh look (tenth hostile pass): folders another user can change (F3, F5).

A run folder (``--out``, or the default ``runs/``) or a data folder that another user owns,
or can write without the sticky bit, or that is reached through such a folder, is refused
in one line before any work, by the compile cache's own rule (genzoo.files.way_to). A FIFO
put in place of ``metrics.jsonl`` is refused at once instead of blocking training for good.
Each test failed before its fix (docs/reliability.md, "Found by the eleventh look").
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Iterator

import pytest
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    write_fake_mnist,
)

from genzoo import GenzooError
from genzoo.run_folder import append_metrics, new_run_dir, refuse_used_folder

NOBODY = 65534


def train(data: Path, *options: str) -> list[str]:
    return ["train", "ae", "--data-root", str(data), "--epochs", "1", "--batch-size", "40", "--train-limit", "40",
            "--test-limit", "20", "--device", "cpu", *options]


def as_nobody(path: Path) -> None:
    """``path`` handed to another user (root only: anyone else cannot give a file away)."""
    if os.geteuid() != 0:
        pytest.skip("only root can make a folder another user's")
    os.chown(path, NOBODY, NOBODY)


@pytest.mark.parametrize("how", ["mode 777", "another user's", "in a mode 777 folder"])
def test_an_out_folder_others_can_change_is_refused(how: str, tmp_path: Path, data_root: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shared" / "o" if how == "in a mode 777 folder" else tmp_path / "o"
    out.mkdir(parents=True)
    if how == "mode 777":
        out.chmod(0o777)
    elif how == "another user's":
        as_nobody(out)
    else:
        out.parent.chmod(0o777)
    code, _, err = run_main(train(data_root, "--out", str(out)), capsys)
    assert_one_line_error(code, err, f"run folder {out}", "another user could")
    assert list(out.iterdir()) == []


def test_a_default_runs_folder_others_can_write_is_refused(tmp_path: Path, data_root: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir(mode=0o777)
    Path("runs").chmod(0o777)
    code, _, err = run_main(train(data_root), capsys)
    assert_one_line_error(code, err, "run folder runs", "which others can write (mode 777)")
    assert list(Path("runs").iterdir()) == []


@pytest.mark.parametrize("command", ["new_run_dir", "refuse_used_folder"])
def test_a_new_folder_in_a_sticky_shared_folder_like_tmp_is_fine(command: str, tmp_path: Path) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    if command == "new_run_dir":
        assert new_run_dir("ae", sticky / "mine").is_dir()
        assert new_run_dir("ae", base=sticky / "runs").parent == sticky / "runs"
    else:
        refuse_used_folder(sticky / "mine")  # compare, export and latent check their --out with it first
    writable = tmp_path / "open"
    writable.mkdir()
    writable.chmod(0o777)
    with pytest.raises(GenzooError, match="which others can write"):
        refuse_used_folder(writable / "mine")


@pytest.fixture
def alarm() -> Iterator[None]:
    """A test that would hang for good ends in 20 seconds instead (a bound, not a timing)."""
    def hung(signum: int, frame: Any) -> None:
        raise TimeoutError("append_metrics blocked on the FIFO")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("reader", [False, True])
def test_a_fifo_swapped_in_for_metrics_is_one_line_not_a_hang(reader: bool, tmp_path: Path, alarm: None) -> None:
    fifo = tmp_path / "metrics.jsonl"
    os.mkfifo(fifo, 0o666)
    held = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK) if reader else None  # then opening it for writing works
    try:
        with pytest.raises(GenzooError, match="is not a regular file") as info:
            append_metrics(tmp_path, {"epoch": 1})
    finally:
        if held is not None:
            os.close(held)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("how", ["./data of another user's", "--data-root of mode 777", "$GENZOO_DATA in a mode 777 folder"])
def test_a_data_folder_others_can_change_is_refused(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GENZOO_DATA", raising=False)
    args = train(Path("unused"), "--out", "run")
    args = args[:2] + args[4:]  # no --data-root
    if how.startswith("./data"):
        data = write_fake_mnist(tmp_path / "data")
        as_nobody(data)
        source = "./data"
    elif how.startswith("--data-root"):
        data = write_fake_mnist(tmp_path / "mine")
        data.chmod(0o777)
        args += ["--data-root", str(data)]
        source = "--data-root"
    else:
        data = write_fake_mnist(tmp_path / "shared" / "data")
        data.parent.chmod(0o777)
        monkeypatch.setenv("GENZOO_DATA", str(data))
        source = "$GENZOO_DATA"
    code, _, err = run_main(args, capsys)
    assert_one_line_error(code, err, f"data folder {Path(os.path.relpath(data)) if source == './data' else data} "
                          f"({source})", "--data-root")
    assert not Path("run").exists()


@pytest.mark.parametrize("command, folder", [(["compare", "vae", "ae", "--epochs", "1", "--fid-samples", "0"],
                                              "run folder"),
                                             (["latent", "no-such-run"], "picture folder")])  # M3, pass 18
def test_compare_and_latent_refuse_such_an_out_before_any_work(command: list[str], folder: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    out.mkdir()
    out.chmod(0o777)
    code, _, err = run_main([*command, "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"{folder} {out}", "which others can write (mode 777)")
    assert list(out.iterdir()) == []


def test_a_named_data_folder_of_a_colleague_is_trusted_as_its_owners(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A shared dataset someone else owns and keeps closed to others' writes, named with --data-root: trained on."""
    if os.getuid() != 0:
        pytest.skip("making a folder of another user needs root")
    monkeypatch.chdir(tmp_path)
    data = write_fake_mnist(tmp_path / "theirs")
    as_nobody(data)
    args = train(data, "--out", "run")
    code, _, err = run_main(args, capsys)
    assert code == 0, err
    assert Path("run", "checkpoint.pt").is_file()
