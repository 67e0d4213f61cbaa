"""Sixth hostile pass F0: ``--compile`` imports the Python files of inductor's code cache, whose default folder
(``/tmp/torchinductor_<user>``) torch makes with no check; genzoo keeps it where only the user can write."""

from __future__ import annotations

import getpass
import os
import stat
import tempfile
from pathlib import Path

import pytest

from genzoo.cli import main
from genzoo.errors import GenzooError
from genzoo.trainer import COMPILE_CACHE_ENV, private_compile_cache


@pytest.fixture
def own_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """genzoo's cache and torch's temporary folder (where torch keeps its default inductor folder) in tmp_path."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(COMPILE_CACHE_ENV, raising=False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return tmp_path


def torchs_folder(own_env: Path) -> Path:
    return own_env / "tmp" / f"torchinductor_{getpass.getuser()}"


def test_genzoo_keeps_compiled_code_in_a_folder_of_its_own_only_the_user_can_write(own_env: Path) -> None:
    path = private_compile_cache()
    assert path == own_env / "cache" / "inductor"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert os.environ[COMPILE_CACHE_ENV] == str(path)  # what torch reads when it compiles
    assert private_compile_cache() == path  # and again, as it is
    torchs = torchs_folder(own_env).stat()  # torch's own folder: checked (made if missing) as well
    assert torchs.st_uid == os.getuid() and not torchs.st_mode & 0o022


def test_torchs_default_set_by_an_import_is_not_taken_for_the_users_choice(own_env: Path,
                                                                           monkeypatch: pytest.MonkeyPatch):
    """Importing torchvision writes torch's default folder into TORCHINDUCTOR_CACHE_DIR: genzoo's own is used."""
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(torchs_folder(own_env)))
    assert private_compile_cache() == own_env / "cache" / "inductor"
    assert os.environ[COMPILE_CACHE_ENV] == str(own_env / "cache" / "inductor")


@pytest.mark.parametrize("kind", ["foreign-file", "open-file", "link", "open-subfolder"])
@pytest.mark.parametrize("where", ["code-cache", "torchs"])
def test_a_cache_holding_what_others_could_have_written_is_refused(kind: str, where: str, own_env: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder made private after others could write it (chmod 700 as the advice says) still holds their code;
    torch's own folder holds the precompiled headers every compiled kernel includes, whatever the variable says."""
    folder = own_env / "ind" if where == "code-cache" else torchs_folder(own_env)
    (folder / "ab").mkdir(parents=True, mode=0o700)
    folder.chmod(0o700)
    planted = folder / "ab" / "cab.py"
    planted.write_text("print('planted')\n")
    if kind == "foreign-file":
        if os.getuid() != 0:
            pytest.skip("making a file of another user needs root")
        os.chown(planted, 65534, 65534)
        needle = f"holds {planted}, which belongs to another user (uid 65534)"
    elif kind == "open-file":
        planted.chmod(0o666)
        needle = f"holds {planted}, which others can write (mode 666)"
    elif kind == "link":
        planted.unlink()
        planted.symlink_to(own_env / "elsewhere.py")
        needle = f"holds a link, {planted}"
    else:
        (folder / "ab").chmod(0o777)
        needle = f"holds {folder / 'ab'}, which others can write (mode 777)"
    if where == "code-cache":
        monkeypatch.setenv(COMPILE_CACHE_ENV, str(folder))
        start = f"--compile: inductor's code cache TORCHINDUCTOR_CACHE_DIR={folder} "
    else:
        start = f"--compile: torch's own cache folder {folder} (its precompiled headers, used whatever "
    with pytest.raises(GenzooError) as info:
        private_compile_cache()
    assert str(info.value).startswith(start) and needle in str(info.value), str(info.value)


@pytest.mark.parametrize("kind", ["world-writable", "link-to-open", "file", "others-parent", "foreign",
                                  "foreign-above", "foreign-link"])
def test_a_code_cache_others_could_plant_code_in_is_refused(kind: str, own_env: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    target = own_env / "ind"
    if kind == "world-writable":
        target.mkdir(mode=0o700)
        target.chmod(0o777)
        needle = "can be written by others (mode 777)"
    elif kind == "link-to-open":  # a link, resolved: its target's folders are what count
        (own_env / "open").mkdir()
        (own_env / "open").chmod(0o777)
        (own_env / "open" / "real").mkdir(mode=0o700)
        target.symlink_to(own_env / "open" / "real")
        needle = f"is in {own_env / 'open'}, which others can write"
    elif kind == "file":
        target.write_text("")
        needle = "is not a folder"
    elif kind == "others-parent":
        shared = own_env / "shared"
        shared.mkdir()
        shared.chmod(0o777)  # no sticky bit: anyone could rename the cache away and put theirs
        target = shared / "deeper" / "ind"
        needle = f"is in {shared}, which others can write"
    elif kind in ("foreign-above", "foreign-link"):  # a folder above, or a link on the way, another user can change
        if os.getuid() != 0:
            pytest.skip("making a folder of another user needs root")
        theirs = own_env / "theirs"
        (theirs / "mine").mkdir(parents=True, mode=0o700)
        os.chown(theirs, 65534, 65534)
        needle = f"is in {theirs}, which belongs to another user (uid 65534)"
        if kind == "foreign-link":
            target.symlink_to(theirs / "mine")
        else:
            target = theirs / "mine"
    else:
        if os.getuid() != 0:
            pytest.skip("making a folder of another user needs root")
        target.mkdir(mode=0o700)
        os.chown(target, 65534, 65534)
        needle = "belongs to another user (uid 65534)"
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(target))
    with pytest.raises(GenzooError) as info:
        private_compile_cache()
    assert str(info.value).startswith(f"--compile: inductor's code cache TORCHINDUCTOR_CACHE_DIR={target} {needle}; ")


def test_a_link_to_a_private_folder_is_followed_once_and_inductor_gets_the_folder(own_env: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch):
    """A link is resolved here, so inductor never follows it again: changing it later changes nothing."""
    (own_env / "real").mkdir(mode=0o700)
    (own_env / "link").symlink_to(own_env / "real")
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(own_env / "link"))
    assert private_compile_cache() == own_env / "real"
    assert os.environ[COMPILE_CACHE_ENV] == str(own_env / "real")


@pytest.mark.usefixtures("mnist_root")
@pytest.mark.parametrize("command", ["train", "compare"])
def test_compile_with_an_unsafe_cache_is_one_line_and_no_folder(command: str, own_env: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any folder: `compare --compile` wrote compare.json, then failed as its first model trained."""
    (own_env / "ind").mkdir()
    (own_env / "ind").chmod(0o777)
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(own_env / "ind"))
    with pytest.raises(SystemExit) as info:
        main([command, "vae", "--compile", "--epochs", "1", "--train-limit", "100", "--out", str(own_env / "run")])
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.count("\n") == 1 and err.startswith("Error: --compile: inductor's code cache")
    assert not (own_env / "run").exists()


def test_compiling_through_the_api_uses_the_private_cache_too(own_env: Path, monkeypatch: pytest.MonkeyPatch):
    """Not only the CLI: whatever builds a compiled objective (a script, a benchmark) gets the checked folder."""
    import torch

    from genzoo.trainer import CompiledObjective

    CompiledObjective(lambda x: {"loss": x}, torch.device("cpu"))
    assert os.environ[COMPILE_CACHE_ENV] == str(own_env / "cache" / "inductor")
    (own_env / "open").mkdir()
    (own_env / "open").chmod(0o777)
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(own_env / "open"))
    with pytest.raises(GenzooError, match="can be written by others"):
        CompiledObjective(lambda x: {"loss": x}, torch.device("cpu"))
