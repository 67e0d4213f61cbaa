"""``genzoo resume`` of a complete run redrew its pictures, so in a finished run the user may read but not write
it failed with ``could not write RUN/samples.png`` rather than saying the run is complete (twenty-fifth hostile
pass, files M1). A complete run keeps its pictures; one that lost a picture is drawn again."""

from __future__ import annotations

from pathlib import Path

from reliability_support import data_root, run_main  # noqa: F401 - data_root is a fixture

TINY = ["--epochs", "1", "--batch-size", "20", "--train-limit", "40", "--test-limit", "20", "--device", "cpu",
        "--latent", "2"]
PICTURES = ("samples.png", "reconstructions.png", "loss.png")


def test_resume_of_a_complete_run_touches_no_picture_and_draws_a_lost_one(capsys, data_root,
                                                                          tmp_path: Path) -> None:  # noqa: F811
    run = tmp_path / "run"
    code, _, err = run_main(["train", "vae", *TINY, "--data-root", str(data_root), "--out", str(run)], capsys)
    assert code == 0, err
    before = {name: (run / name).stat().st_mtime_ns for name in PICTURES}
    code, out, err = run_main(["resume", str(run), "--data-root", str(data_root)], capsys)
    assert code == 0, err
    assert "the run was already complete; nothing to train" in out
    assert {name: (run / name).stat().st_mtime_ns for name in PICTURES} == before

    (run / "loss.png").unlink()
    code, out, err = run_main(["resume", str(run), "--data-root", str(data_root)], capsys)
    assert code == 0, err
    assert all((run / name).is_file() for name in PICTURES)
