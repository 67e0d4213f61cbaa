"""Found by the twentieth hostile pass (files F3): a compare's own folder moved away while the compare ran.

``mv c c-old && mkdir c`` while ``genzoo compare ... --out c`` evaluated its last model had ``report.md``,
``results.json`` and the pictures written into the new ``c``, exit 0, and ``c-old`` (the compare's real folder)
left without them; moved at other moments, the compare saved its ``compare.json`` into the new ``c`` after a
run folder's "nothing more was written", or failed with ``No such file or directory`` and no word of a move.
The compare folder is held as a run folder is: every write into it is checked in place, and any failure
while it is gone is said as the move, with the ``genzoo compare --resume`` that carries on where it went.
Each test failed before its fix (docs/reliability.md, the rows of the twentieth hostile pass).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from reliability_support import (  # noqa: F401 - data_root, one_thread and steered are fixtures
    SteeredAE,
    data_root,
    one_thread,
    run_main,
)

from genzoo import compare, figures

COMPARE = ["compare", "vae", "moving-ae", "--epochs", "1", "--latent", "2", "--batch-size", "20", "--device", "cpu",
           "--test-limit", "20", "--fid-samples", "0", "--iwae-k", "2", "--out", "c"]


def move(folder: Path) -> None:
    """What the report did: ``mv c c-old && mkdir c``."""
    folder.rename(folder.with_name(folder.name + "-old"))
    folder.mkdir()


class MovingAE(SteeredAE):
    """Moves the compare folder away once it has taken ``move_at`` steps (the compare's second model)."""

    move_at: int | None = None
    folder: Path | None = None

    def stepped(self) -> None:
        super().stepped()
        if type(self).steps == self.move_at and self.folder is not None:
            move(self.folder)


class MovingPlugin:
    from genzoo import hookimpl

    @hookimpl
    def register_models(self, register):
        register("moving-ae", MovingAE)


def after(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, folder: Path,
          when: Callable[..., bool] = lambda *args: True) -> None:
    """Move ``folder`` away once ``owner.name`` returned from a call ``when`` picks."""
    original = getattr(owner, name)

    def moving(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if when(*args):
            move(folder)
        return result

    monkeypatch.setattr(owner, name, moving)


def of_run(label: str) -> Callable[..., bool]:
    """Whether a call writes into the compare's run ``label``: its path is one of the arguments."""
    return lambda *args: any(isinstance(a, Path) and label in a.parts for a in args)


#: Each moment the report moved the compare folder at, and how the test gets there.
MOMENTS: dict[str, Callable[[pytest.MonkeyPatch, Path], None]] = {
    # after the first model's pictures: one model trained, the next not started
    "one trained": lambda patch, c: after(patch, figures, "save_loss_curves", c, of_run("vae")),
    # while the second model trains, before its first checkpoint
    "training": lambda patch, c: (setattr(MovingAE, "move_at", 3), setattr(MovingAE, "folder", c)),
    # between the last run's samples.png and reconstructions.png
    "pictures": lambda patch, c: after(patch, figures, "save_samples", c, of_run("moving-ae")),
    # after the last run's loss.png: all training done
    "trained": lambda patch, c: after(patch, figures, "save_loss_curves", c, of_run("moving-ae")),
    # once the last model evaluated (its eval.json written): the report's repro
    "evaluated": lambda patch, c: after(patch, compare, "_write_evaluation", c, of_run("moving-ae")),
    # between the compare's own pictures
    "compare.png": lambda patch, c: after(patch, compare, "compare_figure", c),
}


@pytest.fixture
def moving(genzoo_register: Any) -> Any:
    genzoo_register(MovingPlugin(), "moving")
    MovingAE.steps, MovingAE.move_at, MovingAE.folder = 0, None, None
    yield
    MovingAE.steps, MovingAE.move_at, MovingAE.folder = 0, None, None


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_f3_a_compare_folder_moved_away_gets_nothing_more_written_into_its_old_path(
        moment, moving, data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENZOO_DATA", str(data_root))
    c, moved = Path("c"), tmp_path / "c-old"
    MOMENTS[moment](monkeypatch, c)
    code, _, err = run_main(COMPARE, capsys)
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"Error: compare folder c was moved or replaced while genzoo was writing into it (it is now {moved}); "
        f"nothing more was written; carry on there with: genzoo compare --resume {moved}")
    assert list(c.iterdir()) == []  # no compare.json, report, results or picture in the new folder
    assert (moved / "compare.json").is_file() and not (moved / "results.json").exists()
    monkeypatch.undo()  # the move is done; carry on where the compare went, as the line says
    monkeypatch.setenv("GENZOO_DATA", str(data_root))
    MovingAE.move_at = None
    if moment == "training":  # its run was stopped before its first checkpoint: as the compare then says
        code, _, err = run_main(["compare", "--resume", str(moved)], capsys)
        assert err.strip().splitlines()[-1] == (
            f"Error: cannot continue {moved / 'runs' / 'moving-ae'}: it has no checkpoint (it was stopped before "
            f"its first); move it away and run genzoo compare --resume {moved} again to train it from the start")
        shutil.rmtree(moved / "runs" / "moving-ae")
    code, _, err = run_main(["compare", "--resume", str(moved)], capsys)
    assert code == 0, err
    assert list((tmp_path / "c").iterdir()) == []
    results = json.loads((moved / "results.json").read_text())
    assert [r["model"] for r in results["models"]] == ["vae", "moving-ae"]
    assert all((moved / name).is_file() for name in ("report.md", "compare.png", "latent.png"))


def test_f3_pictures_of_a_run_folder_moved_between_them_are_refused_as_a_move(data_root, tmp_path, monkeypatch,
                                                                             capsys):
    """The end-of-run pictures of ``genzoo train`` were checked once, before the first: a folder moved after
    ``samples.png`` failed at ``reconstructions.png`` with ``No such file or directory``."""
    run, moved = tmp_path / "x", tmp_path / "x-old"
    after(monkeypatch, figures, "save_samples", run)
    code, _, err = run_main(["train", "vae", "--epochs", "1", "--batch-size", "20", "--device", "cpu", "--latent",
                             "2", "--hidden", "16", "--test-limit", "20", "--data-root", str(data_root), "--out",
                             str(run)], capsys)
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == (
        f"Error: run folder {run} was moved or replaced while genzoo was writing into it (it is now {moved}); "
        f"nothing more was written; carry on there with: genzoo resume {moved}")
    assert list(run.iterdir()) == []
    assert (moved / "samples.png").is_file() and not (moved / "reconstructions.png").exists()
