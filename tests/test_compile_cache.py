"""Sixth hostile pass F0: ``--compile`` imports the Python files of inductor's code cache, whose default folder
(``/tmp/torchinductor_<user>``) torch makes with no check; genzoo keeps it where only the user can write."""

from __future__ import annotations

import getpass
import os
import stat
import struct
import tempfile
from pathlib import Path

import pytest

from genzoo.cli import main
from genzoo.compile_cache import COMPILE_CACHE_ENV, private_compile_cache
from genzoo.errors import GenzooError


@pytest.fixture
def own_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """genzoo's cache and torch's temporary folder (where torch keeps its default inductor folder) in tmp_path."""
    monkeypatch.setenv("GENZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(COMPILE_CACHE_ENV, raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)  # set by each check: put back after the test
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


def test_an_empty_variable_is_unset_before_torch_can_make_it_the_current_folder(own_env: Path,
                                                                              monkeypatch: pytest.MonkeyPatch,
                                                                              capsys: pytest.CaptureFixture) -> None:
    """``TORCHINDUCTOR_CACHE_DIR=`` (empty) is unset, as a shell means it: importing torch's compiler (which every
    optimiser does) rewrote it as the current folder, and ``--compile`` wrote its cache there (eleventh look)."""
    monkeypatch.setenv(COMPILE_CACHE_ENV, "")
    with pytest.raises(SystemExit) as info:
        main(["list"])
    assert info.value.code == 0, capsys.readouterr().err
    assert COMPILE_CACHE_ENV not in os.environ
    assert private_compile_cache() == own_env / "cache" / "inductor"


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
        needle = f"is in {own_env / 'open'}, which others can write (mode 777)"
    elif kind == "file":
        target.write_text("")
        needle = "is not a folder"
    elif kind == "others-parent":
        shared = own_env / "shared"
        shared.mkdir()
        shared.chmod(0o777)  # no sticky bit: anyone could rename the cache away and put theirs
        target = shared / "deeper" / "ind"
        needle = f"is in {shared}, which others can write (mode 777)"
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


# Eighth hostile pass H8-4: the check read mode bits only, so a POSIX ACL letting another user write passed it
# (uid 65534 rewrote the cached .py files the user owned, and their code ran in the user's `train --compile`).
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20


def set_acl(path: Path, kind: str, *, user: int = 65534, perm: int = 0o7, mask: int = 0o7) -> None:
    """A POSIX ACL (as `setfacl -m u:USER:PERM` writes it) set through its extended attribute."""
    entries = [(_USER_OBJ, 0o7, 0xFFFFFFFF), (_USER, perm, user), (_GROUP_OBJ, 0o5, 0xFFFFFFFF),
               (_MASK, mask, 0xFFFFFFFF), (_OTHER, 0o5, 0xFFFFFFFF)]
    raw = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)
    try:
        os.setxattr(path, f"system.posix_acl_{kind}", raw)
    except OSError as exc:
        pytest.skip(f"this file system keeps no ACLs ({exc.strerror})")


@pytest.mark.parametrize("kind", ["folder", "file", "subfolder-default", "folder-default", "above"])
@pytest.mark.parametrize("where", ["code-cache", "torchs"])
def test_an_acl_letting_another_user_write_is_refused(kind: str, where: str, own_env: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Mode bits show `rwxrwx---` or less; the ACL entry is what lets the other user in."""
    if where == "code-cache":
        above = own_env / "shared"
        folder = above / "ind"
        monkeypatch.setenv(COMPILE_CACHE_ENV, str(folder))
        start = f"--compile: inductor's code cache TORCHINDUCTOR_CACHE_DIR={folder} "
    else:
        above = own_env / "tmp"
        folder = torchs_folder(own_env)
        start = f"--compile: torch's own cache folder {folder} "
    (folder / "ab").mkdir(parents=True, mode=0o700)
    folder.chmod(0o700)
    cached = folder / "ab" / "cab.py"
    cached.write_text("x = 1\n")
    cached.chmod(0o600)
    if kind == "folder":
        set_acl(folder, "access")
        needle = "can be written by others (an ACL lets uid 65534 write it)"
    elif kind == "file":
        set_acl(cached, "access", perm=0o6)
        needle = f"holds {cached}, which others can write (an ACL lets uid 65534 write it)"
    elif kind == "subfolder-default":  # what torch makes in it while it compiles inherits the entry
        set_acl(folder / "ab", "default")
        needle = f"holds {folder / 'ab'}, which others can write (its default ACL lets others write what is made"
    elif kind == "folder-default":
        set_acl(folder, "default")
        needle = "can be written by others (its default ACL lets others write what is made in it)"
    else:  # a folder above, no sticky bit: they could rename the cache away and put theirs
        set_acl(above, "access")
        needle = f"is in {above}, which others can write (an ACL lets uid 65534 write it)"
    with pytest.raises(GenzooError) as info:
        private_compile_cache()
    assert str(info.value).startswith(start) and needle in str(info.value), str(info.value)


def test_an_acl_that_lets_no_one_else_write_is_accepted(own_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry bounded by a mask without write (or naming this user) lets no one else write: no refusal."""
    folder = own_env / "ind"
    folder.mkdir(mode=0o700)
    set_acl(folder, "access", mask=0o5)
    (folder / "mine.py").write_text("x = 1\n")
    set_acl(folder / "mine.py", "access", user=os.getuid())
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(folder))
    assert private_compile_cache() == folder


# Eighth hostile pass H8-10: torch's own folder reached through another user's link (TMPDIR=/tmp/LINK) passed,
# as only the link's target was checked; torch builds its header folder from the path as written, so the link's
# owner pointed it at their own folder after the check and root's compile wrote its headers there.
@pytest.mark.parametrize("kind", ["foreign-link", "link-in-open-folder", "loop"])
def test_a_link_on_the_way_that_someone_else_can_change_is_refused(kind: str, own_env: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (own_env / "private").mkdir(mode=0o700)
    if kind == "foreign-link":
        if os.getuid() != 0:
            pytest.skip("making a link of another user needs root")
        link = own_env / "theirs"
        link.symlink_to(own_env / "private")
        os.chown(link, 65534, 65534, follow_symlinks=False)
        needle = f"is reached through {link}, a link of another user's (uid 65534)"
    elif kind == "link-in-open-folder":  # this user's link, but anyone may replace it (no sticky bit)
        (own_env / "open").mkdir()
        (own_env / "open").chmod(0o777)
        link = own_env / "open" / "mine"
        link.symlink_to(own_env / "private")
        needle = f"is in {own_env / 'open'}, which others can write (mode 777)"
    else:
        link = own_env / "loop"
        link.symlink_to(link)
        needle = "is reached through more than 40 links (a loop?)"
    monkeypatch.setattr(tempfile, "tempdir", str(link))
    with pytest.raises(GenzooError) as info:
        private_compile_cache()
    folder = link / f"torchinductor_{getpass.getuser()}"
    assert str(info.value).startswith(f"--compile: torch's own cache folder {folder} ") and needle in str(info.value)


def test_this_users_link_in_a_sticky_folder_is_followed(own_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A link in /tmp (sticky: only its owner may replace it) that is this user's own is as safe as its target."""
    (own_env / "sticky").mkdir()
    (own_env / "sticky").chmod(0o1777)
    (own_env / "private").mkdir(mode=0o700)
    (own_env / "sticky" / "mine").symlink_to("../private")
    monkeypatch.setattr(tempfile, "tempdir", str(own_env / "sticky" / "mine"))
    private_compile_cache()
    assert (own_env / "private" / f"torchinductor_{getpass.getuser()}").is_dir()


# Ninth hostile pass F1: a group the group file lists with no members was taken as this user's alone, though
# /etc/passwd gives it to other accounts as their primary group (nobody, _apt and sync all start in nogroup):
# _apt appended code to nobody's cached .py files in a 770 folder, and it ran in nobody's next --compile.
@pytest.mark.parametrize("another_account_starts_in_it", [True, False])
def test_a_group_that_is_another_accounts_primary_group_is_shared(another_account_starts_in_it: bool,
                                                                  own_env: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import grp
    import pwd

    me = pwd.getpwuid(os.getuid())
    if os.getgid() != me.pw_gid or set(grp.getgrgid(os.getgid()).gr_mem) - {me.pw_name}:
        pytest.skip("this user's primary group is shared already")
    accounts = [account for account in pwd.getpwall() if account.pw_gid != os.getgid() or account.pw_name == me.pw_name]
    if another_account_starts_in_it:
        accounts.append(pwd.struct_passwd(("_apt", "x", 42, os.getgid(), "", "/nonexistent", "/usr/sbin/nologin")))
    monkeypatch.setattr(pwd, "getpwall", lambda: accounts)
    folder = own_env / "ind"
    folder.mkdir(mode=0o700)
    folder.chmod(0o770)
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(folder))
    if not another_account_starts_in_it:
        assert private_compile_cache() == folder  # a group of this user's alone: its write is this user's
        return
    with pytest.raises(GenzooError, match="can be written by others \\(mode 770\\)"):
        private_compile_cache()
