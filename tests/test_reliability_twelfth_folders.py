"""Found by the twelfth look (eleventh hostile pass): folders and files another user can change (F1, F3, F5, F8).

The data folder's own files and folders under the root are checked as the root is (F1);
``..`` after a link is walked as the kernel walks it (F5); a run folder genzoo makes is
never one others can write (F3); a data folder named in a run's ``config.json`` is not
the user's choice (F8); ``sample --out`` follows the rule of every other ``--out``.
Each test failed before its fix (docs/reliability.md, "Found by the twelfth look").
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path
from typing import Iterator

import pytest
from reliability_support import (  # noqa: F401 - data_root and one_thread are fixtures
    assert_one_line_error,
    data_root,
    one_thread,
    run_main,
    write_fake_mnist,
)

from genzoo import files
from genzoo.files import others_can_change
from genzoo.run_folder import new_run_dir

NOBODY = 65534
COLLEAGUE = 65533


def train(data: Path, *options: str) -> list[str]:
    return ["train", "ae", "--data-root", str(data), "--epochs", "1", "--batch-size", "40", "--train-limit", "40",
            "--test-limit", "20", "--device", "cpu", *options]


def give_away(path: Path, uid: int = NOBODY) -> None:
    """``path`` handed to another user (root only: anyone else cannot give a file away)."""
    if os.geteuid() != 0:
        pytest.skip("only root can make a folder another user's")
    os.chown(path, uid, uid, follow_symlinks=False)


@pytest.fixture
def umask_kept() -> Iterator[None]:
    """The process umask (and genzoo's copy of it) as it was before the test, after it."""
    mask = os.umask(0o022)
    os.umask(mask)
    kept = files._UMASK
    yield
    os.umask(mask)
    files._UMASK = kept


# -- F1: what the dataset reads under the root --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["raw of mode 777", "a test file of mode 666", "MNIST of another user's",
                                 "a colleague's root, raw of a third user's"])
def test_folders_and_files_under_the_data_root_others_can_change_are_refused(
        how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    data = write_fake_mnist(tmp_path / "data")
    raw = data / "MNIST" / "raw"
    named = raw
    if how == "raw of mode 777":
        raw.chmod(0o777)
    elif how == "a test file of mode 666":
        named = raw / "train-images-idx3-ubyte"
        named.chmod(0o666)
    elif how == "MNIST of another user's":
        named = data / "MNIST"
        give_away(named)
    else:
        give_away(data, COLLEAGUE)  # a colleague's shared dataset: its owner is trusted, a third user is not
        give_away(raw)
    code, _, err = run_main(train(data, "--out", "run"), capsys)
    assert_one_line_error(code, err, str(named), "another user could change the data")
    assert not Path("run").exists()


def test_a_dataset_plugin_can_refuse_what_it_reads_through_the_shared_helper(tmp_path: Path) -> None:
    """Third-party datasets call the same method for each file they read."""
    from genzoo_plugins.datasets.mnist import MNIST

    from genzoo import GenzooError

    data = write_fake_mnist(tmp_path / "data")
    dataset = MNIST(data, download=False)
    mine = data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    dataset.refuse_changeable(mine)  # closed to others: fine
    mine.chmod(0o646)
    with pytest.raises(GenzooError, match=r"t10k-labels-idx1-ubyte can be written by others \(mode 646\)"):
        dataset.refuse_changeable(mine)


# -- F5: '..' after a link ----------------------------------------------------------------------------------------


@pytest.fixture
def dotdot(tmp_path: Path) -> tuple[Path, Path]:
    """``work/lnk`` (the user's own link) to ``shared/evil/sub``, where ``evil`` is open to all (no sticky bit)."""
    evil = tmp_path / "shared" / "evil"
    (evil / "sub").mkdir(parents=True)
    evil.chmod(0o777)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "lnk").symlink_to(evil / "sub")
    return tmp_path / "work" / "lnk", evil


def test_dotdot_after_a_link_is_checked_where_the_kernel_goes(dotdot: tuple[Path, Path]) -> None:
    link, evil = dotdot
    problem = others_can_change(link / ".." / "data")
    assert problem is not None and str(evil) in problem


def test_a_data_root_through_dotdot_after_a_link_is_refused(dotdot: tuple[Path, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    link, evil = dotdot
    write_fake_mnist(evil / "data")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(train(link / ".." / "data", "--out", "run"), capsys)
    assert_one_line_error(code, err, "which others can write (mode 777)", "--data-root")
    assert not Path("run").exists()


@pytest.mark.parametrize("command", ["train", "export"])
def test_an_out_through_dotdot_after_a_link_is_refused(command: str, dotdot: tuple[Path, Path], tmp_path: Path,
                                                      data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    link, evil = dotdot
    out = link / ".." / "o"
    if command == "train":
        args = train(data_root, "--out", str(out))
    else:
        run = tmp_path / "run"
        assert run_main(train(data_root, "--out", str(run)), capsys)[0] == 0
        args = ["export", str(run), "--format", "safetensors", "--out", str(out)]
    code, _, err = run_main(args, capsys)
    assert_one_line_error(code, err, f"is in {evil}, which others can write (mode 777)")
    assert not (evil / "o").exists()


def test_an_out_through_dotdot_after_a_link_to_the_users_own_folder_is_written_there(
        tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mine" / "sub").mkdir(parents=True)
    (tmp_path / "lnk").symlink_to(tmp_path / "mine" / "sub")
    code, _, err = run_main(train(data_root, "--out", str(tmp_path / "lnk" / ".." / "run")), capsys)
    assert code == 0, err
    assert (tmp_path / "mine" / "run" / "checkpoint.pt").is_file()


# -- F3: a run folder genzoo makes ---------------------------------------------------------------------------------


def test_under_umask_000_the_run_folder_and_its_files_are_closed_to_others(
        tmp_path: Path, data_root: Path, umask_kept: None, capsys: pytest.CaptureFixture[str]) -> None:
    os.umask(0)
    out = tmp_path / "new" / "run"
    code, _, err = run_main(train(data_root, "--out", str(out)), capsys)
    assert code == 0, err
    for path in (out.parent, out, *out.iterdir()):
        assert not path.stat().st_mode & 0o022, (path, oct(path.stat().st_mode))


def test_through_the_api_under_umask_000_a_run_folder_is_refused_and_removed(tmp_path: Path,
                                                                             umask_kept: None) -> None:
    from genzoo import GenzooError

    os.umask(0)
    with pytest.raises(GenzooError, match=r"others can write \(mode 777"):
        new_run_dir("ae", base=tmp_path / "runs")
    assert list(tmp_path.iterdir()) == []


def set_default_acl(folder: Path, uid: int) -> None:
    """A default ACL on ``folder`` giving ``uid`` rwx in everything made in it (setfacl -d -m u:UID:rwx)."""
    entries = [(0x01, 7, 0xFFFFFFFF), (0x02, 7, uid), (0x04, 5, 0xFFFFFFFF), (0x10, 7, 0xFFFFFFFF),
               (0x20, 5, 0xFFFFFFFF)]
    raw = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)
    try:
        os.setxattr(folder, "system.posix_acl_default", raw)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            pytest.skip("this file system keeps no ACLs")
        raise


@pytest.mark.parametrize("default", [False, True])
def test_a_run_folder_that_would_inherit_a_default_acl_for_another_user_is_refused_and_removed(
        default: bool, tmp_path: Path, data_root: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    parent = tmp_path / "acl"
    parent.mkdir()
    set_default_acl(parent, NOBODY)
    monkeypatch.chdir(parent)
    code, _, err = run_main(train(data_root) if default else train(data_root, "--out", "run"), capsys)
    assert_one_line_error(code, err, "an ACL lets uid 65534 write it", "choose a folder only you can write")
    assert list(parent.iterdir()) == []


# -- F8: a data folder named in a run's config.json -----------------------------------------------------------------


@pytest.mark.parametrize("command", ["eval", "latent"])
def test_a_run_whose_config_names_another_users_data_folder_is_refused(
        command: str, tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert run_main(train(data_root, "--out", str(run)), capsys)[0] == 0
    give_away(data_root)
    if command == "eval":
        args = ["eval", str(run), "--fid-samples", "0", "--iwae-k", "2", "--test-limit", "20", "--device", "cpu"]
    else:
        args = ["latent", str(run), "--pairs", "0", "--test-limit", "20", "--device", "cpu",
                "--out", str(tmp_path / "l")]
    code, _, err = run_main(args, capsys)
    assert_one_line_error(code, err, f"data folder {data_root} (named in {run / 'config.json'})",
                          "belongs to another user (uid 65534)")
    assert not (run / "eval.json").exists() and not (tmp_path / "l").exists()
    code, _, err = run_main([*args, "--data-root", str(data_root)], capsys)  # named by the user: trusted
    assert code == 0, err


# -- minor: sample --out -------------------------------------------------------------------------------------------


def test_sample_out_into_a_folder_others_can_write_is_refused(tmp_path: Path, data_root: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert run_main(train(data_root, "--out", str(run)), capsys)[0] == 0
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    code, _, err = run_main(["sample", str(run), "-n", "2", "--out", str(shared / "s.npz")], capsys)
    assert_one_line_error(code, err, f"is in {shared}, which others can write (mode 777)")
    assert list(shared.iterdir()) == []
    assert stat.S_IMODE(shared.stat().st_mode) == 0o777


def test_through_the_api_under_umask_000_a_new_file_is_closed_to_others(tmp_path: Path, umask_kept: None) -> None:
    """An existing private --out given to the Python API: its files are not made writable by others either."""
    os.umask(0)
    files._UMASK = 0
    files.atomic_write_json(tmp_path / "config.json", {})
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o644
