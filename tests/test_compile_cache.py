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


@pytest.mark.parametrize("kind", ["world-writable", "link", "file", "others-parent", "foreign"])
def test_a_code_cache_others_could_plant_code_in_is_refused(kind: str, own_env: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    target = own_env / "ind"
    if kind == "world-writable":
        target.mkdir(mode=0o700)
        target.chmod(0o777)
        needle = "can be written by others (mode 777)"
    elif kind == "link":
        (own_env / "real").mkdir(mode=0o700)
        target.symlink_to(own_env / "real")
        needle = "is not a folder (a link or a file)"
    elif kind == "file":
        target.write_text("")
        needle = "is not a folder"
    elif kind == "others-parent":
        shared = own_env / "shared"
        shared.mkdir()
        shared.chmod(0o777)  # no sticky bit: anyone could rename the cache away and put theirs
        target = shared / "ind"
        needle = "is in a folder others can write"
    else:
        if os.getuid() != 0:
            pytest.skip("making a folder of another user needs root")
        target.mkdir(mode=0o700)
        os.chown(target, 65534, 65534)
        needle = "belongs to another user (uid 65534)"
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(target))
    with pytest.raises(GenzooError, match=r"^--compile: inductor's code cache TORCHINDUCTOR_CACHE_DIR=\S+ "
                                          + needle.replace("(", r"\(").replace(")", r"\)")):
        private_compile_cache()


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
