"""Sixth hostile pass F0: ``--compile`` imports the Python files of inductor's code cache, whose default folder
(``/tmp/torchinductor_<user>``) torch makes with no check; genzoo keeps it where only the user can write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from genzoo.cli import main
from genzoo.errors import GenzooError
from genzoo.trainer import COMPILE_CACHE_ENV, private_compile_cache


@pytest.fixture
def own_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(COMPILE_CACHE_ENV, raising=False)
    return tmp_path


def test_genzoo_keeps_compiled_code_in_a_folder_of_its_own_only_the_user_can_write(own_env: Path) -> None:
    path = private_compile_cache()
    assert path == own_env / "cache" / "inductor"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert os.environ[COMPILE_CACHE_ENV] == str(path)  # what torch reads when it compiles
    assert private_compile_cache() == path  # and again, as it is


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
def test_train_compile_with_an_unsafe_cache_is_one_line_and_no_run(own_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (own_env / "ind").mkdir()
    (own_env / "ind").chmod(0o777)
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(own_env / "ind"))
    with pytest.raises(SystemExit) as info:
        main(["train", "vae", "--compile", "--epochs", "1", "--train-limit", "100", "--out", str(own_env / "run")])
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
